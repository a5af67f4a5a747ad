"""The JSON API for characters: the list (filtered, paged), one character, and search.

Read-only. Every view is wrapped in settings_app.auth.api_view (session or token, 401 as JSON)
and sees only the characters the user may see; others' private characters are 404.
"""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import condition, require_GET

from rpchat.http import etag_of
from rpchat.pagination import page_number, page_of
from settings_app.auth import api_error, api_view

from .models import Character
from .search import filter_characters, search_characters
from .views import gallery_filters, get_character_for_user

# Changes whenever the JSON shape of a character changes, so cached copies are not reused.
API_VERSION = "1"


def _image_urls(character: Character) -> dict:
    return {
        "avatar_url": reverse("characters:avatar", args=[character.code]) if character.avatar else None,
        "thumbnail_url": (
            reverse("characters:thumbnail", args=[character.code])
            if character.thumbnail or character.avatar
            else None
        ),
    }


def _summary(character: Character, tags: list[str]) -> dict:
    description = character.description_start  # for_list() reads no more than the summary needs
    return {
        "code": str(character.code),
        "name": character.name,
        "label": character.label,
        "tags": tags,
        "summary": description if len(description) <= 200 else description[:199].rstrip() + "…",
        "thumbnail_url": _image_urls(character)["thumbnail_url"],
        "updated_at": character.updated_at.isoformat(),
        "url": reverse("api:character", args=[character.code]),
    }


def _page_url(request, number: int) -> str:
    params = {k: v for k, v in request.GET.items() if k != "page"}
    params["page"] = number
    return f"{request.path}?{urlencode(params)}"


@api_view
@require_GET
def character_list(request):
    """Characters the user may see, by name; ?q=, ?tag=, ?label= as in the gallery; ?page=."""
    q, tag, label = gallery_filters(request)
    characters = filter_characters(Character.objects.visible_to(request.user), q=q, tag=tag, label=label)
    page = page_of(
        characters.for_list().order_by("name", "id"),
        number=page_number(request),
        per_page=settings.RPCHAT["API_PAGE_SIZE"],
    )
    return JsonResponse(
        {
            "results": [_summary(c, [t.name for t in c.tags.all()]) for c in page.rows],
            "page": page.number,
            "next": _page_url(request, page.number + 1) if page.has_next else None,
            "previous": _page_url(request, page.number - 1) if page.has_previous else None,
        }
    )


def _character_for_request(request, code) -> Character:
    cached = getattr(request, "_api_character", None)
    if cached is None or cached.code != code:
        cached = get_character_for_user(request, code)
        request._api_character = cached
    return cached


def _character_etag(request, code) -> str:
    # updated_at moves with every edit of the card, its tags included (characters.signals).
    character = _character_for_request(request, code)
    return etag_of("character-json", API_VERSION, character.pk, character.updated_at)


def _character_last_modified(request, code):
    return _character_for_request(request, code).updated_at


@api_view
@require_GET
@condition(etag_func=_character_etag, last_modified_func=_character_last_modified)
def character_detail(request, code):
    """One character's card, as a client shows it or builds prompts from it."""
    character = _character_for_request(request, code)
    return JsonResponse(
        {
            "code": str(character.code),
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
            "created_at": character.created_at.isoformat(),
            "updated_at": character.updated_at.isoformat(),
            "chats_url": f"{reverse('api:chats')}?{urlencode({'character': character.code})}",
        }
    )


@api_view
@require_GET
def character_search(request):
    """Full-text search over the characters the user may see, best match first."""
    query = request.GET.get("q", "").strip()
    if not query:
        return api_error("Give the words to search for as ?q=.", status=400)
    try:
        limit = int(request.GET.get("limit", "20"))
    except ValueError:
        return api_error("limit must be a number from 1 to 50.", status=400)
    hits = search_characters(user=request.user, query=query, limit=limit)
    return JsonResponse(
        {
            "results": [
                {
                    "code": str(hit.code),
                    "name": hit.name,
                    "label": hit.label,
                    "snippet": str(hit.snippet),
                    "thumbnail_url": reverse("characters:thumbnail", args=[hit.code])
                    if hit.has_thumbnail
                    else None,
                    "url": reverse("api:character", args=[hit.code]),
                }
                for hit in hits
            ]
        }
    )
