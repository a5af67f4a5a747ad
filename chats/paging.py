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
from core.prepared import PreparedQuery

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
    session: ChatSession,
    *,
    before: int | None = None,
    after: int | None = None,
    size: int | None = None,
    fields: tuple | None = None,
):
    """The keyset query behind a page, one row past it (what explain_queries checks): model
    instances, or with `fields` the rows the prepared read runs (the same SQL)."""
    size = size or page_size()
    if fields is None:
        return _range(Message.objects.for_page(), session, before=before, after=after, size=size)
    return _range(Message.objects.values_list(*fields), session, before=before, after=after, size=size)


def _values(fields: tuple, direction: str, size: int, *, session: int, cursor: int):
    return _range(
        Message.objects.values_list(*fields),
        session,
        before=cursor if direction == "before" else None,
        after=cursor if direction == "after" else None,
        size=size,
    )


# The same keyset read as plain rows of some columns, compiled once per connection (core.prepared).
_VALUES = PreparedQuery(Message, _values)


def _id(session: ChatSession | int) -> int:
    return session if isinstance(session, int) else session.pk


def _read(
    session: ChatSession | int,
    *,
    before: int | None,
    after: int | None,
    size: int,
    fields: tuple | None = None,
) -> list:
    """The page's messages and one more: model instances with what a rendered message needs, or,
    with `fields`, plain dicts of those columns."""
    if fields is None:
        return list(_range(Message.objects.for_page(), session, before=before, after=after, size=size))
    return [
        dict(zip(fields, row, strict=True))
        for row in _value_rows(session, fields, before=before, after=after, size=size)
    ]


def _value_rows(
    session: ChatSession | int,
    fields: tuple,
    *,
    before: int | None,
    after: int | None,
    size: int,
    raw: bool = False,
):
    read = _VALUES.raw_rows if raw else _VALUES.rows
    return read(
        tuple(fields), *_shape(before, after, size), session=_id(session), cursor=_cursor(before, after)
    )


def _shape(before: int | None, after: int | None, size: int) -> tuple[str, int]:
    if after is not None:
        return "after", size
    return ("before" if before is not None else "newest"), size


def _cursor(before: int | None, after: int | None) -> int:
    # Within a 64-bit column's range, which the database driver insists on (the ORM turns an
    # out-of-range comparison into an empty or a full match itself): every seq is inside it, so
    # the comparison keeps its meaning. A ?before= of 10**25 is "before everything".
    cursor = after if after is not None else (before if before is not None else 0)
    return min(max(cursor, -(2**63)), 2**63 - 1)


def _page(read: list[Message], *, before: int | None, after: int | None, size: int) -> MessagePage:
    if after is not None:
        return MessagePage(messages=read[:size], has_older=True, has_newer=len(read) > size)
    return MessagePage(messages=read[:size][::-1], has_older=len(read) > size, has_newer=before is not None)


def messages_before(
    session: ChatSession | int,
    before: int | None = None,
    *,
    size: int | None = None,
    fields: tuple | None = None,
) -> MessagePage:
    """The newest messages (before `before` when given): one keyset query. Model instances with
    what a rendered message needs, or with `fields`, dicts of those columns."""
    size = size or page_size()
    return _page(
        _read(session, before=before, after=None, size=size, fields=fields),
        before=before,
        after=None,
        size=size,
    )


def messages_after(
    session: ChatSession | int, after: int, *, size: int | None = None, fields: tuple | None = None
) -> MessagePage:
    """The messages after `after`, oldest first: one keyset query (`fields` as in messages_before)."""
    size = size or page_size()
    return _page(
        _read(session, before=None, after=after, size=size, fields=fields),
        before=None,
        after=after,
        size=size,
    )


def page_with_etag(
    session: ChatSession | int,
    *parts,
    fields: tuple,
    before: int | None = None,
    after: int | None = None,
    size: int | None = None,
) -> tuple[MessagePage, str]:
    """A page as dicts of `fields` (which must include KEY_FIELDS), and the ETag page_etag gives for
    exactly those rows, from one read: a body kept under its ETag must be the rows that ETag hashes
    (a body read after the keys could show messages a later delete takes away, under keys that
    come back)."""
    size = size or page_size()
    positions = [fields.index(name) for name in KEY_FIELDS]
    raw, rows = _VALUES.both(
        tuple(fields), *_shape(before, after, size), session=_id(session), cursor=_cursor(before, after)
    )
    keys = [tuple(row[i] for i in positions) for row in raw]
    read = [dict(zip(fields, row, strict=True)) for row in rows]
    return _page(read, before=before, after=after, size=size), etag_of(
        _id(session), before, after, keys, *parts
    )


def messages_by_seq(session: ChatSession, seqs: list[int]):
    """Some messages of a chat, by seq, with what a rendered message needs: the ones of a page read
    as rows whose HTML is not cached yet (chats.http.render_rows)."""
    return Message.objects.for_page().filter(session=session, seq__in=seqs)


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
    session: ChatSession | int,
    *parts,
    before: int | None = None,
    after: int | None = None,
    size: int | None = None,
) -> str:
    """The ETag of the page `messages_before`/`messages_after` would give: one small query, its
    rows hashed as the driver gives them."""
    size = size or page_size()
    keys = _value_rows(session, KEY_FIELDS, before=before, after=after, size=size, raw=True)
    return etag_of(_id(session), before, after, keys, *parts)
