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

It also runs what a request deferred until its response was sent (core.after_response: the
generation of a reply it started).
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler
from django.db import connections

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


class PooledThreadsASGIHandler(ASGIHandler):
    """Django's ASGIHandler, running each request's sync code on a borrowed long-lived thread."""

    def __init__(self, threads: int | None = None) -> None:
        super().__init__()
        if threads is None:
            threads = int(os.getenv("RPCHAT_REQUEST_THREADS", DEFAULT_THREADS))
        self.threads = RequestThreads(max(threads, 0))

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
