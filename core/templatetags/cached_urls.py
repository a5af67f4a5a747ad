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

from core.urlcache import key, keys, reversed_url

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
        args = keys(arg.resolve(context) for arg in self.args)
        names = sorted(self.kwargs)
        values = keys(self.kwargs[name].resolve(context) for name in names)
        if type(view_name) is not str or args is None or values is None:
            return super().render(context)
        kwargs = tuple(zip(names, values, strict=True))
        url = reversed_url(view_name, args, kwargs, _current_app(context), get_urlconf(), get_script_prefix())
        return conditional_escape(url) if context.autoescape else url


@register.tag
def url(parser, token):
    node = defaulttags.url(parser, token)
    return CachedURLNode(node.view_name, node.args, node.kwargs, node.asvar)
