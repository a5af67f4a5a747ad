"""Every named URL of the site (admin and debug tools left out), for the tests that walk them all."""

from django.urls import URLPattern, URLResolver, get_resolver


def named_patterns(resolver=None, namespace=""):
    """(name with its namespace, pattern) of every named URL."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin" or str(entry.pattern).startswith(("__debug__", "silk")):
                continue
            ns = entry.namespace or namespace
            yield from named_patterns(entry, f"{ns}:" if entry.namespace else namespace)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}{entry.name}", entry
