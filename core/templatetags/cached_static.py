"""`{% static %}` asking the storage once per path and process: a template builtin
(settings.TEMPLATES), used by our templates without `{% load static %}`, which would put Django's
own tag back (a test checks that no template loads it).

The manifest storage's url() hashes and joins the path on every call: about 45 µs a tag, four or
more on every page. A path's URL is fixed for the life of the process (the manifest is read when
the storage is made), so it is kept under the path and the script prefix, and dropped when a test
changes the static settings. Anything but a plain string path goes through Django's tag.
"""

from __future__ import annotations

from functools import lru_cache

from django import template
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.templatetags import static as django_static
from django.urls import get_script_prefix
from django.utils.safestring import SafeString

register = template.Library()

STATIC_SETTINGS = frozenset(
    {"STATIC_URL", "STATIC_ROOT", "STORAGES", "STATICFILES_DIRS", "FORCE_SCRIPT_NAME"}
)


@lru_cache(maxsize=1024)
def _static_url(path: str, prefix: str) -> str:
    return django_static.StaticNode.handle_simple(path)


@receiver(setting_changed)
def _forget(*, setting, **kwargs):
    if setting in STATIC_SETTINGS:
        _static_url.cache_clear()


class CachedStaticNode(django_static.StaticNode):
    def url(self, context):
        path = self.path.resolve(context)
        if type(path) not in (str, SafeString):
            return super().url(context)
        return _static_url(str.__str__(path), get_script_prefix())


@register.tag("static")
def do_static(parser, token):
    node = django_static.do_static(parser, token)
    return CachedStaticNode(varname=node.varname, path=node.path)
