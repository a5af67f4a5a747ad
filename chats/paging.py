"""Keyset pages of a chat's messages, and the ETag of a page, shared by the chat pages and the API.

Every page is one range read on message_session_seq_uniq (session, seq), so it costs the same at
any chat length. A page's ETag comes from the (seq, version, status, hidden, updated_at) of
exactly the rows the page would show, read in one query on the same index without the message
text: an edit, swipe, retry or hide changes a row's values, and a delete changes which rows fall
in the page, so any of them changes the ETag.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from core.http import etag_of

from .models import ChatSession, Message

KEY_FIELDS = ("seq", "version", "status", "hidden", "updated_at")


@dataclass
class MessagePage:
    messages: list[Message]  # in chat order (oldest first)
    has_older: bool
    has_newer: bool


def page_size() -> int:
    return settings.RPCHAT["MESSAGE_PAGE_SIZE"]


def _range(rows, session: ChatSession, *, before: int | None = None, after: int | None = None, size: int):
    """One page plus one row (to tell whether there is more) of `rows`, in read order."""
    rows = rows.filter(session=session)
    if after is not None:
        return rows.filter(seq__gt=after).order_by("seq")[: size + 1]
    if before is not None:
        rows = rows.filter(seq__lt=before)
    return rows.order_by("-seq")[: size + 1]


def page_queryset(
    session: ChatSession, *, before: int | None = None, after: int | None = None, size: int | None = None
):
    """The keyset query behind a page, one row past it (what explain_queries checks)."""
    return _range(Message.objects.for_page(), session, before=before, after=after, size=size or page_size())


def _read(session: ChatSession, *, before: int | None, after: int | None, size: int, rows) -> list[Message]:
    return list(
        _range(
            Message.objects.for_page() if rows is None else rows,
            session,
            before=before,
            after=after,
            size=size,
        )
    )


def _page(read: list[Message], *, before: int | None, after: int | None, size: int) -> MessagePage:
    if after is not None:
        return MessagePage(messages=read[:size], has_older=True, has_newer=len(read) > size)
    return MessagePage(messages=read[:size][::-1], has_older=len(read) > size, has_newer=before is not None)


def messages_before(
    session: ChatSession, before: int | None = None, *, size: int | None = None, rows=None
) -> MessagePage:
    """The newest messages (before `before` when given): one keyset query. `rows`: the messages'
    queryset with the columns the caller needs (default: what a rendered message needs)."""
    size = size or page_size()
    return _page(
        _read(session, before=before, after=None, size=size, rows=rows), before=before, after=None, size=size
    )


def messages_after(session: ChatSession, after: int, *, size: int | None = None, rows=None) -> MessagePage:
    """The messages after `after`, oldest first: one keyset query (`rows` as in messages_before)."""
    size = size or page_size()
    return _page(
        _read(session, before=None, after=after, size=size, rows=rows), before=None, after=after, size=size
    )


def page_with_etag(
    session: ChatSession,
    *parts,
    before: int | None = None,
    after: int | None = None,
    size: int | None = None,
    rows=None,
) -> tuple[MessagePage, str]:
    """A page (as messages_before or messages_after give it) and the ETag page_etag would give for it,
    from the one read: for a request that sends no If-None-Match, which would read the page anyway.
    `rows` must load KEY_FIELDS; it may be a values() queryset (dicts)."""
    size = size or page_size()
    read = _read(session, before=before, after=after, size=size, rows=rows)
    if read and isinstance(read[0], dict):
        keys = [tuple(row[name] for name in KEY_FIELDS) for row in read]
    else:
        keys = [tuple(getattr(message, name) for name in KEY_FIELDS) for message in read]
    return _page(read, before=before, after=after, size=size), etag_of(
        session.pk, before, after, keys, *parts
    )


def messages_around(session: ChatSession, at: int, *, size: int | None = None) -> MessagePage:
    """A page with message `at` in it and about a third of the page after it (more when the chat
    starts soon before it): two keyset queries."""
    size = size or page_size()
    older_wanted = size - size // 3
    older = list(
        Message.objects.for_page().filter(session=session, seq__lte=at).order_by("-seq")[: older_wanted + 1]
    )
    older_shown = older[:older_wanted][::-1]
    newer_wanted = size - len(older_shown)
    newer = list(
        Message.objects.for_page().filter(session=session, seq__gt=at).order_by("seq")[: newer_wanted + 1]
    )
    return MessagePage(
        messages=older_shown + newer[:newer_wanted],
        has_older=len(older) > older_wanted,
        has_newer=len(newer) > newer_wanted,
    )


def page_etag(
    session: ChatSession, *parts, before: int | None = None, after: int | None = None, size: int | None = None
) -> str:
    """The ETag of the page `messages_before`/`messages_after` would give: one small query."""
    size = size or page_size()
    keys = list(
        _range(Message.objects.values_list(*KEY_FIELDS), session, before=before, after=after, size=size)
    )
    return etag_of(session.pk, before, after, keys, *parts)
