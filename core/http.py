"""HTTP caching helpers: ETags made from a few cheap values, and private Cache-Control.

Views compute their validators with django.views.decorators.http.condition from one small query
or a cache read, so a 304 costs a fraction of building the page. See docs/api.md, "HTTP caching".
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import orjson
from django.conf import settings
from django.utils.cache import patch_cache_control, patch_vary_headers


@functools.cache
def release_stamp() -> str:
    """Changes when the code that renders pages changes, so cached HTML is not reused across
    deploys: RPCHAT_RELEASE when set, else a digest of the templates' names, sizes and times."""
    if release := os.getenv("RPCHAT_RELEASE"):
        return release
    digest = hashlib.sha256()
    for directory in settings.TEMPLATES[0]["DIRS"]:
        for path in sorted(Path(directory).rglob("*.html")):
            stat = path.stat()
            digest.update(f"{path.relative_to(directory)}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:12]


def once_per_request(func):
    """Memoize `func(request, *args)` on the request, so an ETag function and its view share one lookup.

    An exception (a 404) is not remembered: the next call raises it again.
    """

    @functools.wraps(func)
    def wrapper(request, *args):
        memo = request.__dict__.setdefault("_once_per_request", {})
        key = (func.__qualname__, *args)
        if key not in memo:
            memo[key] = func(request, *args)
        return memo[key]

    return wrapper


def etag_of(*parts) -> str:
    """A strong ETag value (without quotes; Django adds them) for the given parts.

    The parts are written by orjson (a page's keys are fifty rows with a datetime each: repr() of
    them took 0.2 ms); anything orjson does not write is written by repr(), as before."""
    try:
        data = orjson.dumps(parts, default=repr)
    except orjson.JSONEncodeError:  # an int past 64 bits
        data = repr(parts).encode()
    return hashlib.sha256(data).hexdigest()[:32]


def private_revalidate(response, *, vary=("Cookie",)):
    """Cache in the browser only, and ask the server (a 304 when unchanged) before each reuse."""
    patch_cache_control(response, private=True, no_cache=True)
    patch_vary_headers(response, vary)
    return response


def private_max_age(response, seconds: int, *, vary=("Cookie",)):
    """Cache in the browser only, reused without asking for `seconds`."""
    patch_cache_control(response, private=True, max_age=seconds)
    patch_vary_headers(response, vary)
    return response


def private_cache(*, max_age: int | None = None, vary=("Cookie",)):
    """Decorate a view so its responses, 304s included, carry private Cache-Control and Vary.

    Without max_age the browser revalidates on every use; place it outside @condition.
    """

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            response = view(request, *args, **kwargs)
            if max_age is None:
                return private_revalidate(response, vary=vary)
            return private_max_age(response, max_age, vary=vary)

        return wrapper

    return decorator
