"""Two background workers (`manage.py db_worker`, processes of their own) share one PostgreSQL queue:
every summary task runs once, both take part, and every stretch gets written. Runs when the suite
runs on PostgreSQL with Redis (the per-chat lock lives in the cache)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connection
from django_tasks_db.models import DBTaskResult

from chats import memory
from chats.models import Memory
from tests.factories import make_character, make_chat
from tests.postgres import database_url
from tools.servers import ROOT, server_env
from tools.tiny_model import TINY_REPLY

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "postgresql" or not settings.REDIS_URL,
        reason="several workers need PostgreSQL and Redis (set DATABASE_URL=postgres://... and REDIS_URL)",
    ),
    pytest.mark.django_db(transaction=True),
]

CHATS = 10


def test_two_workers_share_the_queue_and_run_each_task_once(owner, tiny_engine_url, make_profile):
    make_profile(tiny_engine_url, name="tiny", context_size=400, max_tokens=32)
    character = make_character(name="Wren", description="")
    chats = [
        make_chat(user=owner, character=character, messages=120, text="Line {seq} of the long road.")
        for _ in range(CHATS)
    ]
    for chat in chats:
        assert memory.schedule(chat.pk, window_start=101)  # stretches 1-20 .. 81-100 are due
    assert DBTaskResult.objects.filter(status="READY").count() == CHATS
    env = server_env(
        DATABASE_URL=database_url(connection.settings_dict["NAME"]),
        REDIS_URL=settings.REDIS_URL,
        CACHE_KEY_PREFIX=settings.CACHE_KEY_PREFIX,
    )
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "manage.py"),
                "db_worker",
                "--batch",
                "--no-startup-delay",
                "--queue-name",
                "*",
                "--no-reload",
                "--worker-id",
                name,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name in ("worker-a", "worker-b")
    ]
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outputs
    tasks = list(DBTaskResult.objects.values_list("status", "worker_ids"))
    assert len(tasks) == CHATS
    assert all(status == "SUCCESSFUL" and len(ids) == 1 for status, ids in tasks), tasks
    assert {ids[0] for _, ids in tasks} == {"worker-a", "worker-b"}
    for chat in chats:
        written = list(
            Memory.objects.filter(session=chat).order_by("start_seq").values_list("start_seq", "text")
        )
        assert written == [(start, TINY_REPLY) for start in (1, 21, 41, 61, 81)]
