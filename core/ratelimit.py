"""Sliding-window rate limits kept in the cache (Redis with several workers).

Each key keeps the times of the events it let through in the last `window` seconds; an event is let
through while fewer than `limit` are, so no stretch of `window` seconds ever holds more than `limit`
events (a fixed window counted per clock minute lets twice the limit through around a boundary).
A refused event is not recorded: waiting the time given is always enough.

On Redis the check and the record are one Lua script over a sorted set, so workers cannot both take
the last place. On the local-memory cache (one process) a lock does the same.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import threading
import time

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

# KEYS[1]: the key. ARGV: now, window, limit, a unique member, whether to record.
# Returns 0 when the event is let through (and recorded when asked), else milliseconds to wait.
_SCRIPT = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  if ARGV[5] == '1' then
    redis.call('ZADD', KEYS[1], now, ARGV[4])
    redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
  end
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.ceil((tonumber(oldest[2]) + window - now) * 1000))
"""
_lock = threading.Lock()
_script = None


def _name(scope: str, key: str) -> str:
    # Hashed: keys carry user input (a username), which must not shape the cache key.
    return f"rl:{scope}:{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"


def _redis(cache: RedisCache, name: str, *, limit: int, window: int, record: bool) -> float:
    global _script
    client = cache._cache.get_client(write=True)
    if _script is None:
        _script = client.register_script(_SCRIPT)  # EVALSHA, loading the script when Redis lacks it
    now = time.time()
    wait_ms = _script(
        keys=[cache.make_key(name)],
        args=[repr(now), window, limit, f"{now!r}:{secrets.token_hex(8)}", "1" if record else "0"],
        client=client,
    )
    return int(wait_ms) / 1000


def _local(cache, name: str, *, limit: int, window: int, record: bool) -> float:
    with _lock:
        now = time.time()
        stamps = [t for t in cache.get(name, []) if t > now - window]
        if len(stamps) >= limit:
            return max(stamps[0] + window - now, 0.001)
        if record:
            stamps.append(now)
            cache.set(name, stamps, timeout=math.ceil(window) + 1)
        return 0


def _check(scope: str, key: str, *, limit: int, window: int, record: bool) -> int | None:
    if limit <= 0:
        return None
    cache = caches["default"]
    run = _redis if isinstance(cache, RedisCache) else _local
    wait = run(cache, _name(scope, key), limit=limit, window=window, record=record)
    return math.ceil(wait) if wait > 0 else None


def hit(scope: str, key: str, *, limit: int, window: int) -> int | None:
    """Count one event; None while under `limit` per `window` seconds, else seconds to wait
    (the refused event is not counted)."""
    return _check(scope, key, limit=limit, window=window, record=True)


def blocked(scope: str, key: str, *, limit: int, window: int) -> int | None:
    """Seconds to wait if `key` is already at the limit, without counting."""
    return _check(scope, key, limit=limit, window=window, record=False)
