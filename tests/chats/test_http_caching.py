"""ETags on message pages (chats:older, chats:newer and the API's pages): a page is 304 while its
rows are unchanged, and any edit, swipe, hide or delete inside it gives a new ETag."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from chats.models import Message
from settings_app.auth import api_token_create
from tests.factories import add_messages, make_character, make_chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Mira"), messages=160)


@pytest.fixture(params=["older", "api"])
def page_url(request, chat):
    """An older page (seq 50..99) as the chat page loads it, and as the API serves it."""
    if request.param == "older":
        return reverse("chats:older", args=[chat.code]) + "?before=100"
    return reverse("api:messages", args=[chat.code]) + "?before=100"


def get(client, url, etag=None):
    return client.get(url, HTTP_IF_NONE_MATCH=etag) if etag else client.get(url)


def test_an_unchanged_page_is_304_with_private_revalidation(owner_client, page_url):
    first = get(owner_client, page_url)
    assert first.status_code == 200 and first["ETag"]
    assert first["Cache-Control"] == "private, no-cache"
    assert "Cookie" in first["Vary"]
    again = get(owner_client, page_url, first["ETag"])
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == first["ETag"] and again["Cache-Control"] == "private, no-cache"


def test_new_messages_at_the_end_do_not_change_an_older_page(owner_client, chat, page_url):
    first = get(owner_client, page_url)
    add_messages(chat, 10)
    assert get(owner_client, page_url, first["ETag"]).status_code == 304


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda rows: rows.filter(seq=75).update(content="Edited.", version=2), id="edit"),
        pytest.param(lambda rows: rows.filter(seq=75).update(alternative_index=1, version=2), id="swipe"),
        pytest.param(lambda rows: rows.filter(seq=99).update(hidden=True), id="hide"),
        pytest.param(lambda rows: rows.filter(seq=60).delete(), id="delete"),
        # The row just past the page decides whether there is an older page.
        pytest.param(lambda rows: rows.filter(seq__lt=50).delete(), id="delete-everything-older"),
        pytest.param(
            lambda rows: rows.filter(seq=99).update(content="more", updated_at=timezone.now()),
            id="streamed-text",
        ),
    ],
)
def test_a_change_inside_the_page_changes_its_etag(owner_client, chat, page_url, change):
    first = get(owner_client, page_url)
    change(Message.objects.filter(session=chat))
    changed = get(owner_client, page_url, first["ETag"])
    assert changed.status_code == 200
    assert changed["ETag"] != first["ETag"]
    assert get(owner_client, page_url, changed["ETag"]).status_code == 304


def test_a_change_outside_the_page_keeps_it_304(owner_client, chat, page_url):
    first = get(owner_client, page_url)
    Message.objects.filter(session=chat, seq__in=[10, 120]).update(content="Edited.", version=2)
    assert get(owner_client, page_url, first["ETag"]).status_code == 304


def test_a_304_costs_the_chat_and_one_small_query(owner_client, chat, page_url, django_assert_num_queries):
    etag = get(owner_client, page_url)["ETag"]
    # the chat, the page's keys (seq, version, status, hidden, updated_at; no text)
    with django_assert_num_queries(2):
        assert get(owner_client, page_url, etag).status_code == 304
    add_messages(chat, 3000)
    with django_assert_num_queries(2):
        assert get(owner_client, page_url, etag).status_code == 304


def test_another_user_with_the_etag_still_gets_404(client, owner_client, other, page_url):
    etag = get(owner_client, page_url)["ETag"]
    client.force_login(other)
    assert client.get(page_url, HTTP_IF_NONE_MATCH=etag).status_code == 404


def test_token_clients_get_304_and_responses_vary_on_authorization(client, owner, chat):
    _, raw = api_token_create(user=owner, name="sync")
    url = reverse("api:messages", args=[chat.code])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    first = client.get(url, **auth)
    assert "Authorization" in first["Vary"]
    again = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"], **auth)
    assert again.status_code == 304 and "Authorization" in again["Vary"]
    # The newest page changes with each new message.
    add_messages(chat, 1)
    assert client.get(url, HTTP_IF_NONE_MATCH=first["ETag"], **auth).status_code == 200


def test_the_newer_fragment_is_cached_the_same_way(owner_client, chat):
    url = reverse("chats:newer", args=[chat.code]) + "?after=100"
    first = owner_client.get(url)
    assert first.json()["newest_seq"] == 150 and first.json()["has_newer"] is True
    assert owner_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    Message.objects.filter(session=chat, seq=101).update(version=5)
    assert owner_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 200
