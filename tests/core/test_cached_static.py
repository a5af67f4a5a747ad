"""core/templatetags/cached_static.py: `{% load static %}` in every template (the admin's too) gives
Django's library, with `{% static %}` asking the storage once per path."""

from __future__ import annotations

from django.template import engines
from django.templatetags.static import static
from django.test import override_settings

from core.templatetags import cached_static


def render(source: str, **context) -> str:
    return engines["django"].from_string("{% load static %}" + source).render(context)


def test_static_gives_what_django_gives_and_asks_the_storage_once():
    cached_static._static_url.cache_clear()
    assert render("{% static 'js/chat.js' %}") == static("js/chat.js")
    assert render("{% static path %}", path="css/app.css") == static("css/app.css")
    before = cached_static._static_url.cache_info()
    render("{% static 'js/chat.js' %}{% static path %}", path="css/app.css")
    after = cached_static._static_url.cache_info()
    assert (after.hits - before.hits, after.misses - before.misses) == (2, 0)


def test_the_rest_of_djangos_library_and_the_as_form_still_work():
    assert render("{% get_static_prefix %}") == "/static/"
    assert render("{% static 'js/chat.js' as src %}[{{ src }}]") == f"[{static('js/chat.js')}]"


def test_a_change_of_the_static_settings_is_seen():
    render("{% static 'js/chat.js' %}")  # kept
    with override_settings(STATIC_URL="https://cdn.example.com/s/"):
        assert render("{% static 'js/chat.js' %}").startswith("https://cdn.example.com/s/")
    assert render("{% static 'js/chat.js' %}").startswith("/static/")
