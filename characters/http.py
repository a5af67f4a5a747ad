"""Conditional GET for card downloads (PNG and JSON cards): ETag and Last-Modified from the
character's and its lorebook's updated_at, read in one small query; a 304 skips building the card.

Used by the download view (characters/views.py):

    @login_required
    @require_GET
    @card_download_cache
    def card_download(request, code, fmt):
        ...

The view must look the character up with get_character_for_user (others' private cards: 404).
"""

from __future__ import annotations

import functools
from datetime import datetime

from django.db.models import OuterRef, Subquery
from django.shortcuts import get_object_or_404
from django.views.decorators.http import condition

from core.http import etag_of, once_per_request, private_revalidate

from .models import Character, Lorebook

# Changes when the card writer changes what it puts in a card.
CARD_FORMAT_VERSION = "1"


@once_per_request
def _card_stamp(request, code) -> tuple[int, datetime, datetime | None]:
    """(id, character updated_at, lorebook updated_at) of a character the user may see, or 404."""
    book = Lorebook.objects.filter(character=OuterRef("pk")).values("updated_at")[:1]
    return get_object_or_404(
        Character.objects.visible_to(request.user)
        .annotate(book_updated_at=Subquery(book))
        .values_list("id", "updated_at", "book_updated_at"),
        code=code,
    )


def card_etag(request, code, *args, **kwargs) -> str:
    # args/kwargs: the format (png/json) and anything else in the URL changes the bytes too.
    return etag_of("card", CARD_FORMAT_VERSION, *_card_stamp(request, code), args, sorted(kwargs.items()))


def card_last_modified(request, code, *args, **kwargs) -> datetime:
    _, updated_at, book_updated_at = _card_stamp(request, code)
    return max(updated_at, book_updated_at) if book_updated_at else updated_at


def card_download_cache(view):
    """ETag/Last-Modified and 304s for a card download view taking the character's `code`."""
    conditional = condition(etag_func=card_etag, last_modified_func=card_last_modified)(view)

    @functools.wraps(view)
    def wrapper(request, code, *args, **kwargs):
        return private_revalidate(conditional(request, code, *args, **kwargs))

    return wrapper
