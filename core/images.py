"""Pictures people upload (avatars, personas, chat backgrounds): read with a pixel limit, checked,
turned upright, cropped and re-encoded, so nothing but pixels of a known size is ever stored."""

from __future__ import annotations

import io

from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow refuses images above this many pixels (decompression bombs) with an error.
MAX_AVATAR_PIXELS = 4096 * 4096


class ImageRejected(ValueError):
    pass


def open_image(data: bytes, *, use: str = "an avatar") -> Image.Image:
    """The decoded picture, or ImageRejected saying why it cannot be used as `use`."""
    Image.MAX_IMAGE_PIXELS = MAX_AVATAR_PIXELS
    try:
        image = Image.open(io.BytesIO(data))
        # Pillow only warns between one and two times MAX_IMAGE_PIXELS: refuse before decoding.
        width, height = image.size
        if width * height > MAX_AVATAR_PIXELS:
            raise ImageRejected(
                f"The image is too large to use as {use} ({width} x {height} pixels; "
                f"at most {MAX_AVATAR_PIXELS:,} pixels)."
            )
        image.load()
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageRejected(f"The image is too large to use as {use} ({exc}).") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(f"The image could not be read: {exc}") from None
    return image


# Portraits uploaded (characters, personas): these formats, cropped to the card's 2:3 frame, at most this size.
AVATAR_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}
AVATAR_MAX_SIZE = (1024, 1536)


def portrait_from_upload(data: bytes) -> bytes:
    """An uploaded picture as a stored portrait: PNG, JPEG or WebP only, turned upright, cropped to
    2:3 around its centre, scaled down to AVATAR_MAX_SIZE and re-encoded as PNG (which drops
    whatever else the file carried, an old card's chunks included)."""
    image = open_image(data)
    if image.format not in AVATAR_FORMATS:
        raise ImageRejected(
            f"This is a {image.format or 'file of an unknown kind'}; use a PNG, JPEG or WebP picture."
        )
    image = ImageOps.exif_transpose(image)
    width, height = image.size
    if width * 3 > height * 2:  # wider than 2:3: cut the sides
        new_width = max(1, height * 2 // 3)
        left = (width - new_width) // 2
        image = image.crop((left, 0, left + new_width, height))
    else:  # taller: cut top and bottom
        new_height = max(1, width * 3 // 2)
        top = (height - new_height) // 2
        image = image.crop((0, top, width, top + new_height))
    image.thumbnail(AVATAR_MAX_SIZE)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
