"""core/templatetags/cached_urls.py: every `{% url %}` in every template, reversed once per process,
gives what Django's own tag gives, under any script prefix, and still fails as Django's does."""

from __future__ import annotations

import uuid

import pytest
from django.template import Context, Template, engines
from django.test import override_settings
from django.urls import NoReverseMatch, reverse, set_script_prefix
from django.utils.functional import SimpleLazyObject

from core import urlcache
from core.templatetags import cached_urls

CODE = uuid.UUID("63c6c2fc-8197-44b2-8d17-b5bf269c8ab7")


def render(source: str, **context) -> str:
    return engines["django"].from_string(source).render(context)


def test_the_tag_is_every_templates_url_tag():
    node = Template("{% url 'chats:detail' code %}").nodelist[0]
    assert isinstance(node, cached_urls.CachedURLNode)


def test_a_url_is_reversed_once_and_is_what_django_gives():
    urlcache.reversed_url.cache_clear()
    source = "{% url 'chats:send' code %}|{% url 'chats:older' code=code %}|{% url 'characters:gallery' %}"
    first = render(source, code=CODE)
    assert first == "|".join(
        [
            reverse("chats:send", args=[CODE]),
            reverse("chats:older", kwargs={"code": CODE}),
            reverse("characters:gallery"),
        ]
    )
    before = urlcache.reversed_url.cache_info()
    assert render(source, code=CODE) == first
    after = urlcache.reversed_url.cache_info()
    # All three from the cache: quoted names are SafeStrings, and must still be keys.
    assert (after.hits - before.hits, after.misses - before.misses) == (3, 0)
    other = uuid.uuid4()
    assert render("{% url 'chats:send' code %}", code=other) == reverse("chats:send", args=[other])
    # A quoted argument, as a template writes it, is reversed as Django reverses it, and kept.
    literal = "{% url 'chats:send' '" + str(other) + "' %}"
    assert render(literal) == reverse("chats:send", args=[str(other)])
    before = urlcache.reversed_url.cache_info().hits
    render(literal)
    assert urlcache.reversed_url.cache_info().hits == before + 1


def test_the_script_prefix_is_part_of_the_answer():
    try:
        set_script_prefix("/rp/")
        assert render("{% url 'chats:send' code %}", code=CODE) == f"/rp/chats/{CODE}/send/"
    finally:
        set_script_prefix("/")
    assert render("{% url 'chats:send' code %}", code=CODE) == f"/chats/{CODE}/send/"


def test_a_name_that_does_not_reverse_fails_every_time_and_as_var_still_works():
    for _ in range(2):
        with pytest.raises(NoReverseMatch):
            render("{% url 'chats:no-such-page' %}")
    assert render("{% url 'chats:no-such-page' as missing %}[{{ missing }}]") == "[]"
    assert render("{% url 'chats:send' code as here %}{{ here }}", code=CODE) == reverse(
        "chats:send", args=[CODE]
    )


def test_an_argument_that_cannot_be_a_key_goes_through_djangos_tag():
    assert render("{% url 'chats:send' codes.0 %}", codes=[CODE]) == reverse("chats:send", args=[CODE])
    with pytest.raises(NoReverseMatch):
        render("{% url 'chats:send' codes %}", codes=[CODE, CODE])


def test_the_output_is_escaped_as_djangos_is():
    context = Context({"q": "a&b"})
    assert Template("{% url 'characters:gallery' %}?q={{ q }}").render(context).endswith("?q=a&amp;b")


@override_settings(ROOT_URLCONF="tests.rpchat.request_threads_urls")
def test_a_changed_urlconf_is_not_answered_from_the_cache():
    with pytest.raises(NoReverseMatch):
        render("{% url 'characters:gallery' %}")


def test_equal_arguments_of_other_types_are_not_answered_from_the_cache():
    source = "{% url 'chats:message_edit' code seq %}"
    assert render(source, code=CODE, seq=1) == reverse("chats:message_edit", args=[CODE, 1])
    with pytest.raises(NoReverseMatch):  # Django writes True as "True", which is no seq
        render(source, code=CODE, seq=True)


def test_cached_reverse_gives_what_reverse_gives_and_keeps_it():
    """For the URLs code builds on every page: a chat's address, a reply's stream, an avatar."""
    urlcache.reversed_url.cache_clear()
    assert urlcache.cached_reverse("chats:message_stream", args=[CODE, 7]) == reverse(
        "chats:message_stream", args=[CODE, 7]
    )
    urlcache.cached_reverse("chats:message_stream", args=[CODE, 7])
    assert urlcache.reversed_url.cache_info().hits == 1
    try:
        set_script_prefix("/rp/")
        assert urlcache.cached_reverse("chats:detail", args=[CODE]) == f"/rp/chats/{CODE}/"
    finally:
        set_script_prefix("/")
    # An argument that is not a plain string, int or UUID is reversed by Django every time.
    lazy = SimpleLazyObject(lambda: str(CODE))
    assert urlcache.cached_reverse("chats:detail", args=[lazy]) == f"/chats/{CODE}/"
    assert urlcache.reversed_url.cache_info().currsize == 2
