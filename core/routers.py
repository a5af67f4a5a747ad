"""The read replica (DATABASE_REPLICA_URL): reads that may lag go there, everything else to default.

A replica is seconds behind the primary at worst, so only a read whose page is fine showing the
state of a moment ago may use it, and only when the code says so: inside `replica_reads()` (or a
view decorated with `reads_may_lag`), and only for the tables in LAG_TOLERANT_APPS. Chat pages (read
right after a send), anything read and then written, logins and sessions, settings (cached for every
worker, so a stale read would stay) and admin pages (which show a change just saved) always read
from the primary. Without a replica configured the router is not installed at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import wraps

from django.conf import settings

REPLICA = "replica"
PRIMARY = "default"
# Characters, tags and lorebooks: what the gallery lists. Nothing a user just wrote waits on it.
LAG_TOLERANT_APPS = frozenset({"characters"})

_may_lag: ContextVar[bool] = ContextVar("rpchat_reads_may_lag", default=False)


@contextmanager
def replica_reads() -> Iterator[None]:
    """Inside the block, reads of lag-tolerant tables go to the replica (when there is one)."""
    token = _may_lag.set(True)
    try:
        yield
    finally:
        _may_lag.reset(token)


def reads_may_lag(view: Callable) -> Callable:
    """Run a (sync) view inside `replica_reads()`: for list pages that may show a moment-old state."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        with replica_reads():
            return view(request, *args, **kwargs)

    return wrapped


class ReplicaRouter:
    def db_for_read(self, model, **hints) -> str | None:
        if not _may_lag.get() or not settings.DATABASE_REPLICA_URL:
            return None  # Django's default: the instance's own database, else default
        if model._meta.app_label not in LAG_TOLERANT_APPS:
            return PRIMARY
        instance = hints.get("instance")
        if instance is not None and instance._state.db:
            return instance._state.db  # related rows from where the row came from
        return REPLICA

    def db_for_write(self, model, **hints) -> str:
        return PRIMARY

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        # Both hold the same rows, so a row read from one may point at a row read from the other.
        if {obj1._state.db, obj2._state.db} <= {PRIMARY, REPLICA}:
            return True
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints) -> bool:
        # The replica follows the primary's schema by replication.
        return db == PRIMARY
