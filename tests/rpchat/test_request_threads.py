"""rpchat.handlers: each request's sync code on a borrowed long-lived thread that keeps its database
connection, one request at a time per thread, and a fresh thread (closed afterwards) when all are busy.

Driven through the real ASGI handler and the whole middleware stack, as uvicorn calls it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import request_finished
from django.db import connection

from core import after_response, databases
from core.databases import mapped_reads
from rpchat.handlers import PooledThreadsASGIHandler
from tests.rpchat import request_threads_urls as views

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls("tests.rpchat.request_threads_urls")]


async def _request(
    app, path: str, *, method: str = "GET", on_send=None, body: bytes = b"", raw_query: bytes | None = None
) -> tuple[int, dict, bytes]:
    """Status, headers and body of one request, driven through the ASGI handler as uvicorn does."""
    path, _, query = path.partition("?")
    query = query.encode() if raw_query is None else raw_query
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
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
            return {"type": "http.request", "body": body, "more_body": False}
        await never.wait()  # no disconnect: the handler stops listening when the response is sent

    async def send(message):
        sent.append(message)
        if on_send is not None:
            on_send(message)

    await app(scope, receive, send)
    headers = {name.decode().lower(): value.decode() for name, value in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


async def _get(app, path: str, *, on_send=None) -> dict:
    status, _, body = await _request(app, path, on_send=on_send)
    assert status == 200, body
    return json.loads(body)


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
def test_a_kept_connection_holds_no_map_of_the_database_file_between_requests():
    """Kept open between requests, a connection that read through a map would keep the pages it
    read mapped, counted in the process's resident memory once per request thread."""
    app = PooledThreadsASGIHandler(threads=1)
    path = str(connection.settings_dict["NAME"])
    connection.ensure_connection()  # pages out of the write-ahead log, where a map would see them
    connection.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = _file_maps(path)

    async def probe():
        return await _get(app, "/probe/?label=mapped")

    _run(probe)
    assert views.seen["mapped"] is not None  # still open, for the next request
    assert _file_maps(path) == before
    with views.seen["mapped"] as kept:
        assert kept.execute("PRAGMA mmap_size").fetchone()[0] == 0


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's memory map of its file")
def test_mapped_reads_maps_the_file_inside_the_block_only(settings):
    """Message search reads through a map (much of the file, faster than copying each page);
    the map is given back when the block ends, an error included."""
    settings.SQLITE_MMAP_BYTES = 64 * 1024 * 1024
    path = str(connection.settings_dict["NAME"])

    def read():
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM django_migrations")
            cursor.fetchone()

    # SQLite maps only what is in the main file, not what is still in its write-ahead log.
    connection.ensure_connection()
    connection.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    read()
    outside = _file_maps(path)
    with pytest.raises(RuntimeError), mapped_reads():
        read()
        assert _file_maps(path) > outside
        assert connection.connection.execute("PRAGMA mmap_size").fetchone()[0] == 64 * 1024 * 1024
        raise RuntimeError("the block failed")
    assert _file_maps(path) == outside
    assert connection.connection.execute("PRAGMA mmap_size").fetchone()[0] == 0
    assert not databases._MAPPED.locked()  # free for the next search

    settings.SQLITE_MMAP_BYTES = 0  # turned off: no map at all
    with mapped_reads():
        read()
        assert _file_maps(path) == outside


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's memory map of its file")
def test_a_map_still_in_use_at_the_end_of_the_block_goes_with_its_connection(settings):
    """SQLite keeps the map while a statement of the connection is still reading; a connection kept
    open between requests would then hold it for good. It is closed instead."""
    settings.SQLITE_MMAP_BYTES = 64 * 1024 * 1024
    path = str(connection.settings_dict["NAME"])
    connection.ensure_connection()
    connection.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with mapped_reads():
        reading = connection.connection.execute("SELECT name FROM django_migrations")
        reading.fetchone()  # left half read
    assert connection.connection is None
    del reading  # SQLite closes the file, and its map, once its last statement is gone
    assert _file_maps(path) == 0
    with connection.cursor() as cursor:  # the next query opens a new connection, with no map
        cursor.execute("PRAGMA mmap_size")
        assert cursor.fetchone()[0] == 0


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's memory map of its file")
def test_only_one_block_at_a_time_reads_through_a_map(settings):
    """Each connection maps the file on its own: eight searches at once would count the same pages
    eight times in the resident memory. A second block meanwhile reads without a map."""
    settings.SQLITE_MMAP_BYTES = 64 * 1024 * 1024
    inside, done = threading.Event(), threading.Event()

    def first():
        try:
            with mapped_reads():
                inside.set()
                done.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=first)
    holder.start()
    try:
        assert inside.wait(timeout=30)
        with mapped_reads():
            connection.ensure_connection()
            assert connection.connection.execute("PRAGMA mmap_size").fetchone()[0] == 0
    finally:
        done.set()
        holder.join()
    with mapped_reads():  # free again
        assert connection.connection.execute("PRAGMA mmap_size").fetchone()[0] == 64 * 1024 * 1024


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


class _CountingExecutor(ThreadPoolExecutor):
    """The request thread, counting the trips the event loop makes to it."""

    trips = 0

    def submit(self, *args, **kwargs):
        self.trips += 1
        return super().submit(*args, **kwargs)


def _trips_for(path: str, *, method: str = "GET") -> tuple[int, int, dict, bytes]:
    app = PooledThreadsASGIHandler(threads=1)
    executor = _CountingExecutor(max_workers=1)
    app.threads.idle.append(executor)
    app.threads.made = 1
    status, headers, body = _run(lambda: _request(app, path, method=method))
    executor.shutdown()
    return executor.trips, status, headers, body


def test_a_sync_view_runs_with_all_its_middleware_in_one_trip_to_the_request_thread():
    """Django's async stack would cross to the thread and back for the request_started signal, the
    middleware, the URL's view middleware (CSRF), the view and the response's close: eight trips or
    more. Here one: the signal, the whole stack with the view, and the close of the whole response."""
    trips, status, headers, _ = _trips_for("/probe/?label=trips")
    assert status == 200
    assert trips == 1
    # Every middleware still ran, the first (its timing) to the last (the page's headers).
    assert "app;dur=" in headers["server-timing"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"


def test_the_sync_stack_still_runs_view_middleware_and_turns_errors_into_pages():
    trips, status, _, body = _trips_for("/probe/", method="POST")  # no CSRF token
    assert status == 403 and b"CSRF" in body
    assert trips == 1
    _, status, _, _ = _trips_for("/defer/?fail=1")  # the view raises
    assert status == 500


@pytest.fixture
def finished_events():
    views.events.clear()
    request_finished.connect(views.finished)
    yield views.events
    request_finished.disconnect(views.finished)


def test_a_whole_response_is_closed_once_before_it_is_sent_and_a_stream_after_its_last_part(finished_events):
    """request_finished (which closes a database connection past its age) fires once a request:
    for a page already whole, on its thread before it goes out; for a stream, once it is all sent."""

    def on_send(message):
        finished_events.append(message["type"])

    status, _, body = _run(lambda: _request(PooledThreadsASGIHandler(threads=1), "/probe/", on_send=on_send))
    assert status == 200
    assert finished_events == ["request finished", "http.response.start", "http.response.body"]

    finished_events.clear()
    status, _, body = _run(lambda: _request(PooledThreadsASGIHandler(threads=1), "/stream/", on_send=on_send))
    assert body == b"part 0;part 1;part 2;"
    assert finished_events[-1] == "request finished"
    assert finished_events.count("request finished") == 1
    assert finished_events.index("part 2") < finished_events.index("request finished")


def test_a_posted_body_reaches_sync_and_async_views_alike():
    """The handler chooses its course by the path, before the body is read: the sync stack reads it
    itself, and an async view's (Django's own handler) is left for Django to read."""
    app = PooledThreadsASGIHandler(threads=1)

    async def both():
        loop_thread = threading.get_ident()
        sync = await _request(app, "/echo/", method="PUT", body=b"to the sync view")
        asynchronous = await _request(app, "/async-echo/", method="PUT", body=b"to the async view")
        return loop_thread, sync, asynchronous

    loop_thread, sync, asynchronous = _run(both)
    assert sync[0] == 200 and json.loads(sync[2]) == {"body": "to the sync view", "method": "PUT"}
    assert asynchronous[0] == 200
    answer = json.loads(asynchronous[2])
    assert answer == {"body": "to the async view", "thread": loop_thread}


def test_a_request_django_refuses_as_it_reads_it_is_answered_400_on_either_path():
    """A query string that is not UTF-8 fails as Django builds the request: 400, for a sync view as
    for an async one, and the thread is free for the next request."""
    app = PooledThreadsASGIHandler(threads=1)

    async def both():
        sync = await _request(app, "/probe/", raw_query=b"label=\xff")
        asynchronous = await _request(app, "/async-probe/", raw_query=b"label=\xff")
        after = await _request(app, "/probe/?label=after")
        return sync, asynchronous, after

    sync, asynchronous, after = _run(both)
    assert sync[0] == 400 and asynchronous[0] == 400
    assert after[0] == 200


def test_async_views_and_paths_of_no_view_keep_django_async_stack():
    """An async view runs on the event loop (a reply stream holds no thread); a path that resolves
    to no view (a static file, a 404) goes where ServeStatic, async only, can answer it."""
    app = PooledThreadsASGIHandler(threads=1)

    async def both():
        loop_thread = threading.get_ident()
        answer = await _get(app, "/async-probe/")
        missing = await _request(app, "/no-such-page/")
        static = await _request(app, "/static/js/chat.js")
        return loop_thread, answer, missing, static

    loop_thread, answer, missing, static = _run(both)
    assert answer["thread"] == loop_thread
    assert missing[0] == 404
    assert static[0] == 200 and static[1]["content-type"].startswith("text/javascript")


def test_a_stream_releasing_its_connection_leaves_sqlites_open_for_the_threads_next_request():
    """A reply stream gives its connection back between queries (core.databases.release_connection):
    to the pool on PostgreSQL; on SQLite the file stays open, or the thread's next request would
    open it again and read the schema (about 2 ms)."""
    app = PooledThreadsASGIHandler(threads=1)

    async def stream_then_probe():
        streamed = await _get(app, "/between-queries/?label=stream")
        after = await _get(app, "/probe/?label=after-stream")
        return streamed, after

    streamed, after = _run(stream_then_probe)
    assert streamed["thread"] == after["thread"]
    if connection.vendor == "sqlite":
        assert views.seen["released"] is views.seen["stream"] is views.seen["after-stream"]
    else:
        assert views.seen["released"] is None  # given back


def test_an_async_only_middleware_the_sync_stack_would_leave_out_is_refused_at_startup(settings):
    """Only ServeStatic may be missing from the pages' (sync) stack; anything else async-only would
    silently not run on any page."""
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.rpchat.request_threads_urls.AsyncOnlyMiddleware"]
    with pytest.raises(ImproperlyConfigured, match="AsyncOnlyMiddleware can only run async"):
        PooledThreadsASGIHandler(threads=1)
