"""The JSON API for chats: the user's chats, one chat, its messages in keyset pages, and search.

Read-only django-ninja operations (mounted by rpchat/api_urls.py; authentication, JSON errors and
caching headers come from rpchat/api.py). Chats are looked up among the user's own
(ChatSession.objects.for_user), so another user's chat is a 404.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

import orjson
from django.conf import settings
from django.core.cache import caches
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import get_script_prefix
from django.utils.http import quote_etag, urlencode
from ninja import Field, Query, Router
from ninja.errors import HttpError

from core.api import (
    BAD_REQUEST,
    MAX_CURSOR,
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
from core.prepared import PreparedQuery
from core.urlcache import cached_reverse

from . import paging
from .models import ChatSession, Message
from .search import MAX_LIMIT, search_messages

API_VERSION = "2"

router = Router(tags=["chats"])

# A message's seq, or a search cursor: a whole number a 64-bit column can hold.
Cursor = Annotated[int, Field(ge=0, le=MAX_CURSOR)]


class CharacterRef(Out):
    code: UUID
    name: str


class ChatSummary(Out):
    code: UUID
    title: str
    character: CharacterRef
    message_count: int
    created_at: Timestamp
    last_message_at: Timestamp
    url: str


class ChatPage(Out):
    results: list[ChatSummary]
    page: int
    next: str | None = Field(description="The next page, or null on the last one.")
    previous: str | None


class Chat(ChatSummary):
    last_seq: int
    is_group: bool
    archived: bool
    messages_url: str
    web_url: str = Field(description="The chat's page.")


class ChatMessage(Out):
    seq: int
    role: Literal[tuple(Message.Role.values)]
    speaker: str
    content: str = Field(description="Markdown as written; render it sanitized.")
    reasoning: str = Field(
        description="A reasoning model's thinking before the reply (empty otherwise): plain text, "
        "never sent back to the model."
    )
    status: Literal[tuple(Message.Status.values)]
    version: int = Field(description="Bumped by every change of the message.")
    hidden: bool
    alternative_index: int
    alternative_count: int
    model_label: str = Field(
        description="The model that wrote this reply, with its connection profile in brackets; "
        "empty for people's messages, imported ones and replies from before models were recorded."
    )
    sampling_label: str = Field(
        description="That model's sampling for this reply, as the chat page shows it."
    )
    created_at: Timestamp


class MessagePage(Out):
    messages: list[ChatMessage]
    has_more: bool = Field(description="More messages in this page's direction.")
    older: str | None = Field(description="The next older page, or null at the start of the chat.")
    newer: str = Field(description="The next newer page: always there, poll it for new messages.")


class ChatRef(Out):
    code: UUID
    title: str


class MessageHit(Out):
    chat: ChatRef
    character: CharacterRef
    seq: int
    role: str
    speaker: str
    created_at: Timestamp
    snippet: str = Field(description="HTML: escaped text around the match, matching words in <mark>.")
    web_url: str = Field(description="The chat page opened at this message.")
    messages_url: str = Field(description="The API's page of messages that ends with this one.")


class MessageSearch(Out):
    results: list[MessageHit]
    next: str | None = Field(description="The next page of results, or null.")


def _chat(request, code) -> ChatSession:
    """One of the user's chats with its character's short columns, or 404."""
    return get_object_or_404(ChatSession.objects.for_user(request.user).with_character(), code=code)


def _chat_summary(session: ChatSession) -> dict:
    return {
        "code": session.code,
        "title": session.title,
        "character": {"code": session.character.code, "name": session.character.name},
        "message_count": session.message_count,
        "created_at": session.created_at,
        "last_message_at": session.last_message_at,
        "url": cached_reverse("api:chat", args=[session.code]),
    }


@router.get(
    "/chats/",
    response={200: ChatPage, **BAD_REQUEST, **UNAUTHORIZED},
    url_name="chats",
    summary="Your chats, most recent first",
)
def chat_list(
    request,
    response: HttpResponse,
    character: Annotated[UUID | None, Query(description="Only chats with this character.")] = None,
    page: PageNumber = 1,
):
    per_page = settings.RPCHAT["API_PAGE_SIZE"]
    if page == 1:  # the one nearly every client asks for: compiled once per connection
        by = {} if character is None else {"character": character}
        found = _FIRST_CHATS.instances(per_page + 1, character is not None, user=request.user.pk, **by)
        rows = Page(rows=found[:per_page], number=1, has_next=len(found) > per_page)
    else:
        rows = page_of(_chats(request.user.pk, character), number=page, per_page=per_page)
    # Written by orjson, not validated by ninja on the way out: ChatPage still describes it (tested).
    response.content = orjson.dumps(page_of_results(request, rows, [_chat_summary(s) for s in rows.rows]))
    return response


def _chats(user, character: UUID | None = None):
    """The user's chats, not archived, most recent first (with one character's only)."""
    sessions = (
        ChatSession.objects.for_user(user)
        .filter(archived_at__isnull=True)
        .with_character()
        .order_by("-last_message_at", "-id")
    )
    return sessions if character is None else sessions.filter(character__code=character)


# The first page of _chats() (core.prepared: every other page's offset would be a query of its own).
# Whether a character is given is part of the shape: it adds a filter to the SQL.
_FIRST_CHATS = PreparedQuery(
    ChatSession, lambda size, by_character, *, user, character=None: _chats(user, character)[:size]
)


@router.get(
    "/chats/{uuid:code}/",
    response={200: Chat, **NOT_MODIFIED, **UNAUTHORIZED, **NOT_FOUND},
    url_name="chat",
    summary="One of your chats",
    openapi_extra=validators_documented(),
)
def chat_detail(request, code: UUID, response: HttpResponse):
    session = _chat(request, code)
    etag = etag_of(
        "chat-json",
        API_VERSION,
        session.pk,
        session.title,
        session.message_count,
        session.last_seq,
        session.last_message_at,
        session.character.name,
        session.persona_id,
        session.archived_at,
        session.is_group,
    )
    if (cached := not_modified(request, response, etag=etag)) is not None:
        return cached
    return {
        **_chat_summary(session),
        "last_seq": session.last_seq,
        "is_group": session.is_group,
        "archived": session.archived_at is not None,
        "messages_url": cached_reverse("api:messages", args=[session.code]),
        "web_url": session.get_absolute_url(),
    }


# A message as the API gives it: the API's page reads only these columns, as plain rows (no model
# instances, no speaker's card joined), data in, data out.
MESSAGE_FIELDS = (
    "seq", "role", "speaker", "content", "reasoning", "status", "version", "hidden",
    "alternative_index", "alternative_count", "model_label", "sampling_label", "created_at",
)  # fmt: skip


# A message page's JSON, by its ETag (which names the chat, the cursor and every message's version):
# never stale, only unused once a message of it changes. In the `pages` cache (a few hundred entries
# in local memory: settings.CACHES), and only bodies up to PAGE_CACHE_MAX_BYTES (a page of fifty
# ordinary messages is 15 to 20 KB).
PAGE_CACHE_PREFIX = f"apipage:{API_VERSION}"
PAGE_CACHE_TIMEOUT = 3600
PAGE_CACHE_MAX_BYTES = 64 * 1024

# The columns the page reads: the message's, and the last of its keys (the ETag hashes the keys of
# the rows the body is made of).
PAGE_FIELDS = (*MESSAGE_FIELDS, *(f for f in paging.KEY_FIELDS if f not in MESSAGE_FIELDS))

# The id of one of the user's chats (compiled once per connection: core.prepared).
_CHAT_ID = PreparedQuery(
    ChatSession,
    lambda *, user, code: ChatSession.objects.for_user(user).filter(code=code).values_list("pk")[:1],
)


def _chat_id(request, code: UUID) -> int:
    """The id of one of the user's chats, or 404: for the pages that need no more of it."""
    rows = _CHAT_ID.rows(user=request.user.pk, code=code)
    if not rows:
        raise Http404
    return rows[0][0]


@router.get(
    "/chats/{uuid:code}/messages/",
    response={200: MessagePage, **NOT_MODIFIED, **BAD_REQUEST, **UNAUTHORIZED, **NOT_FOUND},
    url_name="messages",
    summary="A page of messages (keyset)",
    openapi_extra=validators_documented(),
)
def message_list(
    request,
    code: UUID,
    response: HttpResponse,
    before: Annotated[Cursor | None, Query(description="The page before this seq, newest first.")] = None,
    after: Annotated[Cursor | None, Query(description="The page after this seq, oldest first.")] = None,
):
    """Without parameters: the newest page, newest first. `before=<seq>`: the page before that seq,
    newest first. `after=<seq>`: the page after it, oldest first. `older` and `newer` are the next
    pages in each direction; poll `newer` for new messages. One keyset query at any chat length."""
    if before is not None and after is not None:
        raise HttpError(400, "Give either before or after, not both.")
    session = _chat_id(request, code)
    parts = ("messages-json", API_VERSION)
    # The page's keys first (no text): enough for a revalidation's 304, and the ETag names the body,
    # so a page asked for again (a client polling, a chat opened again) is a cache read.
    etag = paging.page_etag(session, *parts, before=before, after=after)
    if (cached := not_modified(request, response, etag=etag)) is not None:
        return cached
    cache = caches["pages"]
    body = cache.get(_page_key(etag))
    if body is None:
        # The body and its ETag from one read: kept under an ETag, a body must be the very rows it
        # hashes (read after the keys, it could hold messages a later delete takes away, under keys
        # that then come back).
        page, read_etag = paging.page_with_etag(
            session, *parts, fields=PAGE_FIELDS, before=before, after=after
        )
        body = orjson.dumps(
            _page_body(cached_reverse("api:messages", args=[code]), page, before=before, after=after)
        )
        streaming = any(m["status"] == Message.Status.STREAMING for m in page.messages)
        # Not a page with a reply being written (its text changes twice a second: each body would be
        # read once), nor a very long one (the cache holds pages, not books).
        if not streaming and len(body) <= PAGE_CACHE_MAX_BYTES:
            cache.set(_page_key(read_etag), body, PAGE_CACHE_TIMEOUT)
        if read_etag != etag:
            response["ETag"] = quote_etag(read_etag)
    response.content = body
    return response


def _page_key(etag: str) -> str:
    # The links in a body carry the script prefix the page was asked under.
    return f"{PAGE_CACHE_PREFIX}:{get_script_prefix()}:{etag}"


def _page_body(url: str, page: paging.MessagePage, *, before: int | None, after: int | None) -> dict:
    """What message_list answers for a page read as rows (MessagePage, checked against it in tests:
    this is written by orjson, not validated by ninja on the way out)."""
    if after is not None:
        messages, has_more = page.messages, page.has_newer
    else:
        messages, has_more = page.messages[::-1], page.has_older
    seqs = [m["seq"] for m in messages]
    oldest, newest = (min(seqs), max(seqs)) if seqs else (None, None)
    has_older = has_more if after is None else oldest is not None and oldest > 1
    # "newer" is always there: polling it is how a client learns of new messages.
    newer_than = newest if newest is not None else (after if after is not None else max((before or 1) - 1, 0))
    return {
        "messages": [{name: m[name] for name in MESSAGE_FIELDS} for m in messages],
        "has_more": has_more,
        "older": f"{url}?before={oldest}" if has_older else None,
        "newer": f"{url}?after={newer_than}",
    }


@router.get(
    "/search/messages/",
    response={200: MessageSearch, **BAD_REQUEST, **UNAUTHORIZED, **NOT_FOUND},
    url_name="search_messages",
    summary="Full-text search over your messages, newest first",
    tags=["search"],
)
def message_search(
    request,
    q: SearchWords = "",
    chat: Annotated[UUID | None, Query(description="Only in this chat.")] = None,
    before: Annotated[Cursor | None, Query(description="The cursor from `next`.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
):
    query = q.strip()
    if not query:
        raise HttpError(400, "Give the words to search for as ?q=.")
    session = None
    if chat is not None:
        try:
            session = _chat(request, chat)
        except Http404:
            raise HttpError(404, "No such chat.") from None
    results = search_messages(user=request.user, query=query, session=session, before=before, limit=limit)
    params = {k: v for k, v in request.GET.items() if k != "before"}
    return {
        "results": [
            {
                "chat": {"code": hit.chat_code, "title": hit.chat_title},
                "character": {"code": hit.character_code, "name": hit.character_name},
                "seq": hit.seq,
                "role": hit.role,
                "speaker": hit.speaker,
                "created_at": hit.created_at,
                "snippet": str(hit.snippet),
                "web_url": f"{cached_reverse('chats:detail', args=[hit.chat_code])}?at={hit.seq}#m{hit.seq}",
                "messages_url": f"{cached_reverse('api:messages', args=[hit.chat_code])}?before={hit.seq + 1}",
            }
            for hit in results.hits
        ],
        "next": (
            f"{request.path}?{urlencode({**params, 'before': results.next_before})}"
            if results.next_before
            else None
        ),
    }
