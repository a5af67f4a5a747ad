"""The JSON API for chats: the user's chats, one chat, its messages in keyset pages, and search.

Read-only. Every view is wrapped in settings_app.auth.api_view (session or token, 401 as JSON)
and looks chats up through _get_session_for_user, so another user's chat is a 404.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, JsonResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import condition, require_GET

from core.http import etag_of
from core.pagination import page_number, page_of
from settings_app.auth import api_error, api_view

from . import paging
from .models import ChatSession, Message
from .search import search_messages
from .views import _get_session_for_user

API_VERSION = "1"


def _chat_summary(session: ChatSession) -> dict:
    return {
        "code": str(session.code),
        "title": session.title,
        "character": {"code": str(session.character.code), "name": session.character.name},
        "message_count": session.message_count,
        "created_at": session.created_at.isoformat(),
        "last_message_at": session.last_message_at.isoformat(),
        "url": reverse("api:chat", args=[session.code]),
    }


@api_view
@require_GET
def chat_list(request):
    """The user's chats, most recent first; ?character=<code> for one character's; ?page=."""
    sessions = (
        ChatSession.objects.for_user(request.user)
        .filter(archived_at__isnull=True)
        .with_character()
        .order_by("-last_message_at", "-id")
    )
    if character := request.GET.get("character"):
        try:
            sessions = sessions.filter(character__code=character)
        except ValidationError:
            return api_error("character must be a character's code (a UUID).", status=400)
    page = page_of(sessions, number=page_number(request), per_page=settings.RPCHAT["API_PAGE_SIZE"])

    def page_url(number):
        params = {k: v for k, v in request.GET.items() if k != "page"}
        return f"{request.path}?{urlencode({**params, 'page': number})}"

    return JsonResponse(
        {
            "results": [_chat_summary(s) for s in page.rows],
            "page": page.number,
            "next": page_url(page.number + 1) if page.has_next else None,
            "previous": page_url(page.number - 1) if page.has_previous else None,
        }
    )


def _session_for_request(request, code) -> ChatSession:
    cached = getattr(request, "_api_session", None)
    if cached is None or cached.code != code:
        cached = _get_session_for_user(request, code)
        request._api_session = cached
    return cached


def _chat_etag(request, code) -> str:
    s = _session_for_request(request, code)
    return etag_of(
        "chat-json",
        API_VERSION,
        s.pk,
        s.title,
        s.message_count,
        s.last_seq,
        s.last_message_at,
        s.character.name,
        s.persona_id,
        s.archived_at,
        s.is_group,
    )


@api_view
@require_GET
@condition(etag_func=_chat_etag)
def chat_detail(request, code):
    session = _session_for_request(request, code)
    return JsonResponse(
        {
            **_chat_summary(session),
            "last_seq": session.last_seq,
            "is_group": session.is_group,
            "archived": session.archived_at is not None,
            "messages_url": reverse("api:messages", args=[session.code]),
            "web_url": session.get_absolute_url(),
        }
    )


def _message(message: Message) -> dict:
    return {
        "seq": message.seq,
        "role": message.role,
        "speaker": message.speaker,
        "content": message.content,
        "status": message.status,
        "version": message.version,
        "hidden": message.hidden,
        "alternative_index": message.alternative_index,
        "alternative_count": message.alternative_count,
        "created_at": message.created_at.isoformat(),
    }


class _BadParam(ValueError):
    pass


def _cursor(request) -> tuple[int | None, int | None]:
    """(before, after) from the query string; at most one of them."""
    values = {}
    for name in ("before", "after"):
        if name in request.GET:
            try:
                values[name] = int(request.GET[name])
            except ValueError:
                raise _BadParam(f"{name} must be a message's seq (a whole number).") from None
            if values[name] < 0:
                raise _BadParam(f"{name} must not be negative.")
    if len(values) == 2:
        raise _BadParam("Give either before or after, not both.")
    return values.get("before"), values.get("after")


def _messages_etag(request, code) -> str | None:
    try:
        before, after = _cursor(request)
    except _BadParam:
        return None
    session = _session_for_request(request, code)
    return paging.page_etag(session, "messages-json", API_VERSION, before=before, after=after)


@api_view
@require_GET
@condition(etag_func=_messages_etag)
def message_list(request, code):
    """A page of 50 messages: the newest, or those before ?before=<seq> (both newest first), or
    those after ?after=<seq> (oldest first). One keyset query at any chat length."""
    session = _session_for_request(request, code)
    try:
        before, after = _cursor(request)
    except _BadParam as exc:
        return api_error(str(exc), status=400)
    url = reverse("api:messages", args=[session.code])
    if after is not None:
        page = paging.messages_after(session, after)
        messages, has_more = page.messages, page.has_newer
    else:
        page = paging.messages_before(session, before)
        messages, has_more = page.messages[::-1], page.has_older
    seqs = [m.seq for m in messages]
    oldest, newest = (min(seqs), max(seqs)) if seqs else (None, None)
    if after is None:
        has_older = has_more
    else:
        has_older = oldest is not None and oldest > 1
    # "newer" is always there: polling it is how a client learns of new messages.
    newer_than = newest if newest is not None else (after if after is not None else max((before or 1) - 1, 0))
    return JsonResponse(
        {
            "messages": [_message(m) for m in messages],
            "has_more": has_more,
            "older": f"{url}?before={oldest}" if has_older else None,
            "newer": f"{url}?after={newer_than}",
        }
    )


@api_view
@require_GET
def message_search(request):
    """Full-text search over the user's messages, newest first; ?chat=<code> for one chat."""
    query = request.GET.get("q", "").strip()
    if not query:
        return api_error("Give the words to search for as ?q=.", status=400)
    session = None
    if chat := request.GET.get("chat"):
        try:
            session = _get_session_for_user(request, chat)
        except (ValidationError, Http404):
            return api_error("No such chat.", status=404)
    try:
        before = int(request.GET["before"]) if "before" in request.GET else None
        limit = int(request.GET.get("limit", "20"))
    except ValueError:
        return api_error("before and limit must be whole numbers.", status=400)
    results = search_messages(user=request.user, query=query, session=session, before=before, limit=limit)
    params = {k: v for k, v in request.GET.items() if k != "before"}
    return JsonResponse(
        {
            "results": [
                {
                    "chat": {"code": str(hit.chat_code), "title": hit.chat_title},
                    "character": {"code": str(hit.character_code), "name": hit.character_name},
                    "seq": hit.seq,
                    "role": hit.role,
                    "speaker": hit.speaker,
                    "created_at": hit.created_at.isoformat(),
                    "snippet": str(hit.snippet),
                    "web_url": f"{reverse('chats:detail', args=[hit.chat_code])}?at={hit.seq}#m{hit.seq}",
                    "messages_url": f"{reverse('api:messages', args=[hit.chat_code])}?before={hit.seq + 1}",
                }
                for hit in results.hits
            ],
            "next": (
                f"{request.path}?{urlencode({**params, 'before': results.next_before})}"
                if results.next_before
                else None
            ),
        }
    )
