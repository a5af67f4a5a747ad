"""URLs reversed once per process, for the `{% url %}` tag (core/templatetags/cached_urls.py) and
for the URLs code builds on every page (`cached_reverse`).

Django's reverse() costs 70 to 80 µs here: it asks the active language three times through
asgiref's thread-and-task locals. What a URL reverses to depends only on the view name, its
arguments, the application instance (current_app) and the script prefix, never on the request
otherwise: rpchat has no per-request URLconf and no language prefix in its URLs. So the answer is
kept under exactly those (and the thread's URLConf), in a bounded LRU. Arguments other than plain
strings, ints and UUIDs (a bool, a float, a model instance, a lazy string) are reversed by Django
each time, and a name that does not reverse raises NoReverseMatch every time (errors are not
cached).
"""

from __future__ import annotations

import uuid
from functools import lru_cache

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.safestring import SafeString

# The arguments kept as keys: exactly these types (True, 1 and 1.0 are equal keys but not equal
# URLs; a model instance or a lazy string goes through Django's tag). A quoted name or argument in
# a template is a SafeString: kept as the plain string it reverses the same as.
_KEYS = frozenset({str, int, uuid.UUID})
_UNCACHED = object()


def key(value):
    kind = type(value)
    if kind is SafeString:
        return str.__str__(value)  # str(value) is the SafeString itself
    return value if kind in _KEYS else _UNCACHED


def keys(values) -> tuple | None:
    """The values as cache keys, or None when one of them cannot be one."""
    found = tuple(key(value) for value in values)
    return None if any(k is _UNCACHED for k in found) else found


# A chat's own URLs are about fifteen; this holds those of a few hundred chats and every page's.
MAX_URLS = 8192


@lru_cache(maxsize=MAX_URLS)
def reversed_url(view_name, args: tuple, kwargs: tuple, current_app, urlconf, prefix: str) -> str:
    return reverse(view_name, urlconf=urlconf, args=args, kwargs=dict(kwargs), current_app=current_app)


def cached_reverse(view_name: str, args=()) -> str:
    """django.urls.reverse(view_name, args=args) from the same cache as the tag, for the URLs code
    builds on every page (a chat's own address, an avatar): for str, int and UUID arguments;
    anything else is reversed by Django each time."""
    arg_keys = keys(args)
    if type(view_name) is not str or arg_keys is None:
        return reverse(view_name, args=args)
    return reversed_url(view_name, arg_keys, (), None, get_urlconf(), get_script_prefix())


@receiver(setting_changed)
def _forget(*, setting, **kwargs):
    """A test's override of the URLConf (as Django drops its own URL caches then)."""
    if setting in ("ROOT_URLCONF", "FORCE_SCRIPT_NAME"):
        reversed_url.cache_clear()
