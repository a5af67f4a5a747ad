"""Each message's HTML is cached under a digest of what its partial reads (chats/fragments.py):
the page is the same from the cache as rendered afresh, and every change a user makes shows."""

from __future__ import annotations

import re

import pytest
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from django.template import engines
from django.urls import reverse

from chats import fragments
from chats.models import Message
from core.cache_backends import clear_environment
from settings_app.models import SiteSettings
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db


def _messages_html(html: str) -> str:
    part = html[html.index('<div class="messages"') : html.index('id="load-newer"')]
    # A form in a message carries this response's CSRF token, masked afresh every time.
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', 'name="csrfmiddlewaretoken" value="-"', part)


def _article(html: str, seq: int) -> str:
    return re.search(rf'<article [^>]*id="m{seq}".*?</article>', html, re.S).group(0)


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Mira"), messages=12)


def test_the_message_partial_stays_cacheable():
    # A tag or filter the key cannot account for turns the cache off for the partial (every
    # message rendered every time, as before): whoever adds one should extend chats/fragments.py.
    found = fragments.plan()
    assert found is not None
    _source, paths = found
    assert ("message", "seq") in paths and ("session", "code") in paths and ("message", "content") in paths
    # And every variable it reads comes from a column of the message's row (fragments.COMPUTED),
    # so a page's keys are read without model instances.
    assert {"seq", "content", "version", "status", "role"} <= set(fragments.columns())


def test_a_page_from_rows_is_the_page_from_model_instances(rf, owner, chat, django_assert_num_queries):
    from chats import paging
    from chats.http import page_fields, render_messages, render_rows

    Message.objects.filter(session=chat, seq=4).update(hidden=True)
    request = rf.get(chat.get_absolute_url())
    request.user = owner
    by_rows = paging.messages_before(chat, fields=page_fields())
    by_instances = paging.messages_before(chat)
    csrf = re.compile(r'value="[^"]*"')
    cold = csrf.sub("", render_rows(request, chat, by_rows.messages))  # rendered from instances it loads
    with django_assert_num_queries(0):  # every message from the cache: no instances loaded
        warm = csrf.sub("", render_rows(request, chat, by_rows.messages))
    clear_environment()
    direct = csrf.sub("", render_messages(request, chat, by_instances.messages))
    assert cold == warm == direct
    assert direct.count("<article ") == 12 and "hidden-msg" in direct


def test_a_partial_given_what_it_reads_is_the_partial_given_the_message_itself(rf, owner, chat):
    """The partial is handed a dict of the attributes it reads (fragments._read), not the instance:
    the same HTML for every kind of message."""
    from django.template.context import make_context
    from django.template.loader import get_template

    from chats.http import prerender

    chat.show_reasoning = True
    chat.save(update_fields=["show_reasoning"])
    changes = {
        1: {"hidden": True},
        2: {"status": "error", "error": "The engine <b>refused</b>."},
        3: {"role": "assistant", "status": "incomplete", "content": "Half a"},
        4: {"status": "streaming", "content": "Typing so", "reasoning": "hmm"},
        6: {"reasoning": "Thinking it over", "reasoning_ms": 2500, "reasoning_tokens": 1},
        8: {"alternative_count": 3, "alternative_index": 1, "model_label": "tiny", "sampling_label": "t 0.8"},
        10: {"finish_reason": "length", "speaker": ""},
    }
    for seq, values in changes.items():
        Message.objects.filter(session=chat, seq=seq).update(**values)
    messages = list(Message.objects.for_page().filter(session=chat).order_by("seq"))
    request = rf.get(chat.get_absolute_url())
    request.user = owner
    prerender(request, chat, messages)
    template = get_template(fragments.TEMPLATE).template

    def partial(message) -> str:
        context = make_context({"session": chat, "csrf_token": fragments.csrf_placeholder()}, request)
        with context.bind_template(template), context.push(message=message):
            return str(template.render(context))

    for m in messages:
        assert partial(fragments._read(m)) == partial(m), m.seq
    assert isinstance(fragments._read(messages[0]), dict)
    shown = "".join(partial(fragments._read(m)) for m in messages)
    assert "hidden-msg" in shown and "The engine &lt;b&gt;refused&lt;/b&gt;." in shown
    assert "Thought for 2.5 s" in shown and 'class="swipe-pos">2/3<' in shown and "data-stream-url=" in shown


def test_the_page_from_the_cache_is_the_page_rendered_afresh(owner_client, chat):
    url = chat.get_absolute_url()
    first = _messages_html(owner_client.get(url).content.decode())
    assert _cached_fragments() in (12, None)
    second = _messages_html(owner_client.get(url).content.decode())
    # This environment's keys only: a flush of a shared Redis would empty the other test worker's
    # sessions and query cache in the middle of its query-count guards.
    clear_environment()
    fresh = _messages_html(owner_client.get(url).content.decode())
    assert first == second == fresh
    assert first.count("<article ") == 12


def _cached_fragments() -> int | None:
    """How many message fragments the local-memory cache holds (None on another backend)."""
    cache = caches["default"]
    if not isinstance(cache, LocMemCache):
        return None
    return sum("msgfrag" in key for key in cache._cache)


def test_an_edit_a_hide_and_an_error_show_on_the_next_page_load(owner_client, chat):
    url = chat.get_absolute_url()
    owner_client.get(url)  # cache every message
    last = Message.objects.get(session=chat, seq=12)
    response = owner_client.post(
        reverse("chats:message_edit", args=[chat.code, 12]),
        {"content": "A *new* line.", "version": last.version},
    )
    assert response.status_code == 200
    owner_client.post(reverse("chats:message_hide", args=[chat.code, 11]), {"hidden": "1", "version": 1})
    Message.objects.filter(session=chat, seq=10).update(
        status=Message.Status.ERROR, error="The engine fell over."
    )
    html = owner_client.get(url).content.decode()
    assert "A <em>new</em> line." in _article(html, 12)
    assert "hidden-msg" in _article(html, 11) and 'data-hidden="0"' in _article(html, 11)
    assert "The engine fell over." in _article(html, 10)
    assert "hidden-msg" not in _article(html, 9)


def test_the_site_setting_for_images_is_part_of_the_key(owner_client, owner):
    chat = make_chat(user=owner, character=make_character(), messages=0)
    Message.objects.create(
        session=chat, seq=1, role="user", speaker="me", content="![cat](https://example.com/c.png)"
    )
    url = chat.get_absolute_url()
    assert "<img" not in _article(owner_client.get(url).content.decode(), 1)
    site = SiteSettings.load()
    site.allow_external_media = True
    site.save()
    assert '<img src="https://example.com/c.png"' in _article(owner_client.get(url).content.decode(), 1)


def test_a_streaming_message_is_never_cached(owner_client, chat):
    Message.objects.filter(session=chat, seq=12).update(status=Message.Status.STREAMING, content="Half a")
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "is writing" in _article(html, 12)
    Message.objects.filter(session=chat, seq=12).update(content="Half a sentence")
    assert "Half a sentence" in _article(owner_client.get(chat.get_absolute_url()).content.decode(), 12)


@pytest.mark.parametrize(
    "source",
    [
        '{% include "chats/memory/pin_button.html" with x=1 %}',
        "{% include message.template_name %}",
        "{{ message.created_at|timesince }}",
        "{{ request.user.username }}",
        "{% for x in message.alternatives.all %}{{ x }}{% endfor %}",
    ],
)
def test_what_the_key_cannot_account_for_makes_a_partial_uncacheable(source):
    template = engines["django"].from_string("{% load rp %}" + source).template
    with pytest.raises(fragments.Uncacheable):
        for node in fragments._nodes(template.nodelist):
            for expression in fragments._expressions(node):
                fragments._paths(expression)


def test_a_form_in_a_cached_message_carries_this_responses_csrf_token(owner_client, chat):
    # The partial's {% csrf_token %} is cached as a placeholder and filled per response.
    url = chat.get_absolute_url()
    for _ in range(2):
        html = owner_client.get(url).content.decode()
        tokens = set(re.findall(r'name="csrfmiddlewaretoken" value="([^"]*)"', _messages_html_raw(html)))
        assert fragments.csrf_placeholder() not in html
        if tokens:
            assert len(tokens) == 1 and len(next(iter(tokens))) == 64


def _messages_html_raw(html: str) -> str:
    return html[html.index('<div class="messages"') : html.index('id="load-newer"')]


def test_a_page_seen_before_comes_whole_from_the_cache_without_a_key_per_message(
    owner_client, chat, monkeypatch
):
    url = chat.get_absolute_url()
    first = _messages_html(owner_client.get(url).content.decode())

    def no_row_keys(*args):
        raise AssertionError("the page was put together message by message")

    monkeypatch.setattr(fragments, "_row_key", no_row_keys)
    second = owner_client.get(url).content.decode()
    assert _messages_html(second) == first and first.count("<article ") == 12
    assert fragments.csrf_placeholder() not in second  # this response's token, filled in
    # A change to any message is a new page key: the edit shows.
    monkeypatch.undo()
    last = Message.objects.get(session=chat, seq=12)
    owner_client.post(
        reverse("chats:message_edit", args=[chat.code, 12]), {"content": "Changed.", "version": last.version}
    )
    assert "Changed." in _article(owner_client.get(url).content.decode(), 12)


def test_a_page_whose_message_changed_while_it_was_put_together_is_not_kept(rf, owner, chat):
    from chats import paging
    from chats.http import page_fields, render_rows

    request = rf.get(chat.get_absolute_url())
    request.user = owner
    rows = paging.messages_before(chat, fields=page_fields()).messages
    # Edited after the page's rows were read, before its messages were loaded to be rendered.
    Message.objects.filter(session=chat, seq=12).update(content="Written in between.")
    assert "Written in between." in render_rows(request, chat, rows)
    prefix = fragments._prefix(request, chat, fragments.plan())
    assert caches[fragments.PAGE_CACHE].get(fragments._page_key(prefix, fragments.columns(), rows)) is None
    # Read again, the page is kept under its new rows.
    rows = paging.messages_before(chat, fields=page_fields()).messages
    render_rows(request, chat, rows)
    assert (
        caches[fragments.PAGE_CACHE].get(fragments._page_key(prefix, fragments.columns(), rows)) is not None
    )


def test_a_page_bigger_than_the_limit_is_not_kept(rf, owner, chat, monkeypatch):
    from chats import paging
    from chats.http import page_fields, render_rows

    request = rf.get(chat.get_absolute_url())
    request.user = owner
    rows = paging.messages_before(chat, fields=page_fields()).messages
    prefix = fragments._prefix(request, chat, fragments.plan())
    key = fragments._page_key(prefix, fragments.columns(), rows)
    monkeypatch.setattr(fragments, "PAGE_MAX_BYTES", 100)  # compressed, this page is more
    assert render_rows(request, chat, rows).count("<article ") == 12
    assert caches[fragments.PAGE_CACHE].get(key) is None
    monkeypatch.undo()
    render_rows(request, chat, rows)
    assert caches[fragments.PAGE_CACHE].get(key) is not None
