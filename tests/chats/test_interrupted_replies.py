"""A reply whose worker dies (kill -9, a restart) is marked interrupted by the workers still running,
its text kept, without any page following it; a live reply of another worker is never taken.

Real uvicorn processes on a database of their own (a SQLite file, or a PostgreSQL database beside
the test database when the suite runs on PostgreSQL), with the loopback scripted engine.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cachalot.api import cachalot_disabled
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.db import connection

from characters.models import Character
from chats.models import Message
from core.databases import attached_database
from settings_app.models import ConnectionProfile, SiteSettings
from tests.conftest import ScriptedServer
from tests.postgres import create_database, database_url, drop_database
from tools.servers import manage_py, server_env, uvicorn_process

pytestmark = pytest.mark.django_db

PASSWORD = "pw-workers-123"
STALE_AFTER = 1.5  # RPCHAT_STREAM_STALE_AFTER of the workers: touched every 0.25 s


@dataclass
class Setup:
    env: dict
    database_url: str
    engine: ScriptedServer
    character_code: str
    var: Path


@dataclass
class Worker:
    url: str
    process: subprocess.Popen


@pytest.fixture(scope="module")
def setup(django_db_setup, django_db_blocker, tmp_path_factory):
    var = tmp_path_factory.mktemp("lifecycle-var")
    engine = ScriptedServer()
    with django_db_blocker.unblock(), ExitStack() as stack:
        stack.callback(engine.close)
        if connection.vendor == "postgresql":
            name = f"{connection.settings_dict['NAME']}_lifecycle"
            url = database_url(name)
            create_database(name)
            stack.callback(drop_database, name)
        else:
            url = f"sqlite:///{var / 'workers.sqlite3'}"
        env = server_env(
            DATABASE_URL=url,
            RPCHAT_VAR_DIR=str(var),
            RPCHAT_STREAM_STALE_AFTER=str(STALE_AFTER),
            RPCHAT_GENERATIONS_PER_MINUTE="0",
        )
        manage_py(env, "migrate", "--no-input", "-v0")
        manage_py(env, "collectstatic", "--no-input", "-v0")
        yield Setup(env, url, engine, _seed(url, engine.url), var)


def _seed(url: str, engine_url: str) -> str:
    """An account, a character and the scripted engine as the active profile; the character's code."""
    with attached_database("lifecycle", url) as db, cachalot_disabled():
        olivia = (
            get_user_model()
            .objects.using(db)
            .create(username="olivia", password=make_password(PASSWORD, hasher=PBKDF2PasswordHasher()))
        )
        wren = Character.objects.using(db).create(
            owner=olivia, name="Wren", first_message="Hello.", description="A test character."
        )
        profile = ConnectionProfile(name="Scripted", base_url=engine_url, max_tokens=64)
        profile.save(using=db)
        SiteSettings(pk=1, instance_name="rpchat", active_profile=profile).save(using=db)
        return str(wren.code)


@pytest.fixture
def engine(setup):
    server = setup.engine
    server.pieces, server.delay, server.pause, server.mode = ["Once", " upon", " a", " time"], 0.05, 0.0, "ok"
    server.requests.clear()
    return server


@contextmanager
def worker(setup: Setup, name: str) -> Iterator[Worker]:
    """A uvicorn process serving rpchat on a free loopback port, stopped (if still alive) at the end."""
    with uvicorn_process(env=setup.env, log_path=setup.var / f"{name}.log", startup_timeout=60) as server:
        yield Worker(server.base_url, server.process)


class Browser:
    def __init__(self, base: str):
        self.http = httpx.Client(timeout=httpx.Timeout(30))
        self.http.get(f"{base}/accounts/login/")
        response = self.post(f"{base}/accounts/login/", {"username": "olivia", "password": PASSWORD})
        assert response.status_code == 302, response.text[:500]

    def post(self, url: str, data: dict | None = None) -> httpx.Response:
        token = self.http.cookies["csrftoken"]
        return self.http.post(url, data={"csrfmiddlewaretoken": token, **(data or {})})

    def new_chat(self, base: str, character_code: str) -> str:
        response = self.post(f"{base}/chats/new/{character_code}/")
        assert response.status_code == 302
        return response.headers["location"].rstrip("/").rsplit("/", 1)[-1]

    def follow(self, url: str) -> dict:
        """Read a reply's stream to its end; the `done` event's data."""
        with self.http.stream("GET", url) as response:
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "done":
                    import json

                    return json.loads(line[6:])
        raise AssertionError("the stream ended without `done`")


def _row(setup: Setup, chat: str, seq: int) -> dict:
    with attached_database("lifecycle", setup.database_url) as db:
        return (
            Message.objects.using(db)
            .filter(session__code=chat, seq=seq)
            .values("content", "status", "error", "finish_reason")
            .get()
        )


def _wait(condition, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def test_a_reply_whose_worker_was_killed_becomes_retryable_with_its_text_kept(setup, engine):
    engine.pieces = [f" w{n}" for n in range(300)]
    engine.delay = 0.1  # thirty seconds: the worker is killed long before the end
    with worker(setup, "a-killed") as a:
        browser = Browser(a.url)
        chat = browser.new_chat(a.url, setup.character_code)
        sent = browser.post(f"{a.url}/chats/{chat}/send/", {"content": "Tell me a long story"}).json()
        seq = sent["reply_seq"]
        _wait(lambda: _row(setup, chat, seq)["content"].count(" w") >= 3, timeout=20, what="words saved")
        a.process.kill()  # kill -9: no clean-up of any kind
        a.process.wait(15)
    stranded = _row(setup, chat, seq)
    assert stranded["status"] == "streaming"

    # Another worker starts (the restart): nobody opens the chat, yet the reply is let go.
    with worker(setup, "b-restarted") as b:
        row = _wait(
            lambda: (r := _row(setup, chat, seq))["status"] != "streaming" and r,
            timeout=STALE_AFTER + 15,
            what="the stranded reply to be marked interrupted",
        )
        assert row["status"] == "incomplete"
        assert row["content"] == stranded["content"]  # what was written is kept
        assert "interrupted" in row["error"]

        browser.http.close()
        browser = Browser(b.url)
        page = browser.http.get(f"{b.url}/chats/{chat}/").text
        assert "This reply is incomplete." in page and 'data-action="retry"' in page
        engine.pieces, engine.delay = ["Once", " upon", " a", " time"], 0.01
        retried = browser.post(f"{b.url}/chats/{chat}/messages/{seq}/retry/")
        assert retried.status_code == 200, retried.text[:300]
        done = browser.follow(b.url + retried.json()["stream_url"])
        assert done["status"] == "complete"
        assert _row(setup, chat, seq)["content"] == "Once upon a time"
        browser.http.close()


def test_a_live_reply_is_never_taken_by_another_worker_while_its_model_is_silent(setup, engine):
    engine.pause = 4 * STALE_AFTER  # the model reads a long prompt, far longer than STALE_AFTER
    with worker(setup, "a-live") as a, worker(setup, "b-sweeping") as b:
        browser = Browser(a.url)
        chat = browser.new_chat(b.url, setup.character_code)
        sent = browser.post(f"{a.url}/chats/{chat}/send/", {"content": "Think hard first"}).json()

        # B sweeps every 0.25 s meanwhile; the page follows through B, reading the row.
        done = browser.follow(b.url + sent["stream_url"])

        assert done["status"] == "complete"
        row = _row(setup, chat, sent["reply_seq"])
        assert (row["status"], row["content"], row["finish_reason"]) == (
            "complete",
            "Once upon a time",
            "stop",
        )
        assert len(engine.requests) == 1
        browser.http.close()
