"""A chat's background picture: the upload re-encoded (never stored as sent), small enough for a
phone, and removed with the chat."""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from PIL import Image, ImageOps

from core.images import ImageRejected, open_image

from .models import ChatSession

# The longest side kept: a full-HD screen's width; WebP at this quality is 100 to 400 KB.
BACKGROUND_SIDE = 1920
BACKGROUND_QUALITY = 78

__all__ = ["BACKGROUND_SIDE", "ImageRejected", "chat_set_background"]


def _encoded(data: bytes) -> bytes:
    image = open_image(data, use="a background")
    image = ImageOps.exif_transpose(image)
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    image.thumbnail((BACKGROUND_SIDE, BACKGROUND_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=BACKGROUND_QUALITY, method=4)
    return buffer.getvalue()


def chat_set_background(*, session: ChatSession, data: bytes | None) -> None:
    """Set the chat's background from an uploaded picture (re-encoded), or remove it (None).

    Raises ImageRejected, with a reason to show, for a file that is not a usable picture."""
    old = session.background.name
    if data is None:
        session.background = ""
    else:
        session.background.save(f"{session.code}.webp", ContentFile(_encoded(data)), save=False)
    ChatSession.objects.filter(pk=session.pk).update(background=session.background.name or "")
    if old and old != session.background.name:
        session.background.storage.delete(old)
