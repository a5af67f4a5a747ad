"""/api/chats/, one chat, its message pages and message search: keyset pages both ways, the fields
a client needs, constant queries, owner scoping and JSON errors."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from chats import generation, paging, services
from chats.api import ChatPage, MessagePage
from chats.models import Message
from settings_app.auth import api_token_create
from tests.factories import add_messages, make_character, make_chat

pytestmark = pytest.mark.django_db

MESSAGE_FIELDS = {
    "seq",
    "role",
    "speaker",
    "content",
    "reasoning",
    "status",
    "version",
    "hidden",
    "alternative_index",
    "alternative_count",
    "model_label",
    "sampling_label",
    "created_at",
}


@pytest.fixture
def long_chat(owner):
    return make_chat(user=owner, character=make_character(name="Mira"), messages=120)


def seqs(data) -> list[int]:
    return [m["seq"] for m in data["messages"]]


def test_the_chat_list_shows_only_the_users_chats_most_recent_first(
    client, owner, other, django_assert_num_queries
):
    mira, wren = make_character(name="Mira"), make_character(name="Wren")
    older = make_chat(user=owner, character=mira, messages=2)
    newer = make_chat(user=owner, character=wren, messages=2)
    make_chat(user=other, character=mira, messages=2)
    client.force_login(owner)
    url = reverse("api:chats")
    client.get(reverse("api:characters"))  # the session's user is cached from here on
    # one page of chats joined with their characters (no COUNT)
    with django_assert_num_queries(1):
        data = client.get(url).json()
    assert [c["code"] for c in data["results"]] == [str(newer.code), str(older.code)]
    assert data["results"][0]["character"] == {"code": str(wren.code), "name": "Wren"}
    assert [c["code"] for c in client.get(url, {"character": mira.code}).json()["results"]] == [
        str(older.code)
    ]
    assert client.get(url, {"character": "not-a-uuid"}).status_code == 400
    for _ in range(80):
        make_chat(user=owner, character=mira, messages=1)
    with django_assert_num_queries(1):
        data = client.get(url).json()
    assert data["next"] == f"{url}?page=2" and data["previous"] is None
    assert len(client.get(data["next"]).json()["results"]) == 32


def test_the_newest_page_comes_newest_first_and_older_links_walk_back_to_the_start(owner_client, long_chat):
    url = reverse("api:messages", args=[long_chat.code])
    data = owner_client.get(url).json()
    assert seqs(data) == list(range(120, 70, -1))
    assert set(data["messages"][0]) == MESSAGE_FIELDS
    assert data["newer"] == f"{url}?after=120" and data["has_more"] is True
    seen = seqs(data)
    while data["older"]:
        data = owner_client.get(data["older"]).json()
        seen += seqs(data)
    assert seen == list(range(120, 0, -1))
    assert data["has_more"] is False


def test_after_pages_come_oldest_first_and_newer_links_walk_forward(owner_client, long_chat):
    url = reverse("api:messages", args=[long_chat.code])
    data = owner_client.get(url, {"after": 0}).json()
    assert seqs(data) == list(range(1, 51))
    seen = seqs(data)
    while data["has_more"]:
        data = owner_client.get(data["newer"]).json()
        seen += seqs(data)
    assert seen == list(range(1, 121))
    # Polling the last "newer" link shows new messages as they come.
    add_messages(long_chat, 2)
    assert seqs(owner_client.get(data["newer"]).json()) == [121, 122]


def test_bad_page_parameters_are_json_errors(owner_client, long_chat):
    url = reverse("api:messages", args=[long_chat.code])
    for params in ({"before": "x"}, {"after": "-1"}, {"before": 5, "after": 1}):
        response = owner_client.get(url, params)
        assert response.status_code == 400, params
        assert response.json()["error"]
    response = owner_client.post(url)
    assert response.status_code in (403, 405)


def test_a_message_page_makes_the_same_queries_anywhere_in_a_chat_of_any_length(
    owner_client, owner, django_assert_num_queries
):
    chat = make_chat(user=owner, character=make_character(), messages=200)
    url = reverse("api:messages", args=[chat.code])
    owner_client.get(reverse("api:chat", args=[chat.code]))  # the session's user is cached from here on
    # First time: the chat's id, the page's keys (its ETag), the page; asked again, the body
    # comes from the cache under that ETag.
    for params in ({}, {"before": 150}, {"after": 20}):
        with django_assert_num_queries(3):
            first = owner_client.get(url, params).content
        with django_assert_num_queries(2):
            assert owner_client.get(url, params).content == first
    add_messages(chat, 3000)
    for params in ({}, {"before": 3000}, {"before": 51}, {"after": 1500}):
        with django_assert_num_queries(3):
            data = owner_client.get(url, params).json()
        with django_assert_num_queries(2):
            etag = owner_client.get(url, params)["ETag"]
        # Revalidating reads the page's keys only; unchanged, that is all (a 304).
        with django_assert_num_queries(2):
            assert owner_client.get(url, params, HTTP_IF_NONE_MATCH=etag).status_code == 304
        # An ETag that is not the page's: the keys, and the body from the cache.
        with django_assert_num_queries(2):
            assert owner_client.get(url, params, HTTP_IF_NONE_MATCH='"stale"').json() == data
    assert seqs(data) == list(range(1501, 1551))


def test_a_page_body_is_what_the_documented_schema_gives(owner_client, owner):
    """The page is written by orjson, not by ninja's validation pass: it must still be exactly what
    the MessagePage schema documents, datetimes as the API has always written them."""
    chat = make_chat(user=owner, character=make_character(), messages=60)
    url = reverse("api:messages", args=[chat.code])
    for params in ({}, {"before": 20}, {"after": 55}):
        data = owner_client.get(url, params).json()
        assert MessagePage.model_validate(data).model_dump(mode="json") == data
        newest = Message.objects.get(session=chat, seq=data["messages"][0]["seq"])
        assert data["messages"][0]["created_at"] == newest.created_at.isoformat()


def test_the_chat_list_body_is_what_the_documented_schema_gives(owner_client, owner, settings):
    """The list is written by orjson, not by ninja's validation pass: it must still be exactly what
    the ChatPage schema documents, on every page and filter."""
    settings.RPCHAT = {**settings.RPCHAT, "API_PAGE_SIZE": 2}
    mira = make_character(name="Mira")
    made = [make_chat(user=owner, character=mira, messages=2) for _ in range(3)]
    url = reverse("api:chats")
    for params in ({}, {"character": str(mira.code)}, {"page": 2}):
        data = owner_client.get(url, params).json()
        assert ChatPage.model_validate(data).model_dump(mode="json") == data
        assert data["results"]
    first = owner_client.get(url).json()
    assert first["next"] == f"{url}?page=2" and first["previous"] is None
    newest = next(c for c in made if str(c.code) == first["results"][0]["code"])
    assert first["results"][0]["last_message_at"] == newest.last_message_at.isoformat()


@pytest.mark.django_db(transaction=True)
def test_a_cached_page_never_outlives_an_edit_a_reply_in_progress_or_a_delete(owner_client, owner):
    chat = make_chat(user=owner, character=make_character(), messages=60)
    url = reverse("api:messages", args=[chat.code])

    def text_of(seq):
        return {m["seq"]: m["content"] for m in owner_client.get(url).json()["messages"]}.get(seq)

    owner_client.get(url)
    newest = Message.objects.get(session=chat, seq=60)
    services.message_edit(message=newest, content="Edited by hand.", version=newest.version)
    assert text_of(60) == "Edited by hand."
    Message.objects.filter(pk=newest.pk).update(status=Message.Status.STREAMING)
    owner_client.get(url)
    # As a reply being written saves its progress, from the generation loop's own thread.
    async_to_sync(generation._save_progress)(newest.pk, "Half a repl", "")
    assert text_of(60) == "Half a repl"
    async_to_sync(generation._save_progress)(newest.pk, "Half a reply, then all of it.", "")
    assert text_of(60) == "Half a reply, then all of it."
    services.message_delete(message=Message.objects.get(session=chat, seq=59))
    assert text_of(59) is None


def test_the_chat_detail_gives_counts_and_links(owner_client, long_chat):
    data = owner_client.get(reverse("api:chat", args=[long_chat.code])).json()
    assert data["message_count"] == 120 and data["last_seq"] == 120
    assert data["messages_url"] == reverse("api:messages", args=[long_chat.code])
    assert data["web_url"] == long_chat.get_absolute_url()


def test_another_user_gets_404_from_every_chat_url_with_a_session_or_a_token(client, other, long_chat):
    _, raw = api_token_create(user=other, name="cli")
    urls = [
        reverse("api:chat", args=[long_chat.code]),
        reverse("api:messages", args=[long_chat.code]),
        reverse("api:messages", args=[long_chat.code]) + "?before=50",
        reverse("api:search_messages") + f"?q=message&chat={long_chat.code}",
    ]
    for url in urls:
        assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 404, url
    client.force_login(other)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.json()["error"]
    assert client.get(reverse("api:search_messages"), {"q": "message"}).json()["results"] == []
    assert client.get(reverse("api:chats")).json()["results"] == []


def test_anonymous_visitors_get_401_from_every_chat_url(client, long_chat):
    for url in (
        reverse("api:chats"),
        reverse("api:chat", args=[long_chat.code]),
        reverse("api:messages", args=[long_chat.code]),
        reverse("api:search_messages") + "?q=x",
    ):
        response = client.get(url)
        assert response.status_code == 401, url
        assert response.json()["error"]


def test_message_search_pages_and_links_to_the_chat_at_the_message(
    owner_client, owner, django_assert_num_queries
):
    chat = make_chat(user=owner, character=make_character(name="Mira"), messages=30, text="Lantern {seq}")
    url = reverse("api:search_messages")
    # the user, the search
    with django_assert_num_queries(2):
        data = owner_client.get(url, {"q": "lantern", "limit": 10}).json()
    assert [r["seq"] for r in data["results"]] == list(range(30, 20, -1))
    hit = data["results"][0]
    assert hit["web_url"] == f"/chats/{chat.code}/?at=30#m30"
    assert hit["chat"]["code"] == str(chat.code) and hit["character"]["name"] == "Mira"
    assert "<mark>Lantern</mark>" in hit["snippet"]
    following = owner_client.get(data["next"]).json()
    assert [r["seq"] for r in following["results"]] == list(range(20, 10, -1))
    assert owner_client.get(url).status_code == 400


def test_a_hidden_or_edited_message_shows_its_state(owner_client, owner):
    chat = make_chat(user=owner, character=make_character(), messages=3)
    Message.objects.filter(session=chat, seq=2).update(hidden=True, version=4, content="Edited.")
    message = next(
        m
        for m in owner_client.get(reverse("api:messages", args=[chat.code])).json()["messages"]
        if m["seq"] == 2
    )
    assert (message["hidden"], message["version"], message["content"]) == (True, 4, "Edited.")


def test_the_chat_detail_makes_the_same_queries_at_any_length(owner_client, owner, django_assert_num_queries):
    chat = make_chat(user=owner, character=make_character(), messages=10)
    url = reverse("api:chat", args=[chat.code])
    owner_client.get(reverse("api:characters"))  # the session's user is cached from here on
    # the chat joined with its character
    with django_assert_num_queries(1):
        owner_client.get(url)
    add_messages(chat, 3000)
    with django_assert_num_queries(1):
        assert owner_client.get(url).json()["message_count"] == 3010


def test_parameters_out_of_range_are_400s_that_name_the_parameter_never_500s(owner_client, owner):
    chat = make_chat(user=owner, character=make_character(name="Mira"), messages=3, text="Lantern {seq}")
    messages = reverse("api:messages", args=[chat.code])
    search = reverse("api:search_messages")
    too_big = str(2**63)  # one past what a 64-bit column holds
    for url, params, name in [
        (messages, {"before": too_big}, "before"),
        (messages, {"after": "1" * 25}, "after"),
        (search, {"q": "lantern", "before": too_big}, "before"),
        (search, {"q": "lantern", "before": "9" * 25}, "before"),
        (search, {"q": "lantern", "before": "-1"}, "before"),
        (search, {"q": "lantern", "limit": "0"}, "limit"),
        (search, {"q": "lantern", "limit": "9" * 25}, "limit"),
        (search, {"q": "lantern", "chat": "not-a-code"}, "chat"),
        (reverse("api:chats"), {"page": "0"}, "page"),
        (reverse("api:chats"), {"page": "9" * 25}, "page"),
    ]:
        response = owner_client.get(url, params)
        assert response.status_code == 400, (url, params)
        assert response.json()["error"].startswith(f"{name}: "), response.json()
    # The largest value is still a cursor: the whole chat is before it.
    assert seqs(owner_client.get(messages, {"before": 2**63 - 1}).json()) == [3, 2, 1]
    hits = owner_client.get(search, {"q": "lantern", "before": 2**63 - 1}).json()["results"]
    assert [hit["seq"] for hit in hits] == [3, 2, 1]


def test_an_empty_parameter_counts_as_not_given(owner_client, owner):
    chat = make_chat(user=owner, character=make_character(name="Mira"), messages=3)
    data = owner_client.get(reverse("api:chats"), {"character": "", "page": ""}).json()
    assert [c["code"] for c in data["results"]] == [str(chat.code)]
    messages = reverse("api:messages", args=[chat.code])
    assert seqs(owner_client.get(messages, {"before": "", "after": ""}).json()) == [3, 2, 1]


def test_a_page_read_while_messages_arrive_is_kept_under_its_own_rows(owner_client, owner, monkeypatch):
    """A send commits between the page's keys and its body; the two new messages are then deleted,
    so the keys are those of the first read again. The page must not bring them back."""
    chat = make_chat(user=owner, character=make_character(), messages=60)
    url = reverse("api:messages", args=[chat.code])
    page_etag = paging.page_etag

    def keys_then_a_send(*args, **kwargs):
        etag = page_etag(*args, **kwargs)
        add_messages(chat, 2)
        return etag

    monkeypatch.setattr(paging, "page_etag", keys_then_a_send)
    assert seqs(owner_client.get(url, {"after": 58}).json()) == [59, 60, 61, 62]
    monkeypatch.setattr(paging, "page_etag", page_etag)
    services.message_delete(message=Message.objects.get(session=chat, seq=61), and_after=True)
    assert seqs(owner_client.get(url, {"after": 58}).json()) == [59, 60]
    assert seqs(owner_client.get(url).json())[:2] == [60, 59]


def test_a_page_with_a_reply_being_written_is_not_kept(owner_client, owner, django_assert_num_queries):
    chat = make_chat(user=owner, character=make_character(), messages=10)
    Message.objects.filter(session=chat, seq=10).update(status=Message.Status.STREAMING)
    url = reverse("api:messages", args=[chat.code])
    owner_client.get(reverse("api:chat", args=[chat.code]))
    for _ in range(2):
        with django_assert_num_queries(3):  # the id, the keys, the page: never from the cache
            owner_client.get(url)
