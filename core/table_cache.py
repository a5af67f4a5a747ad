"""A page's data cached until any of the tables it reads is written, by cachalot's own invalidations.

cachalot already answers the gallery's queries from the cache, but it builds and compiles each
query on every request to find its key, and the page then renders the same cards again: with no
database query at all, the gallery still spent a third of its time on queries and most of the rest
on its template (docs/performance.md). `cached_by_tables` keeps what a page computed from some
tables (rendered HTML, rows for the API) under a key that holds the time cachalot last invalidated
each of those tables, so a write to any of them, through the ORM or raw SQL, committed anywhere
that shares the cache, makes a new key, exactly when cachalot would drop its own cached queries.

Not cached, computed as before, whenever the answer could be older than the tables:
- cachalot is off (`CACHALOT_ENABLED=0`, or `cachalot_disabled()` around the call), or the reads go to a read replica (cachalot does not
  cache those either: a replica may not have the rows a fresh invalidation is about);
- a table has no invalidation time in the cache (none written yet, or expired after
  `CACHALOT_TIMEOUT`): the key would not move on the next write. cachalot sets it on the first
  query it caches on that table, and the next request caches.
- inside a transaction (cachalot keeps that transaction's invalidations to itself until commit).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import TypeVar

from cachalot.api import LOCAL_STORAGE
from cachalot.cache import cachalot_caches
from cachalot.settings import cachalot_settings
from django.core.cache import caches
from django.db import connections, router

T = TypeVar("T")
PREFIX = "table-cached"
_MISSING = object()


def _stamps(models: Iterable, alias: str) -> tuple | None:
    """The last invalidation time of each model's table, or None when one is unknown."""
    tables = sorted({model._meta.db_table for model in models})
    keygen = cachalot_settings.CACHALOT_TABLE_KEYGEN
    keys = [keygen(alias, table) for table in tables]
    found = cachalot_caches.get_cache(db_alias=alias).get_many(keys)
    if len(found) != len(keys):
        return None
    return tuple(found[key] for key in keys)


def cached_by_tables(name: str, parts: tuple, models: Iterable, compute: Callable[[], T]) -> T:
    """`compute()`, or what it gave before for the same `parts` while none of `models`' tables has
    been written since. `parts` must hold everything else the value depends on (the user, the
    filters, the page, the template's release stamp); the value must be picklable."""
    models = list(models)
    if not cachalot_settings.CACHALOT_ENABLED or not getattr(LOCAL_STORAGE, "cachalot_enabled", True):
        return compute()
    alias = router.db_for_read(models[0]) or "default"
    if alias not in cachalot_settings.CACHALOT_DATABASES or connections[alias].in_atomic_block:
        return compute()
    stamps = _stamps(models, alias)
    if stamps is None:
        return compute()
    digest = hashlib.blake2b(repr((parts, stamps)).encode(), digest_size=20).hexdigest()
    key = f"{PREFIX}:{name}:{digest}"
    cache = caches["default"]
    value = cache.get(key, _MISSING)
    if value is _MISSING:
        value = compute()
        cache.set(key, value, timeout=cachalot_settings.CACHALOT_TIMEOUT)
    return value
