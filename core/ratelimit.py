"""Fixed-window rate limits kept in the cache (Redis with several workers)."""

from __future__ import annotations

import time

from django.core.cache import cache


def hit(scope: str, key: str, *, limit: int, window: int) -> int | None:
    """Count one event; None while under `limit` per `window` seconds, else seconds to wait."""
    if limit <= 0:
        return None
    slot = int(time.time() // window)
    name = f"rl:{scope}:{key}:{slot}"
    cache.add(name, 0, timeout=window + 5)
    try:
        count = cache.incr(name)
    except ValueError:  # expired between add and incr
        cache.add(name, 1, timeout=window + 5)
        count = 1
    if count > limit:
        return int(window - time.time() % window) + 1
    return None


def blocked(scope: str, key: str, *, limit: int, window: int) -> int | None:
    """Seconds to wait if `key` is already over the limit in this window, without counting."""
    if limit <= 0:
        return None
    slot = int(time.time() // window)
    count = cache.get(f"rl:{scope}:{key}:{slot}", 0)
    if count >= limit:
        return int(window - time.time() % window) + 1
    return None
