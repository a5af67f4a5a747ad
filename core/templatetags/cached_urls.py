"""`{% url %}` with each URL reversed once per process: a template builtin (settings.TEMPLATES) that
takes the place of Django's own tag in every template.

Django's reverse() costs 70 to 80 µs here: it asks the active language three times through
asgiref's thread-and-task locals. The chat page has 21 `{% url %}` tags, the gallery several per
card, so reversing was a sixth of the chat page's time. What a URL reverses to depends only on the
view name, its arguments, the application instance (current_app) and the script prefix, never on
the request otherwise: rpchat has no per-request URLconf and no language prefix in its URLs. So the
answer is kept under exactly those (and the thread's URLConf), in a bounded LRU. Arguments other
than plain strings, ints and UUIDs (a bool, a float, a model instance, a lazy string) and
`{% url ... as var %}` go through Django's own tag unchanged, and a name that does not reverse
raises NoReverseMatch every time, as before (errors are not cached).
"""

from __future__ import annotations

import uuid
from functools import lru_cache

from django import template
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template import defaulttags
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString

register = template.Library()

# The arguments kept as keys: exactly these types (True, 1 and 1.0 are equal keys but not equal
# URLs; a model instance or a lazy string goes through Django's tag). A quoted name or argument in
# a template is a SafeString: kept as the plain string it reverses the same as.
_KEYS = frozenset({str, int, uuid.UUID})
_UNCACHED = object()


def _key(value):
    kind = type(value)
    if kind is SafeString:
        return str.__str__(value)  # str(value) is the SafeString itself
    return value if kind in _KEYS else _UNCACHED


# A chat's own URLs are about fifteen; this holds those of a few hundred chats and every page's.
MAX_URLS = 8192


@lru_cache(maxsize=MAX_URLS)
def _reversed(view_name, args: tuple, kwargs: tuple, current_app, urlconf, prefix: str) -> str:
    return reverse(view_name, urlconf=urlconf, args=args, kwargs=dict(kwargs), current_app=current_app)


@receiver(setting_changed)
def _forget(*, setting, **kwargs):
    """A test's override of the URLConf (as Django drops its own URL caches then)."""
    if setting in ("ROOT_URLCONF", "FORCE_SCRIPT_NAME"):
        _reversed.cache_clear()


def _current_app(context) -> str | None:
    request = getattr(context, "request", None)
    if request is None:
        return None
    if hasattr(request, "current_app"):
        return request.current_app
    match = getattr(request, "resolver_match", None)
    return match.namespace if match is not None else None


class CachedURLNode(defaulttags.URLNode):
    def render(self, context):
        if self.asvar:
            return super().render(context)
        view_name = _key(self.view_name.resolve(context))
        args = tuple(_key(arg.resolve(context)) for arg in self.args)
        kwargs = tuple(sorted((name, _key(value.resolve(context))) for name, value in self.kwargs.items()))
        if (
            type(view_name) is not str
            or any(a is _UNCACHED for a in args)
            or any(v is _UNCACHED for _, v in kwargs)
        ):
            return super().render(context)
        url = _reversed(view_name, args, kwargs, _current_app(context), get_urlconf(), get_script_prefix())
        return conditional_escape(url) if context.autoescape else url


@register.tag
def url(parser, token):
    node = defaulttags.url(parser, token)
    return CachedURLNode(node.view_name, node.args, node.kwargs, node.asvar)
