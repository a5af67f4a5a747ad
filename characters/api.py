"""The JSON API for characters: the list (filtered, paged), one character, and search.

Read-only django-ninja operations (mounted by rpchat/api_urls.py; authentication, JSON errors and
caching headers come from rpchat/api.py). Every one sees only the characters the user may see
(Character.objects.visible_to); others' private characters are 404.
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

import orjson
from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import urlencode
from ninja import Field, Query, Router
from ninja.errors import HttpError

from core.api import (
    BAD_REQUEST,
    NOT_FOUND,
    NOT_MODIFIED,
    UNAUTHORIZED,
    Out,
    PageNumber,
    SearchWords,
    Timestamp,
    not_modified,
    page_of_results,
    validators_documented,
)
from core.http import etag_of
from core.pagination import Page, page_of
from core.table_cache import cached_by_tables
from core.urlcache import cached_reverse

from .models import Character
from .search import GALLERY_TABLES, MAX_LIMIT, clean_filters, gallery_characters, search_characters

# Changes whenever the JSON shape of a character changes, so cached copies are not reused.
API_VERSION = "1"

router = Router(tags=["characters"])


class CharacterSummary(Out):
    code: UUID
    name: str
    label: str
    tags: list[str]
    summary: str = Field(description="The description, cut to 200 characters.")
    thumbnail_url: str | None
    updated_at: Timestamp
    url: str


class CharacterPage(Out):
    results: list[CharacterSummary]
    page: int
    next: str | None = Field(description="The next page, or null on the last one.")
    previous: str | None


class CharacterCard(Out):
    code: UUID
    name: str
    nickname: str
    creator: str
    character_version: str
    label: str
    tags: list[str]
    description: str
    personality: str
    scenario: str
    first_message: str
    alternate_greetings: list[str]
    example_dialogue: str
    system_prompt: str
    post_history_instructions: str
    creator_notes: str
    is_mine: bool
    avatar_url: str | None
    thumbnail_url: str | None
    created_at: Timestamp
    updated_at: Timestamp
    chats_url: str = Field(description="Your chats with this character.")


class CharacterHit(Out):
    code: UUID
    name: str
    label: str
    snippet: str = Field(description="HTML: escaped text around the match, matching words in <mark>.")
    thumbnail_url: str | None
    url: str


class CharacterSearch(Out):
    results: list[CharacterHit]


def _image_urls(character: Character) -> dict:
    return {
        "avatar_url": cached_reverse("characters:avatar", args=[character.code])
        if character.avatar
        else None,
        "thumbnail_url": (
            cached_reverse("characters:thumbnail", args=[character.code])
            if character.thumbnail or character.avatar
            else None
        ),
    }


def _summary(character: Character, tags: list[str]) -> dict:
    description = character.description_start  # for_list() reads no more than the summary needs
    return {
        "code": character.code,
        "name": character.name,
        "label": character.label,
        "tags": tags,
        "summary": description if len(description) <= 200 else description[:199].rstrip() + "…",
        "thumbnail_url": (
            cached_reverse("characters:thumbnail", args=[character.code])
            if character.thumbnail or character.avatar
            else None
        ),
        "updated_at": character.updated_at,
        "url": cached_reverse("api:character", args=[character.code]),
    }


@router.get(
    "/characters/",
    response={200: CharacterPage, **BAD_REQUEST, **UNAUTHORIZED},
    url_name="characters",
    summary="Characters you may see, by name",
)
def character_list(
    request,
    response: HttpResponse,
    q: Annotated[
        str, Query(description="Name or nickname containing this, or card text matching it (full text).")
    ] = "",
    tag: Annotated[str, Query(description="Only characters with this tag (any case).")] = "",
    label: Annotated[str, Query(description="Only characters with this label.")] = "",
    page: PageNumber = 1,
):
    """The gallery's list and filters, a page at a time; pages are read without counting."""
    q, tag, label = clean_filters(q, tag, label)
    user, per_page = request.user, settings.RPCHAT["API_PAGE_SIZE"]

    def results() -> tuple[bool, list[dict]]:
        rows = page_of(
            gallery_characters(user=user, q=q, tag=tag, label=label), number=page, per_page=per_page
        )
        return rows.has_next, [_summary(c, [t.name for t in c.tags.all()]) for c in rows.rows]

    # Until a character or tag changes (core.table_cache), as the gallery page.
    has_next, summaries = cached_by_tables(
        "api-characters", (user.pk, q, tag, label, page, per_page, API_VERSION), GALLERY_TABLES, results
    )
    # Written by orjson, not validated by ninja on the way out: CharacterPage still describes it (tested).
    body = page_of_results(request, Page(rows=summaries, number=page, has_next=has_next), summaries)
    response.content = orjson.dumps(body)
    return response


@router.get(
    "/characters/{uuid:code}/",
    response={200: CharacterCard, **NOT_MODIFIED, **UNAUTHORIZED, **NOT_FOUND},
    url_name="character",
    summary="One character's card",
    openapi_extra=validators_documented(last_modified=True),
)
def character_detail(request, code: UUID, response: HttpResponse):
    """One character's card, as a client shows it or builds prompts from it."""
    character = get_object_or_404(Character.objects.visible_to(request.user), code=code)
    # updated_at moves with every edit of the card, its tags included (characters.signals).
    cached = not_modified(
        request,
        response,
        etag=etag_of("character-json", API_VERSION, character.pk, character.updated_at),
        last_modified=character.updated_at,
    )
    if cached is not None:
        return cached
    return {
        "code": character.code,
        "name": character.name,
        "nickname": character.nickname,
        "creator": character.creator,
        "character_version": character.character_version,
        "label": character.label,
        "tags": [t.name for t in character.tags.all()],
        "description": character.description,
        "personality": character.personality,
        "scenario": character.scenario,
        "first_message": character.first_message,
        "alternate_greetings": [g for g in character.alternate_greetings if isinstance(g, str)],
        "example_dialogue": character.example_dialogue,
        "system_prompt": character.system_prompt,
        "post_history_instructions": character.post_history_instructions,
        "creator_notes": character.creator_notes,
        "is_mine": character.owner_id is not None and character.owner_id == request.user.pk,
        **_image_urls(character),
        "created_at": character.created_at,
        "updated_at": character.updated_at,
        "chats_url": f"{cached_reverse('api:chats')}?{urlencode({'character': character.code})}",
    }


@router.get(
    "/search/characters/",
    response={200: CharacterSearch, **BAD_REQUEST, **UNAUTHORIZED},
    url_name="search_characters",
    summary="Full-text search over the characters you may see, best match first",
    tags=["search"],
)
def character_search(
    request,
    q: SearchWords = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
):
    if not q.strip():
        raise HttpError(400, "Give the words to search for as ?q=.")
    hits = search_characters(user=request.user, query=q.strip(), limit=limit)
    return {
        "results": [
            {
                "code": hit.code,
                "name": hit.name,
                "label": hit.label,
                "snippet": str(hit.snippet),
                "thumbnail_url": cached_reverse("characters:thumbnail", args=[hit.code])
                if hit.has_thumbnail
                else None,
                "url": cached_reverse("api:character", args=[hit.code]),
            }
            for hit in hits
        ]
    }
