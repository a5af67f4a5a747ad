from datetime import UTC, datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import FileResponse, Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.http import content_disposition_header
from django.utils.safestring import mark_safe
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import (
    condition,
    require_GET,
    require_http_methods,
    require_POST,
)

from core.http import etag_of, once_per_request, private_cache, release_stamp
from core.pagination import page_number, page_of
from core.routers import reads_may_lag
from core.table_cache import cached_by_tables
from core.uploads import LimitedUploadHandler, body_larger_than, download_name, limit_uploads
from settings_app.models import SiteSettings, preferences_for

from . import display, lorekeys, services
from .http import card_download_cache
from .models import Character, Lorebook, LorebookEntry, Tag
from .search import GALLERY_TABLES, clean_filters, gallery_characters
from .services import character_restore as character_restore_service
from .services import character_soft_delete

IMAGE_MAX_AGE = settings.RPCHAT["IMAGE_MAX_AGE"]


def get_character_for_user(request, code) -> Character:
    """A character the user may see, or 404 (private characters of others do not exist for them)."""
    return get_object_or_404(Character.objects.visible_to(request.user), code=code)


def gallery_filters(request) -> tuple[str, str, str]:
    """The gallery's q, tag and label parameters, trimmed."""
    get = request.GET
    return clean_filters(get.get("q", ""), get.get("tag", ""), get.get("label", ""))


def _gallery_parts(user, q: str, tag: str, label: str, number: int, per_page: int) -> dict:
    """The gallery's results (rendered) and its filters' choices, for `user`: what
    `cached_by_tables` keeps until a character or tag changes."""
    characters = gallery_characters(user=user, q=q, tag=tag, label=label)
    page = page_of(characters, number=number, per_page=per_page)
    last_page = None
    if not page.rows and page.number > 1:
        # Past the end (an old link, a hand-typed ?page=99): one COUNT, on this page only, to say
        # which page is the last.
        last_page = max(1, -(-characters.count() // per_page))
    results = render_to_string(
        "characters/gallery_results.html",
        {"page": page, "last_page": last_page, "q": q, "tag": tag, "label": label},
    )
    return {
        "results": results,
        "tags": [{"name": t.name} for t in Tag.objects.visible_to(user).only("name")[:50]],
        "labels": list(Character.objects.labels_visible_to(user)),
    }


@login_required
@reads_may_lag  # a character created a moment ago may show up a moment later
def gallery(request):
    q, tag, label = gallery_filters(request)
    per_page = settings.RPCHAT["GALLERY_PAGE_SIZE"]
    number = page_number(request)
    user = request.user
    parts = cached_by_tables(
        "gallery",
        (user.pk, q, tag, label, number, per_page, release_stamp(), translation.get_language()),
        GALLERY_TABLES,
        lambda: _gallery_parts(user, q, tag, label, number, per_page),
    )
    results = mark_safe(parts["results"])  # noqa: S308 - rendered by the template above, escaped there
    if request.headers.get("X-Partial"):
        return HttpResponse(results)
    context = {
        "results": results,
        "q": q,
        "tag": tag,
        "label": label,
        "tags": parts["tags"],
        "labels": parts["labels"],
    }
    return render(request, "characters/gallery.html", context)


@once_per_request
def _character_for_request(request, code) -> Character:
    """get_character_for_user, once per request: the ETag, Last-Modified and the view share it."""
    return get_character_for_user(request, code)


def _detail_etag(request, code) -> str | None:
    if messages.get_messages(request):
        return None  # a pending notice must be shown, so the page is rendered afresh
    character = _character_for_request(request, code)
    site = SiteSettings.load()
    # The page shows the card, the viewer's name and links, and a form with their CSRF token.
    return etag_of(
        "character-page",
        character.pk,
        character.updated_at,
        request.user.pk,
        request.user.is_staff,
        request.COOKIES.get(settings.CSRF_COOKIE_NAME),
        site.updated_at,
        # The page's frame: the viewer's theme and whether they hid the demo-model notice.
        preferences_for(request.user).updated_at,
        # {{user}} in the card text is shown as the viewer's default persona.
        display.viewer_name(request),
        release_stamp(),
    )


def _detail_last_modified(request, code) -> datetime:
    stamps = [_character_for_request(request, code).updated_at, SiteSettings.load().updated_at]
    prefs_changed = preferences_for(request.user).updated_at
    return max([*stamps, prefs_changed] if prefs_changed else stamps)


@login_required
@private_cache()
@condition(etag_func=_detail_etag, last_modified_func=_detail_last_modified)
def detail(request, code):
    character = _character_for_request(request, code)
    user_name = display.viewer_name(request)
    # The card's own lorebook, in the order its entries go into a prompt; at most LORE_SHOWN.
    lore = list(
        LorebookEntry.objects.filter(lorebook__character=character)
        .only("id", "name", "comment", "keys", "content", "constant", "enabled")
        .order_by("insertion_order", "id")[: display.LORE_SHOWN + 1]
    )
    for entry in lore:
        entry.shown = display.for_viewer(entry.content, char=character.display_name, user=user_name)
    return render(
        request,
        "characters/detail.html",
        {
            "character": character,
            "tags": character.tags.all(),
            "card": display.card_text(character, user_name=user_name),
            "user_name": user_name,
            "lore": lore[: display.LORE_SHOWN],
            "more_lore": len(lore) > display.LORE_SHOWN,
        },
    )


@once_per_request
def _image_character(request, code) -> Character:
    """The character whose picture is asked for, once per request (cachalot makes it free)."""
    return get_object_or_404(
        Character.objects.visible_to(request.user).only(
            "id", "code", "avatar", "thumbnail", "owner_id", "visibility", "is_active", "deleted_at"
        ),
        code=code,
    )


def _image_file(request, code, field: str):
    image = getattr(_image_character(request, code), field) or _image_character(request, code).avatar
    if not image:
        raise Http404("This character has no picture.")
    return image


def _image_mtime(image) -> datetime | None:
    try:
        return image.storage.get_modified_time(image.name).astimezone(UTC)
    except (FileNotFoundError, NotImplementedError):
        return None


def _image_etag(field: str):
    def etag(request, code):
        # Stored names are unique per upload; the file time covers a file replaced in place.
        image = _image_file(request, code, field)
        return etag_of(image.name, _image_mtime(image))

    return etag


def _image_last_modified(field: str):
    def last_modified(request, code):
        return _image_mtime(_image_file(request, code, field))

    return last_modified


def _image(request, code, field: str):
    image = _image_file(request, code, field)
    try:
        content_type = {"png": "image/png", "webp": "image/webp"}.get(image.name.rpartition(".")[2])
        return FileResponse(image.open("rb"), content_type=content_type)
    except FileNotFoundError:
        raise Http404("The picture file is missing.") from None


@login_required
@private_cache(max_age=IMAGE_MAX_AGE)
@condition(etag_func=_image_etag("avatar"), last_modified_func=_image_last_modified("avatar"))
def avatar(request, code):
    return _image(request, code, "avatar")


@login_required
@private_cache(max_age=IMAGE_MAX_AGE)
@condition(etag_func=_image_etag("thumbnail"), last_modified_func=_image_last_modified("thumbnail"))
def thumbnail(request, code):
    return _image(request, code, "thumbnail")


def _get_own_character(request, code, *, deleted: bool = False) -> Character:
    """A character the user owns (only owners delete and restore), or 404."""
    return get_object_or_404(Character, owner=request.user, code=code, deleted_at__isnull=not deleted)


@login_required
def character_delete(request, code):
    character = _get_own_character(request, code)
    if request.method == "POST":
        character_soft_delete(character=character)
        messages.success(
            request,
            f"“{character.name}” was deleted. You can restore it from Trash for {settings.RPCHAT['TRASH_DAYS']} days.",
        )
        return redirect("characters:gallery")
    return render(request, "characters/confirm_delete.html", {"character": character})


@login_required
@require_POST
def character_restore(request, code):
    character = _get_own_character(request, code, deleted=True)
    character_restore_service(character=character)
    messages.success(request, f"“{character.name}” is back.")
    return redirect(character)


# --- card import and download ---------------------------------------------------------------------


def _wants_json(request) -> bool:
    return request.headers.get("Accept", "").startswith("application/json")


@csrf_exempt
@login_required
@require_http_methods(["GET", "POST"])
def card_import(request):
    """The import page; a POST imports each uploaded card (the page's script sends one per request
    and shows each file's progress and result; without script the form sends them all)."""
    handler = None
    if request.method == "POST":
        limit = settings.RPCHAT["MAX_CARD_BYTES"]
        if _wants_json(request) and body_larger_than(request, limit):
            # One file per request: refuse it by its declared size, before reading any of it.
            size = int(request.META["CONTENT_LENGTH"])
            reason = services.too_large(size, limit, "RPCHAT_MAX_CARD_BYTES")
            return JsonResponse({"results": [{"file": "", "status": "failed", "reason": reason}]}, status=413)
        handler = LimitedUploadHandler(request, limit=limit)
        request.upload_handlers.insert(0, handler)
    return _card_import(request, handler)


@csrf_protect
def _card_import(request, handler):
    if request.method == "GET":
        return render(request, "characters/import.html", {"max_bytes": settings.RPCHAT["MAX_CARD_BYTES"]})
    public = request.POST.get("public") == "1"
    results = [
        services.ImportResult(
            name,
            "failed",
            f"the file is larger than {services.human_size(handler.limit)} (RPCHAT_MAX_CARD_BYTES)",
        )
        for name in handler.too_large
    ]
    for upload in request.FILES.getlist("files"):
        results.append(
            services.card_import(source=upload, file_name=upload.name, owner=request.user, public=public)
        )
    if not results:
        results.append(services.ImportResult("", "failed", "no file was sent"))
    rows = [
        {**r.as_json(), "url": r.object.get_absolute_url() if isinstance(r.object, Character) else ""}
        for r in results
    ]
    if _wants_json(request):
        return JsonResponse(
            {"results": rows}, status=200 if any(r.status != "failed" for r in results) else 400
        )
    return render(
        request, "characters/import.html", {"results": rows, "max_bytes": settings.RPCHAT["MAX_CARD_BYTES"]}
    )


def _attachment(body: bytes, *, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = content_disposition_header(True, filename)
    response["Cache-Control"] = "private, no-cache"
    return response


@login_required
@require_GET
@card_download_cache
def card_download(request, code, fmt: str):
    """The character as a card file anyone may see it may take: PNG (chara + ccv3) or JSON.
    ETag and Last-Modified from the card's and its lorebook's updated_at: a 304 builds nothing."""
    character = get_character_for_user(request, code)
    if fmt == "png":
        body, content_type = services.card_export_png(character=character), "image/png"
    else:
        body, content_type = services.card_export_json(character=character), "application/json"
    return _attachment(body, content_type=content_type, filename=download_name(character.name, f".{fmt}"))


# --- lorebooks ------------------------------------------------------------------------------------


def _get_lorebook_for_user(request, code) -> Lorebook:
    """One of the user's own global lorebooks, or 404."""
    return get_object_or_404(Lorebook.objects.filter(owner=request.user, character__isnull=True), code=code)


@login_required
@require_http_methods(["GET", "POST"])
@limit_uploads("MAX_CARD_BYTES")
def lorebook_list(request, *, upload_limit):
    """The user's global lorebooks; a POST imports World Info or lorebook_v3 files."""
    handler = upload_limit
    if request.method == "POST":
        # Reading the files parses the body, which is when the handler sets too-large files aside.
        uploads = request.FILES.getlist("files")
        for name in handler.too_large:
            messages.error(request, f"{name}: the file is larger than {services.human_size(handler.limit)}.")
        for upload in uploads:
            result = services.lorebook_import(source=upload, file_name=upload.name, owner=request.user)
            level = {"imported": messages.SUCCESS, "skipped": messages.INFO}.get(
                result.status, messages.ERROR
            )
            messages.add_message(request, level, str(result))
        return redirect("characters:lorebooks")
    books = (
        Lorebook.objects.filter(owner=request.user, character__isnull=True)
        .only("id", "code", "name", "updated_at")
        .annotate(
            entry_count=Count("entries"),
            regex_entry_count=Count("entries", filter=Q(entries__use_regex=True)),
        )
        .order_by("name", "id")
    )
    page = page_of(books, number=page_number(request), per_page=settings.RPCHAT["GALLERY_PAGE_SIZE"])
    _attach_key_problems([book for book in page.rows if book.regex_entry_count])
    return render(request, "characters/lorebooks.html", {"page": page})


# What lorekeys.problems() reads of an entry.
_KEY_FIELDS = (
    "id", "lorebook_id", "name", "keys", "secondary_keys", "selective", "constant", "use_regex",
    "case_sensitive",
)  # fmt: skip


def _attach_key_problems(books: list[Lorebook]) -> None:
    """book.key_problems: (entry, key, why) for each regex key replies skip, one query for the page."""
    if not books:
        return
    by_id = {book.pk: book for book in books}
    for book in books:
        book.key_problems = []
    entries = (
        LorebookEntry.objects.filter(lorebook__in=list(by_id), use_regex=True)
        .only(*_KEY_FIELDS)
        .order_by("lorebook_id", "insertion_order", "id")
    )
    for entry in entries:
        for key, why in lorekeys.problems(entry):
            by_id[entry.lorebook_id].key_problems.append((str(entry), key, why))


@login_required
@require_GET
def lorebook_download(request, code, fmt: str):
    lorebook = _get_lorebook_for_user(request, code)
    suffix = ".json" if fmt == "world_info" else ".lorebook.json"
    return _attachment(
        services.lorebook_export(lorebook=lorebook, fmt=fmt),
        content_type="application/json",
        filename=download_name(lorebook.name or "lorebook", suffix),
    )
