from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render

from rpchat.pagination import page_number, page_of
from rpchat.routers import reads_may_lag

from .models import Character, Tag


def get_character_for_user(request, code) -> Character:
    """A character the user may see, or 404 (private characters of others do not exist for them)."""
    return get_object_or_404(Character.objects.visible_to(request.user), code=code)


@login_required
@reads_may_lag  # a character created a moment ago may show up a moment later
def gallery(request):
    q = request.GET.get("q", "").strip()[:100]
    tag = request.GET.get("tag", "").strip()[:60]
    label = request.GET.get("label", "").strip()[:60]
    characters = Character.objects.visible_to(request.user)
    if q:
        characters = characters.filter(Q(name__icontains=q) | Q(nickname__icontains=q))
    if tag:
        characters = characters.filter(tags__name__iexact=tag)
    if label:
        characters = characters.filter(label=label)
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


@login_required
def detail(request, code):
    character = get_character_for_user(request, code)
    return render(request, "characters/detail.html", {"character": character, "tags": character.tags.all()})


def _image(request, code, field: str):
    character = get_object_or_404(
        Character.objects.visible_to(request.user).only("id", "code", "avatar", "thumbnail", "owner_id", "visibility", "is_active"),
        code=code,
    )
    image = getattr(character, field) or character.avatar
    if not image:
        raise Http404("This character has no picture.")
    try:
        response = FileResponse(image.open("rb"), content_type="image/png" if image.name.endswith(".png") else None)
    except FileNotFoundError:
        raise Http404("The picture file is missing.") from None
    response["Cache-Control"] = "private, max-age=86400"
    return response


@login_required
def avatar(request, code):
    return _image(request, code, "avatar")


@login_required
def thumbnail(request, code):
    return _image(request, code, "thumbnail")
