"""The lorebook editor: books, their entries edited in place, and what each book is used with.

A book page shows one page of entries (searched and sorted in the database), so a book of 1,000
entries opens as fast as a book of ten. Each entry is its own form: saving one writes one row.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from core.pagination import page_number, page_of
from core.tokens import estimate_tokens
from settings_app.models import Persona

from . import lorebook_edit as edit
from .lorebook_forms import EntryForm, LorebookForm
from .models import Character, Lorebook, LorebookEntry

ENTRIES_PER_PAGE = 50
SORTS = (("order", "Order"), ("title", "Title"), ("newest", "Newest first"))
# The most books a World Info form lists (a user's global books; few in practice).
MAX_BOOK_CHOICES = 500


def _editable_book(request, code) -> Lorebook:
    """A book the user may change, or 404 (other users' books do not exist for them)."""
    return get_object_or_404(edit.editable_lorebooks(request.user).select_related("character"), code=code)


def _editable_character(request, code) -> Character:
    return get_object_or_404(edit.editable_characters(request.user), code=code)


def _book_url(book: Lorebook, request=None, *, entry: LorebookEntry | None = None) -> str:
    url = reverse("characters:lorebook_edit", args=[book.code])
    query = request.GET.urlencode() if request is not None else ""
    return f"{url}{'?' + query if query else ''}{f'#entry-{entry.pk}' if entry else ''}"


@login_required
@require_http_methods(["GET", "POST"])
def lorebook_new(request):
    book = Lorebook(owner=request.user)
    form = LorebookForm(request.POST or None, instance=book)
    if request.method == "POST" and form.is_valid():
        book = edit.book_save(book=form.save(commit=False), expected_version=None)
        messages.success(request, f"Lorebook “{book.name}” created. Add its first entry below.")
        return redirect(_book_url(book))
    return render(request, "characters/lorebook_new.html", {"form": form})


def _editor_page(request, book: Lorebook, *, book_form=None, bound_entry=None, status: int = 200):
    """The book's page: its settings, one page of entries, a new-entry form and what uses it."""
    q = request.GET.get("q", "").strip()[:200]
    sort = request.GET.get("sort", "order")
    page = page_of(
        edit.entries_page_queryset(book, q=q, sort=sort),
        number=page_number(request),
        per_page=ENTRIES_PER_PAGE,
    )
    # Only the entry being edited gets its form (?edit=<id>, or the one just refused): fifty
    # forms of two dozen fields each would take most of the page's time; the others open on demand.
    editing = _int(request.GET.get("edit"))
    rows = []
    for entry in page.rows:
        entry.lorebook = book
        entry.token_count = estimate_tokens(entry.content)
        if bound_entry is not None and bound_entry.instance.pk == entry.pk:
            rows.append((entry, bound_entry, True))
        elif entry.pk == editing:
            rows.append((entry, EntryForm(instance=entry), True))
        else:
            rows.append((entry, None, False))
    if bound_entry is not None and bound_entry.instance.pk is None:
        new_form, new_open = bound_entry, True
    else:
        new_form, new_open = EntryForm(instance=LorebookEntry(lorebook=book)), False
    if book.character_id is None:
        personas = list(
            Persona.objects.filter(user=book.owner_id or request.user.pk).only("id", "code", "name")[:100]
        )
        used_by_personas = set(book.personas.values_list("id", flat=True))
    else:
        personas, used_by_personas = [], set()
    context = {
        "book": book,
        "book_form": book_form or LorebookForm(instance=book),
        "page": page,
        "rows": rows,
        "new_form": new_form,
        "new_open": new_open,
        "q": q,
        "sort": sort if sort in dict(SORTS) else "order",
        "sorts": SORTS,
        "entry_total": LorebookEntry.objects.filter(lorebook=book).count(),
        "entry_limit": settings.RPCHAT["MAX_LOREBOOK_ENTRIES"],
        "personas": personas,
        "used_by_personas": used_by_personas,
        "attached_characters": list(
            book.attached_characters.filter(deleted_at__isnull=True).only("code", "name")[:50]
        ),
        "chat_count": book.chats.count() if book.character_id is None else 0,
    }
    return render(request, "characters/lorebook_edit.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def lorebook_edit(request, code):
    book = _editable_book(request, code)
    if request.method == "GET":
        return _editor_page(request, book)
    form = LorebookForm(request.POST, instance=book)
    if not form.is_valid():
        return _editor_page(request, book, book_form=form, status=400)
    try:
        edit.book_save(
            book=form.save(commit=False), expected_version=form.cleaned_data["version"], author=request.user
        )
    except edit.StaleEdit as stale:
        form = _stale(LorebookForm(request.POST, instance=book), stale)
        return _editor_page(request, book, book_form=form, status=409)
    messages.success(request, "Lorebook settings saved.")
    return redirect(_book_url(book, request))


def _stale(form, stale: edit.StaleEdit):
    """`form` again, with the user's text, a note, and the current version: saving it overwrites."""
    data = form.data.copy()
    data[form.add_prefix("version")] = stale.current
    form = form.__class__(data, instance=form.instance, prefix=form.prefix)
    form.is_valid()
    form.add_error(
        None,
        "This was changed in another tab or window after you opened it. Your text is still here: "
        "reload the page to see the other change, or save again to overwrite it with yours.",
    )
    form.stale = True
    return form


@login_required
@require_http_methods(["GET", "POST"])
def lorebook_entry_save(request, code, entry_id=None):
    """POST saves the entry; GET gives its form alone, which the book page opens in place."""
    book = _editable_book(request, code)
    if entry_id is None:
        entry = LorebookEntry(lorebook=book)
    else:
        entry = get_object_or_404(LorebookEntry, lorebook=book, pk=entry_id)
        entry.lorebook = book
    if request.method == "GET":
        if entry.pk is None:
            return redirect(_book_url(book) + "#new-entry")
        entry.token_count = estimate_tokens(entry.content)
        return render(
            request,
            "characters/_lore_entry_editor.html",
            {"book": book, "entry": entry, "form": EntryForm(instance=entry)},
        )
    form = EntryForm(request.POST, instance=entry)
    if not form.is_valid():
        return _editor_page(request, book, bound_entry=form, status=400)
    try:
        entry = edit.entry_save(
            entry=form.save(commit=False), expected_version=form.cleaned_data["version"], author=request.user
        )
    except edit.StaleEdit as stale:
        return _editor_page(request, book, bound_entry=_stale(form, stale), status=409)
    except ValueError as exc:
        form.add_error(None, str(exc))
        return _editor_page(request, book, bound_entry=form, status=400)
    messages.success(request, f"Entry “{entry}” saved.")
    return redirect(_book_url(book, request, entry=entry))


@login_required
@require_POST
def lorebook_entry_delete(request, code, entry_id):
    book = _editable_book(request, code)
    entry = get_object_or_404(LorebookEntry, lorebook=book, pk=entry_id)
    entry.lorebook = book
    edit.entry_delete(entry=entry, author=request.user)
    messages.success(request, f"Entry “{entry}” deleted.")
    return redirect(_book_url(book, request))


@login_required
@require_POST
def lorebook_duplicate(request, code):
    """A global copy of a book the user may change, or of the book of a character they may see."""
    visible = Character.objects.visible_to(request.user)
    book = get_object_or_404(
        Lorebook.objects.filter(
            Q(pk__in=edit.editable_lorebooks(request.user).values("pk")) | Q(character__in=visible)
        ),
        code=code,
    )
    copy = edit.book_duplicate(book=book, owner=request.user)
    messages.success(request, f"“{copy.name}” is yours to change.")
    return redirect(_book_url(copy))


@login_required
@require_http_methods(["GET", "POST"])
def lorebook_delete(request, code):
    book = _editable_book(request, code)
    if request.method == "POST":
        character = book.character
        edit.book_delete(book=book)
        messages.success(request, f"Lorebook “{book}” deleted.")
        return redirect(character.get_absolute_url() if character else reverse("characters:lorebooks"))
    entry_count = LorebookEntry.objects.filter(lorebook=book).count()
    return render(
        request, "characters/lorebook_confirm_delete.html", {"book": book, "entry_count": entry_count}
    )


@login_required
@require_POST
def lorebook_personas(request, code):
    """Which of the owner's personas bring this (global) book into their chats."""
    book = _editable_book(request, code)
    if book.character_id is not None:
        raise Http404("A character's own book goes wherever the character goes.")
    wanted = Persona.objects.filter(
        user=book.owner_id or request.user.pk, code__in=_uuids(request.POST.getlist("personas"))
    )
    book.personas.set(wanted)
    messages.success(request, "Personas saved.")
    return redirect(_book_url(book, request))


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _uuids(values: list[str]) -> list[str]:
    """The well-formed codes among `values` (a form's checkboxes), at most 1,000."""
    found = []
    for value in values[:1000]:
        try:
            found.append(str(uuid.UUID(value)))
        except ValueError:
            continue
    return found


@login_required
@require_http_methods(["GET", "POST"])
def character_world_info(request, code):
    """A character's World Info: the global books it brings into every chat, and its own book."""
    character = _editable_character(request, code)
    owner_id = character.owner_id or request.user.pk
    books = (
        Lorebook.objects.filter(owner_id=owner_id, character__isnull=True)
        .only("id", "code", "name")
        .annotate(entry_count=Count("entries"))
        .order_by("name", "id")[:MAX_BOOK_CHOICES]
    )
    if request.method == "POST":
        wanted = Lorebook.objects.filter(
            owner_id=owner_id, character__isnull=True, code__in=_uuids(request.POST.getlist("books"))
        )
        edit.world_info_set(character=character, books=wanted, author=request.user)
        messages.success(request, f"World Info of {character.name} saved.")
        return redirect("characters:world_info", character.code)
    own_book = Lorebook.objects.filter(character=character).annotate(entry_count=Count("entries")).first()
    attached = set(character.lorebooks.values_list("id", flat=True))
    return render(
        request,
        "characters/world_info.html",
        {"character": character, "books": books, "attached": attached, "own_book": own_book},
    )


@login_required
@require_POST
def character_lorebook_new(request, code):
    """Start the character's own book (exported inside its card), or open it if it has one."""
    character = _editable_character(request, code)
    book, _ = Lorebook.objects.get_or_create(
        character=character, defaults={"owner_id": character.owner_id, "name": f"{character.name}'s lorebook"}
    )
    return redirect(_book_url(book))
