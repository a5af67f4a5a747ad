"""rpchat.handlers: each request's sync code on a borrowed long-lived thread that keeps its database
connection, one request at a time per thread, and a fresh thread (closed afterwards) when all are busy.

Driven through the real ASGI handler and the whole middleware stack, as uvicorn calls it.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from core import after_response
from rpchat.handlers import PooledThreadsASGIHandler
from tests.rpchat import request_threads_urls as views

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.rpchat.request_threads_urls")]


async def _get(app, path: str, *, on_send=None) -> dict:
    path, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    sent = []
    requested = False
    never = asyncio.Event()

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()  # no disconnect: the handler stops listening when the response is sent

    async def send(message):
        sent.append(message)
        if on_send is not None:
            on_send(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, sent
    return json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def _run(coroutine_function):
    # A loop of its own, in a thread: browser tests may leave one running in this thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine_function()).result()


def test_requests_one_after_another_share_a_thread_and_its_database_connection():
    app = PooledThreadsASGIHandler(threads=2)

    async def three():
        return [await _get(app, f"/probe/?label={n}") for n in range(3)]

    first, second, third = _run(three)
    assert first["thread"] == second["thread"] == third["thread"]
    if connection.vendor == "sqlite":
        # Kept open (CONN_MAX_AGE): no new file, PRAGMAs and schema read per request.
        assert first["connection"] == second["connection"] == third["connection"]
        assert views.seen["0"] is views.seen["2"]


async def _beside_a_held_request(app, label: str) -> tuple[dict, dict]:
    """A probe answered while another request is held inside its view; both answers."""
    views.release.clear()
    views.held.clear()
    holding = asyncio.create_task(_get(app, f"/hold/?label={label}"))
    while not views.held.is_set():
        await asyncio.sleep(0.01)
    beside = await _get(app, "/probe/?label=beside")  # answered while the first still runs
    views.release.set()
    return await holding, beside


def test_requests_in_flight_together_never_share_a_thread():
    app = PooledThreadsASGIHandler(threads=2)

    async def together():
        return await _beside_a_held_request(app, "held")

    held, beside = _run(together)
    assert held["thread"] != beside["thread"]
    assert held["connection"] != beside["connection"]


def test_when_every_thread_is_busy_a_fresh_one_serves_and_its_connection_is_closed_after():
    app = PooledThreadsASGIHandler(threads=1)

    async def overflow():
        pooled, extra = await _beside_a_held_request(app, "pooled")
        after = await _get(app, "/probe/?label=after")  # the pool's thread is free again
        return pooled, extra, after

    pooled, extra, after = _run(overflow)
    assert extra["thread"] != pooled["thread"]
    assert after["thread"] == pooled["thread"]
    # The extra thread's connection is closed once its request is over (not left to the garbage
    # collector); the pooled thread's stays open for the next request.
    extra_connection = views.seen["beside"]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            extra_connection.cursor()
        except Exception:  # sqlite3.ProgrammingError / psycopg's OperationalError: it is closed
            break
        time.sleep(0.02)
    else:
        if connection.vendor == "sqlite":
            pytest.fail("the extra thread's connection was left open")
    assert app.threads.made == 1


def test_a_websocket_or_lifespan_scope_is_refused_as_django_refuses_it():
    app = PooledThreadsASGIHandler(threads=1)

    async def websocket():
        await app({"type": "websocket", "path": "/"}, None, None)

    with pytest.raises(ValueError, match="Django can only handle ASGI/HTTP connections"):
        _run(websocket)


def _file_maps(path: str) -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for line in maps if line.rstrip().endswith(path))


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's memory map of its file")
def test_a_kept_connection_gives_back_its_map_of_the_database_file_after_each_request():
    """Kept open between requests, a connection would otherwise keep the pages it read mapped,
    counted in the process's resident memory (a search over a big chat: about 100 MB)."""
    app = PooledThreadsASGIHandler(threads=1)
    path = connection.settings_dict["NAME"]
    before = _file_maps(str(path))

    async def probe():
        return await _get(app, "/probe/?label=mapped")

    _run(probe)
    assert views.seen["mapped"] is not None  # still open, for the next request
    assert _file_maps(str(path)) == before
    with views.seen["mapped"] as kept:
        assert kept.execute("PRAGMA mmap_size").fetchone()[0] > 0  # mapped again on the next read


def test_work_a_request_defers_runs_once_its_response_is_sent():
    """A reply's generation starts after the answer to the send is out (core.after_response)."""
    app = PooledThreadsASGIHandler(threads=2)
    views.events.clear()

    def on_send(message):
        views.events.append(message["type"])

    assert _run(lambda: _get(app, "/defer/", on_send=on_send)) == {"deferred": True}
    assert views.events == [
        "view returned",
        "http.response.start",
        "http.response.body",
        "deferred work",
    ]


def test_deferred_work_still_runs_when_the_view_fails_or_the_connection_drops():
    app = PooledThreadsASGIHandler(threads=2)
    views.events.clear()

    async def failing_view():
        with pytest.raises(AssertionError):  # the 500
            await _get(app, "/defer/?fail=1")

    _run(failing_view)
    assert views.events == ["deferred work"]
    views.events.clear()

    def drop(message):
        if message["type"] == "http.response.body":
            raise OSError("the client went away")

    with pytest.raises(OSError):
        _run(lambda: _get(app, "/defer/", on_send=drop))
    assert views.events == ["view returned", "deferred work"]


def test_outside_an_asgi_request_nothing_is_deferred(client):
    """WSGI, the test client, commands: the caller does its work at once."""
    assert after_response.defer(lambda: None) is False
    views.events.clear()
    assert client.get("/defer/").json() == {"deferred": True}
    assert views.events == ["view returned"]


def test_work_deferred_after_the_request_ended_runs_at_once():
    """A view still running on its thread after Django stopped waiting for it (the client left)."""
    done = []
    deferred = after_response.Deferred()
    deferred.add(lambda: done.append("queued"))
    assert done == []
    deferred.run()
    deferred.add(lambda: done.append("late"))
    assert done == ["queued", "late"]
