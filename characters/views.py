from datetime import UTC, datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import condition

from rpchat.http import etag_of, private_cache, release_stamp
from rpchat.pagination import page_number, page_of
from settings_app.models import SiteSettings

from .models import Character, Tag
from .search import text_filter

IMAGE_MAX_AGE = settings.RPCHAT["IMAGE_MAX_AGE"]


def get_character_for_user(request, code) -> Character:
    """A character the user may see, or 404 (private characters of others do not exist for them)."""
    return get_object_or_404(Character.objects.visible_to(request.user), code=code)


def gallery_filters(request) -> tuple[str, str, str]:
    """The gallery's (and the API's) q, tag and label parameters, trimmed."""
    get = request.GET
    return get.get("q", "").strip()[:100], get.get("tag", "").strip()[:60], get.get("label", "").strip()[:60]


def filter_characters(characters, *, q: str, tag: str, label: str):
    if q:
        # Names and nicknames by substring, as users expect while typing; card text in full text.
        characters = characters.filter(text_filter(q))
    if tag:
        characters = characters.filter(tags__name__iexact=tag)
    if label:
        characters = characters.filter(label=label)
    return characters


@login_required
def gallery(request):
    q, tag, label = gallery_filters(request)
    characters = filter_characters(Character.objects.visible_to(request.user), q=q, tag=tag, label=label)
    page = page_of(
        characters.for_list().order_by("name", "id"),
        number=page_number(request),
        per_page=settings.RPCHAT["GALLERY_PAGE_SIZE"],
    )
    context = {
        "page": page,
        "q": q,
        "tag": tag,
        "label": label,
        "tags": Tag.objects.filter(characters__is_active=True).distinct().only("name")[:50],
        "labels": (
            Character.objects.visible_to(request.user)
            .exclude(label="")
            .order_by("label")
            .values_list("label", flat=True)
            .distinct()[:30]
        ),
    }
    template = "characters/gallery_results.html" if request.headers.get("X-Partial") else "characters/gallery.html"
    return render(request, template, context)


def _character_for_request(request, code) -> Character:
    """get_character_for_user, once per request: the ETag, Last-Modified and the view share it."""
    cached = getattr(request, "_character_for_request", None)
    if cached is None or cached.code != code:
        cached = get_character_for_user(request, code)
        request._character_for_request = cached
    return cached


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
        release_stamp(),
    )


def _detail_last_modified(request, code) -> datetime:
    return max(_character_for_request(request, code).updated_at, SiteSettings.load().updated_at)


@login_required
@private_cache()
@condition(etag_func=_detail_etag, last_modified_func=_detail_last_modified)
def detail(request, code):
    character = _character_for_request(request, code)
    return render(request, "characters/detail.html", {"character": character, "tags": character.tags.all()})


def _image_character(request, code) -> Character:
    """The character whose picture is asked for, once per request (cachalot makes it free)."""
    cached = getattr(request, "_image_character", None)
    if cached is None or cached.code != code:
        cached = get_object_or_404(
            Character.objects.visible_to(request.user).only(
                "id", "code", "avatar", "thumbnail", "owner_id", "visibility", "is_active", "deleted_at"
            ),
            code=code,
        )
        request._image_character = cached
    return cached


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
        return FileResponse(image.open("rb"), content_type="image/png" if image.name.endswith(".png") else None)
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
