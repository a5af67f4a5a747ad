"""core/templatetags/cached_static.py: `{% static %}` in our templates, a builtin, gives what Django's
tag gives and asks the storage once per path."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.template import engines
from django.templatetags.static import static
from django.test import override_settings

from core.templatetags import cached_static


def render(source: str, **context) -> str:
    return engines["django"].from_string(source).render(context)


def test_static_gives_what_django_gives_and_asks_the_storage_once():
    cached_static._static_url.cache_clear()
    assert render("{% static 'js/chat.js' %}") == static("js/chat.js")
    assert render("{% static path %}", path="css/app.css") == static("css/app.css")
    before = cached_static._static_url.cache_info()
    render("{% static 'js/chat.js' %}{% static path %}", path="css/app.css")
    after = cached_static._static_url.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (2, 0)


def test_the_as_form_works_and_djangos_library_can_still_be_loaded():
    assert render("{% static 'js/chat.js' as src %}[{{ src }}]") == f"[{static('js/chat.js')}]"
    assert render("{% load static %}{% get_static_prefix %}") == "/static/"


def test_no_template_of_ours_loads_djangos_static_over_the_cached_one():
    loading = [
        str(path.relative_to(settings.BASE_DIR))
        for path in Path(settings.BASE_DIR, "templates").rglob("*.html")
        if "{% load static" in path.read_text(encoding="utf-8")
    ]
    assert loading == []


def test_a_change_of_the_static_settings_is_seen():
    render("{% static 'js/chat.js' %}")  # kept
    with override_settings(STATIC_URL="https://cdn.example.com/s/"):
        assert render("{% static 'js/chat.js' %}").startswith("https://cdn.example.com/s/")
    assert render("{% static 'js/chat.js' %}").startswith("/static/")
