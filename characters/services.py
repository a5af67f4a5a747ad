"""Writes on characters: setting an avatar (and its thumbnail), seeding the demo cast."""

from __future__ import annotations

import io

from django.core.files.base import ContentFile
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from .models import Character

THUMBNAIL_SIZE = (128, 128)
# Pillow refuses images above this many pixels (decompression bombs) with an error.
MAX_AVATAR_PIXELS = 4096 * 4096


class ImageRejected(ValueError):
    pass


def _open_image(data: bytes) -> Image.Image:
    Image.MAX_IMAGE_PIXELS = MAX_AVATAR_PIXELS
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"The image is too large to use as an avatar ({exc}).") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageRejected(f"The image could not be read: {exc}") from None
    return image


def character_set_avatar(*, character: Character, data: bytes, save: bool = True) -> None:
    """Store `data` as the avatar and make the thumbnail now, so no request ever decodes a PNG."""
    image = _open_image(data)
    thumb = image.convert("RGBA") if image.mode not in ("RGB", "RGBA") else image.copy()
    thumb.thumbnail(THUMBNAIL_SIZE)
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG", optimize=True)
    name = f"{character.code}.png"
    character.avatar.save(name, ContentFile(data), save=False)
    character.thumbnail.save(name, ContentFile(buffer.getvalue()), save=False)
    if save:
        character.save(update_fields=["avatar", "thumbnail", "updated_at"])


def character_soft_delete(*, character: Character) -> None:
    """Hide the character everywhere at once; `manage.py prune` purges it after the grace period."""
    Character.objects.filter(pk=character.pk).update(deleted_at=timezone.now())


def character_restore(*, character: Character) -> None:
    Character.objects.filter(pk=character.pk).update(deleted_at=None)
