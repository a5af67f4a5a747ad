"""Shared fixtures: named users, the tiny llama.cpp engine, and a loopback server that misbehaves."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tools.tiny_model import write_tiny_gguf


def pytest_collection_modifyitems(config, items):
    # The browser tests share one server per worker: with pytest-xdist (--dist loadgroup) they all
    # go to one worker, which starts it once, while the other workers run everything else.
    for item in items:
        if item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.xdist_group("browser"))


def _clear_cache() -> None:
    """Empty this environment's cache keys only (a shared Redis may hold other environments')."""
    from core.cache_backends import clear_environment

    clear_environment()


@pytest.fixture(autouse=True)
def _no_leftover_event_loop(request):
    """Playwright's sync API leaves its event loop marked as running in the main thread for the rest
    of the session, on the worker that ran the browser tests. A later test on that worker that runs
    async code (asyncio.run, async_to_sync) would fail with "cannot be called from a running event
    loop": outside the browser tests, the loop is set aside for the test and put back after."""
    loop = asyncio._get_running_loop()
    if loop is None or request.node.get_closest_marker("e2e"):
        yield
        return
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(loop)


@pytest.fixture(autouse=True)
def _media_in_tmp(settings, tmp_path):
    """Uploaded avatars go to a folder of the test's own, never the instance's var/media."""
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True, scope="session")
def _no_flushdb():
    """Django's clear() on Redis is FLUSHDB: it empties the caches of the tests that the other
    xdist workers are running at that moment, which then fail now and then. Refused here, so the
    mistake fails every time instead; clear_environment() drops this worker's keys only."""
    from django.core.cache.backends.redis import RedisCache

    def refuse(self):
        raise AssertionError("RedisCache.clear() flushes every worker's cache: use clear_environment()")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RedisCache, "clear", refuse)
        yield


@pytest.fixture(autouse=True)
def _fresh_cache():
    _clear_cache()
    yield
    _clear_cache()


class FakeClock:
    """A clock that moves only when told: `now` in seconds since the epoch."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def ratelimit_clock(monkeypatch):
    """Rate limits read this clock, starting half a second before a minute boundary (where a limit
    counted per clock minute would start over)."""
    from core import ratelimit

    clock = FakeClock(60 * 28_333_334 - 0.5)
    monkeypatch.setattr(ratelimit, "time", clock)
    return clock


# --- users -------------------------------------------------------------------------------------


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("olivia", password="pw-olivia-123")


@pytest.fixture
def other(django_user_model):
    return django_user_model.objects.create_user("mallory", password="pw-mallory-123")


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", password="pw-root-123")


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


# --- the tiny engine ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> str:
    return write_tiny_gguf(tmp_path_factory.mktemp("engine") / "tiny.gguf")


def start_llama_server(model_path: str, *, n_ctx: int = 2048, api_keys: list[str] | None = None):
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = model_path
    params.n_ctx = n_ctx
    params.port = 0
    params.n_parallel = 1
    params.cpuparams.n_threads = 1
    params.verbosity = 1
    if api_keys:
        params.api_keys = api_keys
    return xllamacpp.Server(params)


@pytest.fixture(scope="session")
def tiny_engine_url(tiny_model_path):
    """llama.cpp's real server with the tiny model, as an OpenAI-compatible base URL (…/v1)."""
    server = start_llama_server(tiny_model_path)
    yield server.listening_address.rstrip("/") + "/v1"
    del server


@pytest.fixture
def tiny_builtin(db, tiny_model_path):
    """Point the built-in engine at the tiny model, so tests run the built-in code path."""
    from settings_app.engines import BuiltinServer
    from settings_app.models import SiteSettings

    site = SiteSettings.load()
    site.builtin_model_path = tiny_model_path
    site.builtin_max_tokens = 64
    site.save()
    yield site
    BuiltinServer.stop()


@pytest.fixture
def make_profile(db):
    """Create a connection profile and make it the instance's active engine."""
    from settings_app.models import ConnectionProfile, SiteSettings

    def make(base_url: str, **fields) -> ConnectionProfile:
        fields.setdefault("name", f"profile {ConnectionProfile.objects.count() + 1}")
        fields.setdefault("max_tokens", 64)
        profile = ConnectionProfile.objects.create(base_url=base_url, **fields)
        site = SiteSettings.load()
        site.active_profile = profile
        site.save()
        return profile

    return make


# --- a loopback OpenAI-compatible server that misbehaves on purpose ----------------------------


class ScriptedServer:
    """Streams `pieces` one every `delay` seconds (after `pause` seconds of silence, a model reading
    its prompt); `mode` makes it fail in a chosen way."""

    def __init__(self):
        self.pieces = ["Once", " upon", " a", " time"]
        self.delay = 0.05
        self.pause = 0.0
        self.mode = "ok"
        # A reasoning model's thinking, streamed as `reasoning_content` deltas before the pieces,
        # and the usage sent after the finish (as OpenAI does with stream_options.include_usage).
        self.reasoning: list[str] = []
        self.usage: dict | None = None
        self.requests: list[dict] = []
        self.disconnected = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps({"data": [{"id": "scripted"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                if not self.path.endswith("/completions"):  # no /tokenize, as most hosted APIs
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                outer.requests.append(json.loads(body or b"{}"))
                outer.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        if self.mode == "echo401":  # refuses the key and repeats what it was sent, as some servers do
            body = json.dumps(
                {"error": {"message": f"Invalid credentials: {h.headers.get('Authorization')}"}}
            )
            h.send_response(401)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body.encode())
            return
        if self.mode.startswith("http"):
            status = int(self.mode[4:])
            body = json.dumps({"error": {"message": "scripted failure", "type": "server_error"}})
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body.encode())
            return
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        try:
            if self.mode == "silent":
                time.sleep(self.delay)
                return
            if self.mode == "malformed":
                h.wfile.write(b"data: {not json\n\n")
                h.wfile.flush()
                return
            if self.mode == "endless":  # ignores max_tokens: the pieces over and over until hung up on
                n = 0
                while True:
                    piece = self.pieces[n % len(self.pieces)]
                    chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    h.wfile.flush()
                    n += 1
                    time.sleep(self.delay)
            time.sleep(self.pause)
            for piece in self.reasoning:
                chunk = {
                    "choices": [{"index": 0, "delta": {"reasoning_content": piece}, "finish_reason": None}]
                }
                h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                h.wfile.flush()
                time.sleep(self.delay)
            for i, piece in enumerate(self.pieces):
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                h.wfile.flush()
                if self.mode == "drop" and i == 1:
                    return  # the connection closes mid-reply
                time.sleep(self.delay)
            end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            h.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
            if self.usage is not None:
                h.wfile.write(f"data: {json.dumps({'choices': [], 'usage': self.usage})}\n\n".encode())
            h.wfile.write(b"data: [DONE]\n\n")
            h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.disconnected.set()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted_server():
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture
def instruct_presets(db):
    """The shipped instruct templates (transactional tests flush what the migration seeded)."""
    from settings_app.models import InstructTemplate
    from settings_app.presets import ensure_presets

    ensure_presets(InstructTemplate)
