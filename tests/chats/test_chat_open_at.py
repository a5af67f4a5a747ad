"""The chat page opened at a message (?at=<seq>, where search results link): the page around it,
the message marked, older and newer pages from there, and the same queries at any length."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.factories import add_messages, make_character, make_chat

pytestmark = pytest.mark.django_db


def seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]


@pytest.fixture
def long_chat(owner):
    return make_chat(user=owner, character=make_character(name="Mira"), messages=300)


def test_the_chat_opens_around_the_message_with_it_marked_for_the_script(owner_client, long_chat):
    html = owner_client.get(long_chat.get_absolute_url(), {"at": 120}).content.decode()
    shown = seqs(html)
    assert 120 in shown and len(shown) == 50 and shown == sorted(shown)
    assert shown[0] < 120 < shown[-1]
    assert 'data-at="120"' in html and 'id="m120"' in html
    assert f'data-oldest-seq="{shown[0]}"' in html and f'data-newest-seq="{shown[-1]}"' in html
    assert 'data-has-newer="1"' in html and 'id="newer" hidden' not in html
    assert "Jump to the newest" in html


def test_older_and_newer_pages_continue_from_there_to_both_ends(owner_client, long_chat):
    html = owner_client.get(long_chat.get_absolute_url(), {"at": 120}).content.decode()
    shown = seqs(html)
    oldest, newest = shown[0], shown[-1]
    while True:
        data = owner_client.get(reverse("chats:older", args=[long_chat.code]), {"before": oldest}).json()
        shown = seqs(data["html"]) + shown
        oldest = data["oldest_seq"]
        if not data["has_older"]:
            break
    while True:
        data = owner_client.get(reverse("chats:newer", args=[long_chat.code]), {"after": newest}).json()
        shown += seqs(data["html"])
        newest = data["newest_seq"]
        if not data["has_newer"]:
            break
    assert shown == list(range(1, 301))


def test_near_the_start_or_the_end_the_page_is_still_full(owner_client, long_chat):
    start = seqs(owner_client.get(long_chat.get_absolute_url(), {"at": 3}).content.decode())
    assert start == list(range(1, 51))
    end_html = owner_client.get(long_chat.get_absolute_url(), {"at": 299}).content.decode()
    assert seqs(end_html)[-1] == 300 and 'data-has-newer="0"' in end_html


def test_without_a_usable_at_the_chat_opens_at_its_newest_messages(owner_client, long_chat):
    for at in ("", "abc"):
        html = owner_client.get(long_chat.get_absolute_url(), {"at": at}).content.decode()
        assert seqs(html) == list(range(251, 301)) and "data-at=" not in html


def test_opening_at_a_message_makes_the_same_queries_at_any_length(
    owner_client, owner, django_assert_num_queries
):
    chat = make_chat(user=owner, character=make_character(), messages=100)
    owner_client.get(chat.get_absolute_url(), {"at": 50})
    # the chat joined with its character, the messages up to it, the messages after it (the
    # chat's model comes from the cache: chats.profiles.resolved_label)
    with django_assert_num_queries(3):
        owner_client.get(chat.get_absolute_url(), {"at": 50})
    add_messages(chat, 3000)
    with django_assert_num_queries(3):
        html = owner_client.get(chat.get_absolute_url(), {"at": 1500}).content.decode()
    assert 1500 in seqs(html)


def test_another_user_cannot_open_the_chat_at_a_message(client, other, long_chat):
    client.force_login(other)
    assert client.get(long_chat.get_absolute_url(), {"at": 5}).status_code == 404
    assert client.get(reverse("chats:newer", args=[long_chat.code]), {"after": 5}).status_code == 404
