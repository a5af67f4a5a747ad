"""The character editor's pages: write a character, edit it, duplicate it, the History of a character
or a lorebook (readable diffs, one-click restore) and the live token counts.

Owners edit their characters and staff edit every one; anyone else gets a 404 for the editor and
the History of a character, even a public one they may view, chat with and duplicate.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core import images, ratelimit
from core.pagination import page_number, page_of
from core.tokens import estimate_tokens
from core.uploads import limit_uploads

from . import revisions, services
from .forms import TEXT_FIELDS, CharacterForm
from .lorebook_edit import editable_lorebooks
from .models import Character, Lorebook

HISTORY_PAGE_SIZE = 25
# Sent with every prompt (the greeting is sent once, as the chat's first message).
PERMANENT = (
    "description", "personality", "scenario", "example_dialogue", "system_prompt",
    "post_history_instructions", "depth_prompt_prompt",
)  # fmt: skip
# Counted and shown, never sent to the model.
NOT_SENT = ("creator_notes",)


def get_editable_character(request, code) -> Character:
    """A character the user may edit (their own; any, for staff), or 404."""
    rows = Character.objects.filter(deleted_at__isnull=True)
    if not request.user.is_staff:
        rows = rows.filter(owner=request.user)
    return get_object_or_404(rows, code=code)


def _tag_names(character: Character) -> list[str]:
    return revisions.sorted_tags(t.name for t in character.tags.all())


# --- the editor -----------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
@limit_uploads("MAX_AVATAR_BYTES")
def character_new(request, *, upload_limit):
    return _editor(request, None, upload_limit)


@login_required
@require_http_methods(["GET", "POST"])
@limit_uploads("MAX_AVATAR_BYTES")
def character_edit(request, code, *, upload_limit):
    return _editor(request, code, upload_limit)


def _editor(request, code, handler):
    character = get_editable_character(request, code) if code else None
    tag_names = _tag_names(character) if character else []
    if request.method == "GET":
        initial = (
            CharacterForm.initial_for(character, tag_names)
            if character
            else {
                "depth_prompt_depth": 4,
                "depth_prompt_role": "system",
                "talkativeness": 0.5,
                "visibility": Character.Visibility.PRIVATE,
            }
        )
        greetings = list(character.alternate_greetings) if character else []
        form = CharacterForm(initial=initial, greetings=[g if isinstance(g, str) else "" for g in greetings])
        return _render(request, character, form)

    greetings = request.POST.getlist("alternate_greetings")[:1000]
    op = request.POST.get("greeting_op", "")
    if op:  # a greeting added, moved or removed without script: shown again, not saved
        form = CharacterForm(request.POST, greetings=_greeting_op(greetings, op))
        form.full_clean()
        form.errors.clear()
        return _render(request, character, form, unsaved=True)

    form = CharacterForm(request.POST, request.FILES, greetings=greetings, editing=character is not None)
    if handler is not None and handler.too_large:
        form.add_error(
            "avatar",
            f"The picture is larger than {services.human_size(handler.limit)} (RPCHAT_MAX_AVATAR_BYTES). "
            "Nothing was saved.",
        )
    if not form.is_valid():
        return _render(request, character, form, status=400)
    wait = _too_fast(request)
    if wait:
        form.add_error(
            None, f"Too many saves in a minute (RPCHAT_EDITS_PER_MINUTE); wait {wait} s and save again."
        )
        return _render(request, character, form, status=429)
    avatar = None
    upload = form.cleaned_data.get("avatar")
    if upload:
        try:
            avatar = images.portrait_from_upload(upload.read())
        except images.ImageRejected as exc:
            form.add_error("avatar", f"{exc} Nothing was saved.")
            return _render(request, character, form, status=400)
    values = form.changed_values(character, tag_names)
    if character is None:
        character = services.character_create(owner=request.user, values=values, avatar=avatar)
        messages.success(request, f"“{character.name}” is written. Start a chat with it from its page.")
        return redirect("characters:edit", character.code)
    try:
        revision = services.character_update(
            character=character,
            author=request.user,
            values=values,
            expected_revision=form.cleaned_data.get("revision"),
            avatar=avatar,
        )
    except revisions.StaleEdit as exc:
        return _stale(request, character, form, exc)
    if revision is None:
        messages.info(request, "Nothing changed; nothing was saved.")
    else:
        messages.success(request, f"Saved as version {revision.number}.")
    return redirect("characters:edit", character.code)


def _too_fast(request) -> int | None:
    """Seconds to wait when the user saved (or restored) characters too often: each save may keep
    a version, so saves are limited like message edits."""
    return ratelimit.hit(
        "character-save", str(request.user.pk), limit=settings.RPCHAT["EDITS_PER_MINUTE"], window=60
    )


def _greeting_op(greetings: list[str], op: str) -> list[str]:
    action, _, index = op.partition("-")
    greetings = list(greetings)
    if action == "add":
        return [*greetings, ""]
    try:
        i = int(index)
    except ValueError:
        return greetings
    if not 0 <= i < len(greetings):
        return greetings
    if action == "remove":
        del greetings[i]
    elif action == "up" and i > 0:
        greetings[i - 1], greetings[i] = greetings[i], greetings[i - 1]
    elif action == "down" and i < len(greetings) - 1:
        greetings[i + 1], greetings[i] = greetings[i], greetings[i + 1]
    return greetings


def _stale(request, character: Character, form: CharacterForm, exc: revisions.StaleEdit):
    """409: the user's text shown again, unsaved, with what changed meanwhile and a choice."""
    since = list(revisions.history(character).filter(number__gt=exc.edited, number__lte=exc.current)[:20])
    # Saving this form again overwrites the newer version on purpose.
    data = request.POST.copy()
    data["revision"] = str(exc.current)
    fresh = CharacterForm(data, greetings=form.greetings)
    fresh.full_clean()
    return _render(
        request,
        character,
        fresh,
        status=409,
        stale={
            "edited": exc.edited,
            "current": exc.current,
            "since": since,
            "lost_avatar": bool(request.FILES),
        },
    )


def _counts(form: CharacterForm) -> dict:
    """Token counts per field, the greetings one by one, what every prompt carries, and the total."""
    value = form.data.get if form.is_bound else (lambda name, default="": form.initial.get(name, default))
    counts = {name: estimate_tokens(value(name, "") or "") for name in (*TEXT_FIELDS, "depth_prompt_prompt")}
    greetings = [estimate_tokens(g) for g in form.greetings]
    permanent = sum(counts[name] for name in PERMANENT)
    total = sum(n for name, n in counts.items() if name not in NOT_SENT) + sum(greetings)
    return {"fields": counts, "greetings": greetings, "permanent": permanent, "total": total}


def _render(request, character, form, *, status=200, unsaved=False, stale=None):
    fields = form.fields
    groups = [
        ("Identity", ["name", "nickname", "avatar"]),
        ("Who they are", ["description", "personality", "scenario"]),
        ("Greetings", ["first_message"]),
        ("Example dialogue", ["example_dialogue"]),
        ("Instructions to the model", ["system_prompt", "post_history_instructions"]),
        ("Character's note", ["depth_prompt_prompt", "depth_prompt_depth", "depth_prompt_role"]),
        ("Group chats", ["talkativeness"]),
        ("About the card", ["creator_notes", "creator", "character_version", "tags"]),
        ("Sharing", ["visibility"]),
    ]
    counts = _counts(form)
    context = {
        "character": character,
        "form": form,
        # (title, [(bound field, its token count or None)])
        "groups": [
            (title, [(form[name], counts["fields"].get(name)) for name in names if name in fields])
            for title, names in groups
        ],
        # (index, text, token count, error)
        "greetings": [
            (i, text, counts["greetings"][i], form.greeting_errors.get(i, ""))
            for i, text in enumerate(form.greetings)
        ],
        "counts": counts,
        "permanent": PERMANENT,
        "not_sent": NOT_SENT,
        "unsaved": unsaved,
        "stale": stale,
        "max_chars": settings.RPCHAT["MAX_CARD_FIELD_CHARS"],
        "max_avatar": services.human_size(settings.RPCHAT["MAX_AVATAR_BYTES"]),
    }
    return render(request, "characters/editor.html", context, status=status)


@login_required
@require_POST
def token_counts(request):
    """{"counts": {field: tokens}} for the texts posted (the editor's live counts), by the counter
    prompt building uses."""
    counts = {}
    for key in list(request.POST.keys())[:100]:
        if key == "csrfmiddlewaretoken":
            continue
        counts[key[:100]] = estimate_tokens(request.POST.get(key, ""))
    return JsonResponse({"counts": counts})


# --- duplicate ------------------------------------------------------------------------------------


@login_required
@require_POST
def character_duplicate(request, code):
    """A private copy, owned by the user, of a character they may see (theirs or a public one)."""
    original = get_object_or_404(Character.objects.visible_to(request.user), code=code)
    copy = services.character_duplicate(character=original, owner=request.user)
    messages.success(request, f"“{copy.name}” is your own private copy of “{original.name}”; edit it freely.")
    return redirect("characters:edit", copy.code)


# --- history (characters and lorebooks) -------------------------------------------------------------


def get_editable_lorebook(request, code) -> Lorebook:
    """A lorebook the user may edit (their own, or their character's own book; any, for staff), or 404."""
    rows = editable_lorebooks(request.user)
    rows = rows.filter(Q(character__isnull=True) | Q(character__deleted_at__isnull=True))
    # The character's name names its book when the book has none (Lorebook.__str__).
    rows = rows.select_related("character").only(
        "id", "code", "name", "revision", "created_at", "owner", "character__id", "character__name"
    )
    return get_object_or_404(rows, code=code)


# What the History pages need to know of each kind: how to find the object, its name, its pages.
_KINDS = {
    "character": {
        "get": get_editable_character,
        "subject": lambda obj: obj.name,
        "back": lambda obj: (reverse("characters:edit", args=[obj.code]), "Back to the editor"),
        "history": "characters:history",
        "revision": "characters:revision",
        "restore": "characters:revision_restore",
    },
    "lorebook": {
        "get": get_editable_lorebook,
        "subject": str,
        "back": lambda obj: (reverse("characters:lorebook_edit", args=[obj.code]), "Back to the lorebook"),
        "history": "characters:lorebook_history",
        "revision": "characters:lorebook_revision",
        "restore": "characters:lorebook_revision_restore",
    },
}


def _history_context(kind: str, obj) -> dict:
    spec = _KINDS[kind]
    back_url, back_label = spec["back"](obj)
    return {
        "obj": obj,
        "subject": spec["subject"](obj),
        "back_url": back_url,
        "back_label": back_label,
        "history_url": spec["history"],
        "revision_url": spec["revision"],
        "restore_url": spec["restore"],
    }


def _history(request, code, kind: str):
    obj = _KINDS[kind]["get"](request, code)
    page = page_of(revisions.history(obj), number=page_number(request), per_page=HISTORY_PAGE_SIZE)
    # Version 1 (as written or imported) has no row: it closes the list on its last page.
    first_version = not page.has_next and (not page.rows or page.rows[-1].number == 2)
    return render(
        request,
        "characters/history.html",
        {**_history_context(kind, obj), "page": page, "first_version": first_version},
    )


def _revision_page(request, code, number: int, kind: str):
    obj = _KINDS[kind]["get"](request, code)
    revision = get_object_or_404(revisions.history(obj).defer(None).select_related("author"), number=number)
    ids = revisions.book_ids(revision)
    names = {b.pk: str(b) for b in Lorebook.objects.filter(pk__in=ids).only("id", "name")} if ids else {}
    return render(
        request,
        "characters/revision.html",
        {
            **_history_context(kind, obj),
            "revision": revision,
            "diffs": revisions.diffs(revision, book_names=names),
        },
    )


def _restore(request, code, number: int, kind: str):
    """Bring version `number` back, as a new version (the current one stays in the History)."""
    obj = _KINDS[kind]["get"](request, code)
    history = reverse(_KINDS[kind]["history"], args=[obj.code])
    if number >= obj.revision or number < 1:
        if number != obj.revision:
            raise Http404("There is no such version.")
        messages.info(request, f"Version {number} is the current version.")
        return redirect(history)
    wait = _too_fast(request)
    if wait:
        messages.error(request, f"Too many saves in a minute; wait {wait} s and restore again.")
        return redirect(history)
    try:
        revision = revisions.restore(obj, number=number, author=request.user)
    except revisions.RevisionGap as exc:
        messages.error(request, f"Version {number} cannot be brought back: {exc}.")
        return redirect(history)
    if revision is None:
        messages.info(request, f"Version {number} is the same as the current version; nothing changed.")
    else:
        messages.success(
            request,
            f"Version {number} is back, saved as version {revision.number}. "
            "The version before it stays in the History.",
        )
    return redirect(history)


@login_required
@require_GET
def character_history(request, code):
    return _history(request, code, "character")


@login_required
@require_GET
def character_revision(request, code, number: int):
    return _revision_page(request, code, number, "character")


@login_required
@require_POST
def character_revision_restore(request, code, number: int):
    return _restore(request, code, number, "character")


@login_required
@require_GET
def lorebook_history(request, code):
    return _history(request, code, "lorebook")


@login_required
@require_GET
def lorebook_revision(request, code, number: int):
    return _revision_page(request, code, number, "lorebook")


@login_required
@require_POST
def lorebook_revision_restore(request, code, number: int):
    return _restore(request, code, number, "lorebook")
