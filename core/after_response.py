"""Work a request starts that should begin only once its response has been sent.

A sent message's reply is generated on the generation loop's thread, beside the request that
stored it. Started at once, building its prompt (25 ms of Python) took the GIL from the request
still rendering its answer: the send's response took 32 ms instead of 18 (docs/performance.md).
The reply loses nothing by starting a millisecond later, once the answer is out: its page follows
it only after reading that answer.

rpchat's ASGI handler (rpchat.handlers) opens a list for each HTTP request with `collect()`, and
runs what was put there with `run()` once the response is sent, or when the request ends without
one (a dropped connection): always, so nothing deferred is ever lost. Work deferred after that (a
view still running on its thread when the client went away and Django stopped waiting for it)
runs at once. Elsewhere (WSGI, the test client, commands, background tasks) `defer()` says no and
the caller starts its work at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar, Token

logger = logging.getLogger(__name__)

Work = Callable[[], None]


class Deferred:
    """One request's deferred work: queued until `run()`, run at once after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work: list[Work] = []
        self._ran = False

    def add(self, work: Work) -> None:
        with self._lock:
            if not self._ran:
                self._work.append(work)
                return
        _run_one(work)

    def run(self) -> None:
        with self._lock:
            self._ran = True
            work, self._work = self._work, []
        for item in work:
            _run_one(item)


def _run_one(work: Work) -> None:
    try:
        work()
    except Exception:
        logger.exception("Work deferred until after a response failed")


_current: ContextVar[Deferred | None] = ContextVar("rpchat_after_response", default=None)


def defer(work: Work) -> bool:
    """Queue `work` for when this request's response is sent; False when not inside such a request
    (then nothing is queued: do it now)."""
    deferred = _current.get()
    if deferred is None:
        return False
    deferred.add(work)
    return True


def collect() -> tuple[Deferred, Token]:
    """Open this request's list (in the handler's context: the request's threads see the same one)."""
    deferred = Deferred()
    return deferred, _current.set(deferred)


def run(deferred: Deferred, token: Token) -> None:
    """Run what the request deferred, in order; one failing does not keep the others from running."""
    _current.reset(token)
    deferred.run()
