"""The benchmark's floor: the newest 50 messages of a chat by raw SQL, as JSON, with nothing else.

Served in front of Django only by the benchmark's own server (`tools.bench_asgi:application`):
no middleware, no session or user, no ORM, no template; one query on a connection the worker
thread keeps open. What `manage.py bench` compares every page against: the least any Python server
can do to answer "the newest page of this chat". Its write twin, `/__bench__/floor-write/<code>/`,
is one raw UPDATE of a message of the chat in one transaction: what writes are compared with.
"""

from __future__ import annotations

import json
import uuid

from asgiref.sync import sync_to_async

PREFIX = "/__bench__/floor/"
# The write floor: POST a body, it becomes the chat's first message's text (one UPDATE, committed;
# the first, so the version of the newest, which the benchmark's edits change, stays theirs).
WRITE_PREFIX = "/__bench__/floor-write/"
# Only the bench user's chats: even if the switch were left on somewhere, no one else's are served.
SQL = (
    "SELECT seq, role, speaker, content, status, created_at FROM chats_message "
    "WHERE session_id = (SELECT id FROM chats_chatsession WHERE code = %s "
    "AND user_id = (SELECT id FROM auth_user WHERE username = 'bench')) "
    "ORDER BY seq DESC LIMIT 50"
)


WRITE_SQL = (
    "UPDATE chats_message SET content = %s, version = version + 1 "
    "WHERE session_id = (SELECT id FROM chats_chatsession WHERE code = %s "
    "AND user_id = (SELECT id FROM auth_user WHERE username = 'bench')) "
    "AND seq = 1"
)


def _param(code: str):
    from django.db import connection

    value = uuid.UUID(code)
    return value.hex if connection.vendor == "sqlite" else value  # how each stores a UUIDField


def _write(code: str, text: str) -> bytes:
    from django.db import connection, transaction

    param = _param(code)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(WRITE_SQL, [text, param])
        count = cursor.rowcount
    return json.dumps({"updated": count}).encode()


def _rows(code: str) -> bytes:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(SQL, [_param(code)])
        rows = cursor.fetchall()
    return json.dumps(
        [
            {
                "seq": seq,
                "role": role,
                "speaker": speaker,
                "content": content,
                "status": status,
                "created_at": str(created),
            }
            for seq, role, speaker, content, status, created in rows
        ]
    ).encode()


class BenchFloor:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope["path"] if scope["type"] == "http" else ""
        if not path.startswith((PREFIX, WRITE_PREFIX)):
            return await self.app(scope, receive, send)
        try:
            if path.startswith(WRITE_PREFIX):
                text = b""
                while True:
                    message = await receive()
                    text += message.get("body", b"")
                    if not message.get("more_body"):
                        break
                code = path[len(WRITE_PREFIX) :].strip("/")
                body = await sync_to_async(_write, thread_sensitive=False)(code, text.decode()[:10000])
            else:
                body = await sync_to_async(_rows, thread_sensitive=False)(path[len(PREFIX) :].strip("/"))
            status = 200
        except ValueError:
            body, status = b'{"error": "not a chat code"}', 400
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
