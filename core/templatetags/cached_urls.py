"""`{% url %}` with each URL reversed once per process (core/urlcache.py): a template builtin
(settings.TEMPLATES) that takes the place of Django's own tag in every template.

The chat page has 21 `{% url %}` tags, the gallery several per card, so reversing was a sixth of
the chat page's time. Arguments other than plain strings, ints and UUIDs and
`{% url ... as var %}` go through Django's own tag unchanged.
"""

from __future__ import annotations

from django import template
from django.template import defaulttags
from django.urls import get_script_prefix, get_urlconf
from django.utils.html import conditional_escape

from core.urlcache import UNCACHED, key, reversed_url

register = template.Library()


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
        view_name = key(self.view_name.resolve(context))
        args = tuple(key(arg.resolve(context)) for arg in self.args)
        kwargs = tuple(sorted((name, key(value.resolve(context))) for name, value in self.kwargs.items()))
        if (
            type(view_name) is not str
            or any(a is UNCACHED for a in args)
            or any(v is UNCACHED for _, v in kwargs)
        ):
            return super().render(context)
        url = reversed_url(view_name, args, kwargs, _current_app(context), get_urlconf(), get_script_prefix())
        return conditional_escape(url) if context.autoescape else url


@register.tag
def url(parser, token):
    node = defaulttags.url(parser, token)
    return CachedURLNode(node.view_name, node.args, node.kwargs, node.asvar)
