"""The benchmark's floor: the newest 50 messages of a chat by raw SQL, as JSON, with nothing else.

Served in front of Django only by the benchmark's own server (`tools.bench_asgi:application`):
no middleware, no session or user, no ORM, no template; one query on a connection the worker
thread keeps open. What `manage.py bench` compares every page against: the least any Python server
can do to answer "the newest page of this chat".
"""

from __future__ import annotations

import json
import uuid

from asgiref.sync import sync_to_async

PREFIX = "/__bench__/floor/"
# Only the bench user's chats: even if the switch were left on somewhere, no one else's are served.
SQL = (
    "SELECT seq, role, speaker, content, status, created_at FROM chats_message "
    "WHERE session_id = (SELECT id FROM chats_chatsession WHERE code = %s "
    "AND user_id = (SELECT id FROM auth_user WHERE username = 'bench')) "
    "ORDER BY seq DESC LIMIT 50"
)


def _rows(code: str) -> bytes:
    from django.db import connection

    value = uuid.UUID(code)
    param = value.hex if connection.vendor == "sqlite" else value  # how each stores a UUIDField
    with connection.cursor() as cursor:
        cursor.execute(SQL, [param])
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
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            return await self.app(scope, receive, send)
        try:
            body, status = (
                await sync_to_async(_rows, thread_sensitive=False)(scope["path"][len(PREFIX) :].strip("/")),
                200,
            )
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
