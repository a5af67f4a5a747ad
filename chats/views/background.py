"""A chat's background picture: upload or remove it (from the chat's settings), and serve it."""

from datetime import UTC, datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import condition, require_GET, require_POST

from characters.services import human_size
from core.http import etag_of, private_cache
from core.uploads import limit_uploads

from ..backgrounds import ImageRejected, chat_set_background
from ..http import get_session_for_user, session_for_request


@login_required
@require_POST
@limit_uploads("MAX_BACKGROUND_BYTES")
def chat_background(request, code, *, upload_limit):
    """Upload (field `image`) or remove (`remove=1`) the chat's background; back to its settings."""
    handler = upload_limit
    session = get_session_for_user(request, code)
    back = reverse("chats:settings", args=[session.code]) + "#background"
    if request.POST.get("remove") == "1":
        chat_set_background(session=session, data=None)
        messages.success(request, "Background removed.")
        return redirect(back)
    if handler.too_large:
        limit = human_size(handler.limit)
        return _refused(request, back, f"That picture is larger than {limit}; choose a smaller one.")
    upload = request.FILES.get("image")
    if upload is None:
        return _refused(request, back, "Choose a picture to upload.")
    try:
        chat_set_background(session=session, data=upload.read())
    except ImageRejected as exc:
        return _refused(request, back, f"{upload.name}: {exc}")
    messages.success(request, "Background set. Messages stay on solid bubbles so they stay readable.")
    return redirect(back)


def _refused(request, back: str, reason: str):
    # Shown next to the upload field (the settings page reads the "inline background" tags).
    messages.error(request, reason, extra_tags="inline background")
    return redirect(back)


def _background_file(request, code):
    background = session_for_request(request, code).background
    if not background:
        raise Http404("This chat has no background.")
    return background


def _background_mtime(request, code) -> datetime | None:
    background = _background_file(request, code)
    try:
        return background.storage.get_modified_time(background.name).astimezone(UTC)
    except (FileNotFoundError, NotImplementedError):
        return None


def _background_etag(request, code) -> str:
    return etag_of(_background_file(request, code).name, _background_mtime(request, code))


@login_required
@require_GET
@private_cache(max_age=settings.RPCHAT["IMAGE_MAX_AGE"])
@condition(etag_func=_background_etag, last_modified_func=_background_mtime)
def chat_background_image(request, code):
    background = _background_file(request, code)
    try:
        return FileResponse(background.open("rb"), content_type="image/webp")
    except FileNotFoundError:
        raise Http404("The picture file is missing.") from None
