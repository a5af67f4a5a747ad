"""Django's ASGI handler, with each request's sync code on one of a few long-lived threads.

Under ASGI, Django runs every request inside its own `ThreadSensitiveContext`, and asgiref gives
each such context a new one-thread executor: every request starts a thread, and, since database
connections belong to threads, opens a new database connection and closes it at the end. On
SQLite that connection costs about 2 ms before the first row (open the file, run the PRAGMAs,
read and parse the schema of some sixty tables), on every request; it is why Django's docs say
to leave persistent connections off under ASGI.

Here a request borrows one of `RPCHAT_REQUEST_THREADS` long-lived one-thread executors instead
(asgiref's `ThreadSensitiveContext(executor=...)`), so its sync code (middleware, view, signals)
runs on a thread that keeps its connection from one request to the next, exactly as a threaded
WSGI server's threads do with `CONN_MAX_AGE`. Django's `close_old_connections` still runs at the
start and end of every request on that thread, so a connection past its age, broken, or left
inside a transaction is closed as it always was. A thread serves one request at a time: the
isolation of per-request threads is kept. When every pooled thread is busy (long reply streams
hold theirs), the request gets a fresh thread as Django would give it, and that thread's
connections are closed when the request ends.

A sync view's request runs in one trip to that thread. Django's async stack, which uvicorn gets,
crosses between the event loop and the thread several times per request even with the sync
middleware grouped (`rpchat.middleware.sync_from_here`): into the thread for the request_started
signal, for the sessions-to-CSP middleware, back to the loop for the URL resolution and view
middleware, into the thread for CSRF's process_view, again for the view, and once more for the
response's close (the request_finished signal), about 0.1 ms a crossing. Here a request whose URL
resolves to a sync view makes one: on the borrowed thread, the request_started signal, a second,
all-sync copy of the middleware stack (`SyncStack`, Django's WSGI shape) with the view, and, for
a response already whole (not a stream or a file), its close, as a WSGI server's thread does; the
event loop then sends it. A streamed response is closed after it is sent, as Django does. An async
view (the reply streams, impersonation) or a path that resolves to no view (static files, which
ServeStatic serves only async, and 404s) still goes through Django's async stack, as before.

It also runs what a request deferred until its response was sent (core.after_response: the
generation of a reply it started).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import ImproperlyConfigured, RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import connections
from django.http import FileResponse
from django.urls import get_resolver, set_script_prefix, set_urlconf
from django.utils.module_loading import import_string

from core import after_response

DEFAULT_THREADS = 8


def _close_connections() -> None:
    connections.close_all()


class RequestThreads:
    """A few one-thread executors lent to one request at a time, made on first need."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: deque[ThreadPoolExecutor] = deque()
        self.made = 0

    def borrow(self) -> tuple[ThreadPoolExecutor, bool]:
        """An executor and whether it is the pool's (else a fresh one, for this request only)."""
        if self.idle:
            return self.idle.pop(), True
        if self.made < self.size:
            self.made += 1
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="rpchat-request"), True
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="rpchat-request-extra"), False

    def give_back(self, executor: ThreadPoolExecutor, pooled: bool) -> None:
        if pooled:
            # The most recently used first: its connection and caches are the warmest.
            self.idle.append(executor)
            return
        # Queued before the shutdown, so it runs on that thread before it ends; not waited for here
        # (this is the event loop).
        executor.submit(_close_connections)
        executor.shutdown(wait=False)


# The middleware that can only run async, left out of SyncStack: what each does never concerns a
# path that resolves to a view. Any other async-only middleware is refused at startup (a security
# middleware silently missing from every page would be worse than a slower stack).
ASYNC_ONLY_MIDDLEWARE = frozenset({"servestatic.middleware.ServeStaticMiddleware"})


class SyncStack(BaseHandler):
    """settings.MIDDLEWARE built sync, as under WSGI, without the middleware that can only run
    async (ServeStatic: the static files it serves resolve to no view, so never come here)."""

    def __init__(self) -> None:
        super().__init__()
        self.load_middleware(is_async=False)

    def load_middleware(self, is_async: bool = False) -> None:
        every = list(settings.MIDDLEWARE)
        async_only = [path for path in every if not getattr(import_string(path), "sync_capable", True)]
        if unknown := set(async_only) - ASYNC_ONLY_MIDDLEWARE:
            raise ImproperlyConfigured(
                f"{', '.join(sorted(unknown))} can only run async; rpchat.handlers.SyncStack runs every "
                "page's middleware sync. Make it sync-capable, or list it in ASYNC_ONLY_MIDDLEWARE if "
                "it never concerns a path that resolves to a view."
            )
        # Django builds the stack from settings.MIDDLEWARE, so the list is narrowed while it does:
        # once, when the handler is made (rpchat/asgi.py, at import).
        settings.MIDDLEWARE = [path for path in every if path not in async_only]
        try:
            super().load_middleware(is_async=False)
        finally:
            settings.MIDDLEWARE = every

    def resolve_request(self, request):
        # Already resolved by the ASGI handler to choose this stack: not twice.
        match = request.__dict__.pop("_rpchat_resolved", None)
        if match is None or hasattr(request, "urlconf"):
            return super().resolve_request(request)
        request.resolver_match = match
        return match


class PooledThreadsASGIHandler(ASGIHandler):
    """Django's ASGIHandler, running each request's sync code on a borrowed long-lived thread."""

    def __init__(self, threads: int | None = None) -> None:
        super().__init__()
        if threads is None:
            threads = int(os.getenv("RPCHAT_REQUEST_THREADS", DEFAULT_THREADS))
        self.threads = RequestThreads(max(threads, 0))
        self.sync_stack = SyncStack()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)  # Django's own refusal
        executor, pooled = self.threads.borrow()
        deferred, token = after_response.collect()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            self.threads.give_back(executor, pooled)
            # Sent (or the request ended without a response): what it deferred starts now.
            after_response.run(deferred, token)

    async def handle(self, scope, receive, send):
        """A sync view's request in one trip to the request's thread; any other (chosen by its path,
        before its body is read) through Django's own handler."""
        match = _sync_view(_path_info(scope))
        if match is None:
            return await super().handle(scope, receive, send)
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            set_script_prefix(get_script_prefix(scope))
            request, error_response = self.create_request(scope, body_file)
            if request is None:  # a request Django refuses as it reads it (too many fields, say)
                await signals.request_started.asend(sender=self.__class__, scope=scope)
                await self.send_response(error_response, send)
                await sync_to_async(error_response.close)()
                return
            request._rpchat_resolved = match
            response = await sync_to_async(self._respond, thread_sensitive=True)(request, scope)
            response._handler_class = self.__class__
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # as Django's run_get_response does
            try:
                await self.send_response(response, send)
            finally:
                if response.streaming:
                    await sync_to_async(response.close)()
        finally:
            body_file.close()

    def _respond(self, request, scope):
        """On the request's thread: what Django's handler does there in three trips."""
        signals.request_started.send(sender=self.__class__, scope=scope)
        response = self.sync_stack.get_response(request)
        if not response.streaming:
            # The request_finished signal (closing a connection past its age), before it is sent.
            response.close()
        return response


def _path_info(scope) -> str:
    """The path a request resolves, as Django's ASGIRequest takes it from the scope."""
    prefix = get_script_prefix(scope)
    return scope["path"].removeprefix(prefix) if prefix else scope["path"]


def _sync_view(path_info: str):
    """The path's match when it resolves to a sync view, else None (Django's async stack answers)."""
    set_urlconf(settings.ROOT_URLCONF)
    try:
        match = get_resolver().resolve(path_info)
    except Exception:  # Resolver404, or a path converter's error: Django's own stack answers it
        return None
    return None if iscoroutinefunction(match.func) else match
