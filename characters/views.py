from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import FileResponse, Http404
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from rpchat.pagination import page_number, page_of

from .models import Character, Tag
from .services import character_restore as character_restore_service
from .services import character_soft_delete


def get_character_for_user(request, code) -> Character:
    """A character the user may see, or 404 (private characters of others do not exist for them)."""
    return get_object_or_404(Character.objects.visible_to(request.user), code=code)


@login_required
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


def _get_own_character(request, code, *, deleted: bool = False) -> Character:
    """A character the user owns (only owners delete and restore), or 404."""
    return get_object_or_404(
        Character, owner=request.user, code=code, deleted_at__isnull=not deleted
    )


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
