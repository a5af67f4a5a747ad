"""Django's own cache backends, counting hits and misses for /metrics and the Performance page.

Set `METRICS_LABEL` beside `BACKEND` in `CACHES` to name the series (cachalot's alias says
"cachalot"). A `get_many` counts as one lookup: a hit when every key was found, which is how
cachalot reads a cached query (the query's key together with its tables' keys).
`clear_environment` drops one environment's keys (after a restore).
"""

from __future__ import annotations

import re
from contextvars import ContextVar

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

from . import metrics

# LocMemCache.get_many calls get() per key: count the get_many once, not its parts.
_inside_get_many: ContextVar[bool] = ContextVar("rpchat_inside_get_many", default=False)
_missing = object()


class CountingMixin:
    def __init__(self, location, params):
        self.metrics_label = params.get("METRICS_LABEL", "default")
        super().__init__(location, params)

    def validate_key(self, key):
        """No check. Django's only warns of keys memcached would refuse, one character at a time in
        Python: a chat page's fifty fragment keys cost 0.35 ms in it. rpchat's keys are its own
        digests and names, and neither local memory nor Redis limits a key's length or characters."""

    def get(self, key, default=None, version=None):
        value = super().get(key, _missing, version)
        if not _inside_get_many.get():
            metrics.observe_cache(self.metrics_label, value is not _missing)
        return default if value is _missing else value

    def get_many(self, keys, version=None):
        keys = list(keys)
        token = _inside_get_many.set(True)
        try:
            found = super().get_many(keys, version)
        finally:
            _inside_get_many.reset(token)
        if keys:
            metrics.observe_cache(self.metrics_label, len(found) == len(keys))
        return found


class CountingLocMemCache(CountingMixin, LocMemCache):
    pass


class CountingRedisCache(CountingMixin, RedisCache):
    pass


def clear_environment(alias: str = "default") -> None:
    """Drop every cached value of this environment: the keys under its KEY_PREFIX (all aliases share
    it), leaving other environments that share the Redis alone. Local memory is per process, so
    there it empties this process's cache only (a stopped server's is gone with it).
    """
    from django.core.cache import caches

    cache = caches[alias]
    if not isinstance(cache, RedisCache):
        from django.conf import settings

        for name in settings.CACHES:  # each local-memory store (the API's pages have one of their own)
            caches[name].clear()
        return
    client = cache._cache.get_client(write=True)
    # The prefix is the operator's text: escape glob characters so it matches only itself.
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", cache.key_prefix) + ":*"
    batch = []
    for key in client.scan_iter(pattern, count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)
