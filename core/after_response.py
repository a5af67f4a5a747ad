"""Work a request starts that should begin only once its response has been sent.

A sent message's reply is generated on the generation loop's thread, beside the request that
stored it. Started at once, building its prompt (25 ms of Python) took the GIL from the request
still rendering its answer: the send's response took 32 ms instead of 18 (docs/performance.md).
The reply loses nothing by starting a millisecond later, once the answer is out: its page follows
it only after reading that answer.

rpchat's ASGI handler (rpchat.handlers) opens a list for each HTTP request with `collect()`, and
runs what was put there with `run()` once the response is sent, or when the request ends without
one (a dropped connection): always, so nothing deferred is ever lost. Elsewhere (WSGI, the test
client, commands, background tasks) `defer()` says no and the caller starts its work at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar, Token

logger = logging.getLogger(__name__)

_pending: ContextVar[list[Callable[[], None]] | None] = ContextVar("rpchat_after_response", default=None)


def defer(work: Callable[[], None]) -> bool:
    """Queue `work` for when this request's response is sent; False when not inside such a request
    (then nothing is queued: do it now)."""
    pending = _pending.get()
    if pending is None:
        return False
    pending.append(work)
    return True


def collect() -> tuple[list[Callable[[], None]], Token]:
    """Open this request's list (in the handler's context: the request's threads see the same list)."""
    pending: list[Callable[[], None]] = []
    return pending, _pending.set(pending)


def run(pending: list[Callable[[], None]], token: Token) -> None:
    """Run what the request deferred, in order; one failing does not keep the others from running."""
    _pending.reset(token)
    for work in pending:
        try:
            work()
        except Exception:
            logger.exception("Work deferred until after a response failed")
