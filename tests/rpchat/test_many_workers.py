"""Two uvicorn processes on one PostgreSQL database and one Redis, as behind a load balancer.

Each worker has its own port, so a test can make a change through one and look through the other.
The engine for both is the loopback scripted server in this process (slow on purpose where a test
needs a reply to still be streaming). Runs when the suite runs on PostgreSQL with Redis.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import redis
from cachalot.api import cachalot_disabled
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.db import connection

from characters.models import Character, Tag
from chats.models import Message
from core.databases import attached_database
from settings_app.models import ConnectionProfile, SiteSettings
from tests.conftest import ScriptedServer
from tests.postgres import create_database, drop_database
from tests.postgres import database_url as url_of_database
from tools.servers import manage_py, server_env, uvicorn_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        connection.vendor != "postgresql" or not settings.REDIS_URL,
        reason="several workers need PostgreSQL and Redis (set DATABASE_URL=postgres://... and REDIS_URL)",
    ),
    # The workers have a database of their own; this makes pytest-django set up the test database,
    # whose name theirs is derived from.
    pytest.mark.django_db,
]

PASSWORD = "pw-workers-123"


@dataclass
class Workers:
    a: str
    b: str
    database_url: str
    engine: ScriptedServer
    character_code: str


def _seed(database_url: str, engine_url: str) -> str:
    """Accounts, a character and the scripted engine as the active profile; the character's code."""
    # One hash the workers know (the test settings hash with MD5, which they do not accept).
    encoded = make_password(PASSWORD, hasher=PBKDF2PasswordHasher())
    User = get_user_model()
    with attached_database("workers", database_url) as db, cachalot_disabled():
        User.objects.using(db).create(username="root", password=encoded, is_staff=True, is_superuser=True)
        olivia = User.objects.using(db).create(username="olivia", password=encoded)
        User.objects.using(db).create(username="dora", password=encoded)  # deactivated by a test
        wren = Character.objects.using(db).create(
            owner=olivia, name="Wren", first_message="Hello.", description="A test character."
        )
        wren.tags.add(Tag.objects.using(db).create(name="fantasy"))
        profile = ConnectionProfile(name="Scripted", base_url=engine_url, max_tokens=64)
        profile.save(using=db)
        SiteSettings(pk=1, instance_name="rpchat", active_profile=profile).save(using=db)
        return str(wren.code)


@pytest.fixture(scope="module")
def workers(django_db_setup, django_db_blocker, tmp_path_factory):
    name = f"{connection.settings_dict['NAME']}_workers"
    database_url = url_of_database(name)
    var = tmp_path_factory.mktemp("workers-var")
    engine = ScriptedServer()
    prefix = f"{settings.CACHE_KEY_PREFIX}-workers-{os.getpid()}"
    env = server_env(
        DATABASE_URL=database_url,
        REDIS_URL=settings.REDIS_URL,
        CACHE_KEY_PREFIX=prefix,
        RPCHAT_VAR_DIR=str(var),
        RPCHAT_STREAM_PERSIST_INTERVAL="0.1",
        # A small pool, so that a page holding a connection for as long as it streams shows.
        DB_POOL_MIN="1",
        DB_POOL_MAX="4",
        DB_POOL_TIMEOUT="5",
    )
    with django_db_blocker.unblock(), ExitStack() as stack:
        create_database(name)
        stack.callback(drop_database, name)
        stack.callback(_delete_keys, prefix)
        stack.callback(engine.close)
        manage_py(env, "migrate", "--no-input", "-v0")
        manage_py(env, "collectstatic", "--no-input", "-v0")
        code = _seed(database_url, engine.url)
        a = stack.enter_context(uvicorn_process(env=env, log_path=Path(var) / "a.log")).base_url
        b = stack.enter_context(uvicorn_process(env=env, log_path=Path(var) / "b.log")).base_url
        yield Workers(a, b, database_url, engine, code)


def _delete_keys(prefix: str) -> None:
    """The workers' keys in the shared Redis (their settings row is cached without expiry)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def engine(workers):
    """The scripted engine, reset to a short quick reply for each test."""
    server = workers.engine
    server.pieces = ["Once", " upon", " a", " time"]
    server.delay = 0.05
    server.mode = "ok"
    server.requests.clear()
    server.disconnected.clear()
    return server


# --- a browser, as far as these tests need one --------------------------------------------------


class _Forms(HTMLParser):
    """The fields of every POST form on a page, as a browser would submit them."""

    def __init__(self):
        super().__init__()
        self.forms: list[list[tuple[str, str]]] = []
        self._fields: list[tuple[str, str]] | None = None
        self._textarea = False
        self._select: str | None = None
        self._multiple = False
        self._options: list[tuple[str, bool]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and (a.get("method") or "").lower() == "post":
            self._fields = []
            self.forms.append(self._fields)
        if self._fields is None:
            return
        name = a.get("name")
        if tag == "input" and name:
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "button", "file", "image", "reset"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self._fields.append((name, a.get("value") or ("on" if kind == "checkbox" else "")))
        elif tag == "textarea" and name:
            self._textarea = True
            self._fields.append((name, ""))
        elif tag == "select" and name:
            self._select, self._multiple, self._options = name, "multiple" in a, []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a))

    def handle_data(self, data):
        if self._textarea:
            name, text = self._fields[-1]
            self._fields[-1] = (name, text + data)

    def handle_endtag(self, tag):
        if tag == "textarea" and self._textarea:
            name, text = self._fields[-1]
            # Browsers drop the newline that starts a textarea's content.
            self._fields[-1] = (name, text.removeprefix("\n"))
            self._textarea = False
        elif tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._options if selected]
            if not chosen and self._options and not self._multiple:
                chosen = [self._options[0][0]]
            self._fields += [(self._select, v) for v in chosen]
            self._select = None
        elif tag == "form":
            self._fields = None


class Browser:
    """One person's browser. Cookies are per host, not per port, so a session works on both workers."""

    def __init__(self):
        self.http = httpx.Client(timeout=httpx.Timeout(20))

    def login(self, base: str, username: str) -> None:
        self.http.get(f"{base}/accounts/login/")
        response = self.http.post(
            f"{base}/accounts/login/",
            data={
                "username": username,
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
            },
        )
        assert response.status_code == 302, response.text[:500]

    def post(self, url: str, data: dict | None = None) -> httpx.Response:
        return self.http.post(url, data=data or {}, headers={"X-CSRFToken": self.http.cookies["csrftoken"]})

    def submit_admin_form(self, url: str, changes: dict) -> httpx.Response:
        parser = _Forms()
        parser.feed(self.http.get(url).text)
        form = max(parser.forms, key=len)  # the change form, not the header's log-out form
        data: dict[str, list[str]] = {}
        for key, value in [(k, v) for k, v in form if k not in changes] + list(changes.items()):
            data.setdefault(key, []).append(value)
        data["_save"] = ["Save"]
        return self.http.post(url, data=data)

    def new_chat(self, base: str, character_code: str) -> str:
        response = self.post(f"{base}/chats/new/{character_code}/")
        assert response.status_code == 302
        return response.headers["location"].rstrip("/").rsplit("/", 1)[-1]

    def stream(self, url: str) -> list[tuple[str, dict]]:
        events, event = [], ""
        with self.http.stream("GET", url) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append((event, json.loads(line[6:])))
                    if event == "done":
                        break
        return events

    def close(self) -> None:
        self.http.close()


def _streamed_text(events: list[tuple[str, dict]]) -> str:
    text = ""
    for kind, data in events:
        if kind == "snapshot":
            text = data["text"]
        elif kind == "delta":
            text += data["text"]
    return text


@pytest.fixture
def olivia(workers):
    browser = Browser()
    browser.login(workers.a, "olivia")
    yield browser
    browser.close()


@pytest.fixture
def root(workers):
    browser = Browser()
    browser.login(workers.a, "root")
    yield browser
    browser.close()


def _reply_row(workers: Workers, chat: str, seq: int) -> dict:
    with attached_database("workers", workers.database_url) as db:
        return (
            Message.objects.using(db)
            .filter(session__code=chat, seq=seq)
            .values("content", "status", "finish_reason")
            .get()
        )


def _wait(condition, *, timeout: float = 20, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- the tests ----------------------------------------------------------------------------------


def _form_errors(page: str) -> str:
    return "\n".join(re.findall(r'<ul class="errorlist[^"]*"[^>]*>.*?</ul>', page, re.DOTALL)) or page[:2000]


def _brand(page: str) -> str:
    """The instance name in the page header."""
    return re.search(r'<a class="brand"[^>]*>([^<]*)</a>', page).group(1)


def test_a_settings_change_made_through_one_worker_shows_at_once_on_the_other(workers, root):
    assert _brand(root.http.get(f"{workers.b}/characters/").text) == "rpchat"  # B has it cached now

    response = root.submit_admin_form(
        f"{workers.a}/admin/settings_app/sitesettings/1/change/", {"instance_name": "Night Shift"}
    )
    assert response.status_code == 302, _form_errors(response.text)

    assert _brand(root.http.get(f"{workers.b}/characters/").text) == "Night Shift"


def test_a_user_deactivated_through_one_worker_is_logged_out_on_the_other_at_once(workers, root):
    dora = Browser()
    dora.login(workers.a, "dora")
    assert dora.http.get(f"{workers.b}/accounts/settings/").status_code == 200  # B has her cached now
    with attached_database("workers", workers.database_url) as db:
        pk = get_user_model().objects.using(db).get(username="dora").pk

    response = root.submit_admin_form(f"{workers.a}/admin/auth/user/{pk}/change/", {"is_active": ""})
    assert response.status_code == 302, _form_errors(response.text)

    response = dora.http.get(f"{workers.b}/accounts/settings/")
    assert response.status_code == 302 and "/accounts/login/" in response.headers["location"]
    dora.close()


def test_a_character_renamed_through_one_worker_is_renamed_on_the_other_at_once(workers, root, olivia):
    assert "Wren" in olivia.http.get(f"{workers.b}/characters/").text
    with attached_database("workers", workers.database_url) as db:
        pk = Character.objects.using(db).get(code=workers.character_code).pk

    response = root.submit_admin_form(
        f"{workers.a}/admin/characters/character/{pk}/change/", {"name": "Wren the Renamed"}
    )
    assert response.status_code == 302, _form_errors(response.text)

    assert "Wren the Renamed" in olivia.http.get(f"{workers.b}/characters/").text


def test_the_query_cache_of_one_worker_is_dropped_when_another_changes_the_table(workers, root, olivia):
    """The gallery's tag list comes from cachalot; a tag renamed through A must not stay cached in B."""
    assert '<option value="fantasy"' in olivia.http.get(f"{workers.b}/characters/").text  # cached now
    assert '<option value="fantasy"' in olivia.http.get(f"{workers.b}/characters/").text
    with attached_database("workers", workers.database_url) as db:
        pk = Tag.objects.using(db).get(name="fantasy").pk

    response = root.submit_admin_form(
        f"{workers.a}/admin/characters/tag/{pk}/change/", {"name": "high fantasy"}
    )
    assert response.status_code == 302, _form_errors(response.text)

    gallery = olivia.http.get(f"{workers.b}/characters/").text
    assert '<option value="high fantasy"' in gallery
    assert '<option value="fantasy"' not in gallery


def test_a_reply_started_on_one_worker_can_be_followed_whole_from_the_other(workers, engine, olivia):
    engine.pieces = [f" piece{n}" for n in range(12)]
    engine.delay = 0.1
    chat = olivia.new_chat(workers.a, workers.character_code)

    sent = olivia.post(
        f"{workers.a}/chats/{chat}/send/", {"content": "Tell me a story", "client_token": "t1"}
    )
    assert sent.status_code == 200
    events = olivia.stream(workers.b + sent.json()["stream_url"])

    assert _streamed_text(events) == "".join(engine.pieces)
    assert events[-1][0] == "done" and events[-1][1]["status"] == "complete"
    assert len(engine.requests) == 1  # generated once, on A


def test_stop_sent_to_one_worker_stops_a_reply_being_written_on_the_other(workers, engine, olivia):
    engine.pieces = [f" word{n}" for n in range(200)]
    engine.delay = 0.05  # ten seconds in all
    chat = olivia.new_chat(workers.a, workers.character_code)
    sent = olivia.post(f"{workers.a}/chats/{chat}/send/", {"content": "Go on and on"}).json()
    seq = sent["reply_seq"]
    _wait(lambda: _reply_row(workers, chat, seq)["content"], what="the first words to be saved")

    stop = olivia.post(f"{workers.b}/chats/{chat}/messages/{seq}/stop/")
    assert stop.json() == {"stopping": True}
    events = olivia.stream(workers.a + sent["stream_url"])

    assert events[-1][1]["status"] == "complete"
    row = _reply_row(workers, chat, seq)
    assert row["finish_reason"] == "stopped"
    full = "".join(engine.pieces)
    assert row["content"] and full.startswith(row["content"]) and len(row["content"]) < len(full)
    _wait(engine.disconnected.is_set, what="the engine's connection to be closed")


def test_stop_sent_to_the_other_worker_works_while_the_engine_is_still_silent(workers, engine, olivia):
    engine.mode = "silent"  # a model still reading a long prompt: nothing for 30 seconds
    engine.delay = 30
    chat = olivia.new_chat(workers.a, workers.character_code)
    sent = olivia.post(f"{workers.a}/chats/{chat}/send/", {"content": "A very long prompt"}).json()
    _wait(lambda: engine.requests, what="the engine to be asked")

    olivia.post(f"{workers.b}/chats/{chat}/messages/{sent['reply_seq']}/stop/")
    events = olivia.stream(workers.a + sent["stream_url"])  # times out after 20 s if it is not stopped

    assert events[-1][1]["status"] == "complete"
    assert _reply_row(workers, chat, sent["reply_seq"])["finish_reason"] == "stopped"


def _race(sends: list) -> list[httpx.Response]:
    """Run the sends at the same moment, each in its own thread; their responses in order."""
    barrier = threading.Barrier(len(sends))
    responses: list = [None] * len(sends)

    def run(i: int) -> None:
        barrier.wait()
        responses[i] = sends[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sends))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return responses


def test_two_sends_racing_through_both_workers_start_exactly_one_reply(workers, engine, olivia):
    engine.pieces = [f" w{n}" for n in range(20)]
    engine.delay = 0.1  # two seconds: the losing send arrives while the winner's reply is written
    chat = olivia.new_chat(workers.a, workers.character_code)
    phone = Browser()  # the same person on a second device
    phone.login(workers.b, "olivia")
    try:
        for n in range(3):
            responses = _race(
                [
                    lambda n=n: olivia.post(f"{workers.a}/chats/{chat}/send/", {"content": f"{n} via A"}),
                    lambda n=n: phone.post(f"{workers.b}/chats/{chat}/send/", {"content": f"{n} via B"}),
                ]
            )
            assert sorted(r.status_code for r in responses) == [200, 409]
            winner = next(r for r in responses if r.status_code == 200).json()
            olivia.stream(workers.a + winner["stream_url"])
        assert len(engine.requests) == 3
        with attached_database("workers", workers.database_url) as db:
            assert Message.objects.using(db).filter(session__code=chat, role="user").count() == 3
    finally:
        phone.close()


def test_pages_following_replies_do_not_hold_database_connections(workers, engine, olivia):
    """Six long replies on A, each followed by a page on A (live) and one on B (reading the row),
    with pools of four connections; both workers still answer (a stream that kept its connection
    would starve everyone after the fourth)."""
    engine.pieces = [f" word{n}" for n in range(60)]
    engine.delay = 0.1  # six seconds each
    streams = []
    for n in range(6):
        chat = olivia.new_chat(workers.a, workers.character_code)
        sent = olivia.post(f"{workers.a}/chats/{chat}/send/", {"content": f"Story {n}"})
        assert sent.status_code == 200
        streams += [workers.a + sent.json()["stream_url"], workers.b + sent.json()["stream_url"]]
    first_events = threading.Barrier(len(streams) + 1, timeout=30)
    finished: list = [None] * len(streams)

    def follow(i: int) -> None:
        events, event = [], ""
        with olivia.http.stream("GET", streams[i]) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    events.append(event)
                    if len(events) == 1:
                        first_events.wait()
                    if event == "done":
                        break
        finished[i] = (response.status_code, events[-1] if events else None)

    threads = [threading.Thread(target=follow, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    first_events.wait()  # every page is following its reply now

    assert olivia.http.get(f"{workers.a}/characters/").status_code == 200
    assert olivia.http.get(f"{workers.b}/characters/").status_code == 200
    for t in threads:
        t.join(60)
    assert finished == [(200, "done")] * len(streams)
