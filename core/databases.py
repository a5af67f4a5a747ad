"""Reaching a database that is not in DATABASES: a stress run's own SQLite file, a backup to check.

`attached_database` adds a connection alias for the length of a `with` block, configured the way
settings.py configures the default one (SQLite pragmas included), so ORM code can read it with
`.using(alias)`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dj_database_url
from django.conf import settings
from django.db import connection, connections
from django.db.utils import load_backend

_MAPPED = threading.Lock()


@contextmanager
def mapped_reads(alias: str = "default") -> Iterator[None]:
    """Inside the block, SQLite reads its file through a memory map (`PRAGMA mmap_size`, up to
    SQLITE_MMAP_BYTES) instead of copying each page into the connection's page cache; the map is
    given back when the block ends.

    For the reads that cross much of the file (the searches: about 1.2x slower without it).
    Everything else reads without one. Each connection maps the file on its own, so the request
    threads' maps counted the same pages once per thread in the process's resident memory: eight
    searches at once, about 170 MB more at the peak (docs/performance.md). So one block at a time
    in the process maps, and a block that finds the map taken reads without one.

    A no-op on other databases and with SQLITE_MMAP_BYTES=0."""
    wrapper = connections[alias]
    size = int(settings.SQLITE_MMAP_BYTES)
    if wrapper.vendor != "sqlite" or size <= 0 or not _MAPPED.acquire(blocking=False):
        yield
        return
    try:
        wrapper.ensure_connection()
        # Housekeeping sent to the driver directly, not queries of the request.
        wrapper.connection.execute(f"PRAGMA mmap_size={size}")
        try:
            yield
        finally:
            _unmap(wrapper)
    finally:
        _MAPPED.release()


def _unmap(wrapper) -> None:
    """Give the map back; SQLite keeps it while a statement of the connection is still reading (it
    answers with the old size), so such a connection is closed instead, outside a transaction."""
    if wrapper.connection is None:
        return
    try:
        unmapped = wrapper.connection.execute("PRAGMA mmap_size=0").fetchone()[0] == 0
    except wrapper.Database.Error:  # the driver's own (sent to it directly, not through Django)
        unmapped = False
    if not unmapped and not wrapper.in_atomic_block:
        wrapper.close()


def sqlite_path(alias: str = "default") -> Path | None:
    """The file of an SQLite database alias, or None when it is another engine."""
    config = connections[alias].settings_dict
    if config["ENGINE"] != "django.db.backends.sqlite3":
        return None
    return Path(config["NAME"])


@contextmanager
def attached_database(alias: str, url: str) -> Iterator[str]:
    """Make `url` reachable as `alias` in this thread inside the block; closed at the end.

    The connection is registered for this thread only and DATABASES is left alone, so nothing
    else (routers, the query cache, other threads) ever sees the alias.
    """
    if alias in connections.settings or hasattr(connections._connections, alias):
        raise ValueError(f"The database alias {alias!r} is already configured.")
    config = dj_database_url.parse(url)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {**settings.SQLITE_OPTIONS, **config.get("OPTIONS", {})}
    # Fills in Django's defaults (TIME_ZONE, AUTOCOMMIT, TEST, ...) exactly as for DATABASES.
    connections.configure_settings({"default": config})
    wrapper = load_backend(config["ENGINE"]).DatabaseWrapper(config, alias)
    setattr(connections._connections, alias, wrapper)
    try:
        yield alias
    finally:
        wrapper.close()
        delattr(connections._connections, alias)


def release_connection() -> None:
    """Hand this thread's connection back (to the pool on PostgreSQL) between short queries.

    A streaming response runs for as long as a reply is written; a connection kept from its first
    query to its end would starve the pool with a few open chat pages. Inside a transaction (a test
    case's, say) there is nothing to give back. SQLite's connection is a file handle that holds
    nothing while idle, and the request thread keeps it for its next request (rpchat/handlers.py):
    closed, the next request on that thread paid about 2 ms to open the file and read the schema.
    """
    if connection.vendor != "sqlite" and not connection.in_atomic_block:
        connection.close()
