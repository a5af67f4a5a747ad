"""Full-text search over a user's messages: one function, the same results on SQLite and PostgreSQL.

SQLite matches in the FTS5 table `chats_message_fts` (migration 0003_message_search), whose
`scope` column carries "u<user> s<chat>" tokens: the user's scope is part of the MATCH, so the
index hands back only that user's rows, newest first, and the LIMIT stops the walk early.
PostgreSQL does the same with the tsvectors in `chats_message_search`, which carry the same scope
as lexemes, through the GIN index `message_search_document_idx`. Both order newest first and
page by message id; the join to the user's chats stays as a guard.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString

from core.databases import mapped_reads
from core.search import Term, fts5_expression, highlight, parse_query, pg_tsquery

from .models import ChatSession

MAX_LIMIT = 50
# Message ids are BIGINTs: a `before` above the largest one bounds nothing (and would not fit the
# query's parameter), one below 1 leaves nothing.
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class MessageHit:
    """One matching message, with what a result list shows and links to."""

    chat_code: uuid.UUID
    chat_title: str
    character_code: uuid.UUID
    character_name: str
    seq: int
    role: str
    speaker: str
    created_at: datetime
    snippet: SafeString
    cursor: int  # the message's position in the result order; pass as `before` for the next page


@dataclass(frozen=True)
class MessageResults:
    hits: list[MessageHit]
    terms: list[Term]
    next_before: int | None


_COLUMNS = "m.id, m.seq, m.role, m.speaker, m.content, m.created_at, s.code, s.title, c.code, c.name"


def _sqlite_sql(terms, *, user_id, session, before, limit):
    scope = f'"s{session.pk}"' if session is not None else f'"u{user_id}"'
    match = f"scope : {scope} AND content : ({fts5_expression(terms)})"
    # The FTS table drives: its MATCH (text and scope) and rowid order need no other index.
    sql = (  # constant SQL: the terms, scope and user are bound parameters
        f"SELECT {_COLUMNS} FROM chats_message_fts f "  # noqa: S608
        "JOIN chats_message m ON m.id = f.rowid "
        "JOIN chats_chatsession s ON s.id = m.session_id "
        "JOIN characters_character c ON c.id = s.character_id "
        "WHERE chats_message_fts MATCH %s AND s.user_id = %s AND s.deleted_at IS NULL"
    )
    params: list = [match, user_id]
    if before is not None:
        sql += " AND f.rowid < %s"
        params.append(before)
    sql += " ORDER BY f.rowid DESC LIMIT %s"
    params.append(limit)
    return sql, params


def _postgres_sql(terms, *, user_id, session, before, limit):
    tsquery, params = pg_tsquery(terms)
    scope = f"'scope s{session.pk}'" if session is not None else f"'scope u{user_id}'"
    # The scope lexeme joins the text in one GIN lookup on message_search_document_idx.
    sql = (  # constant SQL: the terms, scope and user are bound parameters
        f"SELECT {_COLUMNS} FROM chats_message_search f "  # noqa: S608
        "JOIN chats_message m ON m.id = f.message_id "
        "JOIN chats_chatsession s ON s.id = m.session_id "
        "JOIN characters_character c ON c.id = s.character_id "
        f"WHERE f.document @@ ({tsquery} && %s::tsquery) "
        "AND s.user_id = %s AND s.deleted_at IS NULL"
    )
    params += [scope, user_id]
    if before is not None:
        sql += " AND f.message_id < %s"
        params.append(before)
    sql += " ORDER BY f.message_id DESC LIMIT %s"
    params.append(limit)
    return sql, params


def message_search_sql(terms: list[Term], *, user_id: int, session=None, before=None, limit=20):
    """The SQL and parameters search_messages runs on this database (also used to EXPLAIN it)."""
    build = _postgres_sql if connection.vendor == "postgresql" else _sqlite_sql
    return build(terms, user_id=user_id, session=session, before=before, limit=limit)


def search_messages(
    *,
    user,
    query: str,
    session: ChatSession | None = None,
    before: int | None = None,
    limit: int = 20,
) -> MessageResults:
    """The user's messages matching `query`, newest first; within one chat when `session` is given.

    One query. `before` is the previous page's `next_before`.
    """
    terms = parse_query(query)
    if not terms or not user.is_authenticated or (before is not None and before < 1):
        return MessageResults(hits=[], terms=terms, next_before=None)
    if before is not None and before > MAX_ID:
        before = None
    limit = max(1, min(limit, MAX_LIMIT))
    sql, params = message_search_sql(terms, user_id=user.pk, session=session, before=before, limit=limit + 1)
    with mapped_reads(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    hits = [
        MessageHit(
            chat_code=_uuid(chat_code),
            chat_title=title,
            character_code=_uuid(character_code),
            character_name=character_name,
            seq=seq,
            role=role,
            speaker=speaker,
            created_at=_datetime(created_at),
            snippet=highlight(content, terms),
            cursor=pk,
        )
        for pk, seq, role, speaker, content, created_at, chat_code, title, character_code, character_name in rows[
            :limit
        ]
    ]
    next_before = hits[-1].cursor if len(rows) > limit else None
    return MessageResults(hits=hits, terms=terms, next_before=next_before)


def _uuid(value) -> uuid.UUID:
    # SQLite hands back the 32-character hex Django stores; PostgreSQL a UUID.
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)


def _datetime(value) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = parse_datetime(value)
    if parsed is not None and parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
