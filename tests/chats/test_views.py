"""The chat list, chat page and older-page endpoint: keyset paging, constant queries, owner scoping."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from chats.models import ChatSession, Message
from tests.factories import add_messages, make_character, make_chat

pytestmark = pytest.mark.django_db


def seqs(html: str) -> list[int]:
    return [int(s) for s in re.findall(r'data-seq="(\d+)"', html)]


@pytest.fixture
def long_chat(owner):
    return make_chat(user=owner, character=make_character(name="Mira"), messages=120)


def test_a_chat_opens_at_its_newest_50_messages(owner_client, long_chat):
    response = owner_client.get(long_chat.get_absolute_url())
    html = response.content.decode()
    assert seqs(html) == list(range(71, 121))
    assert 'id="load-older"' in html and 'id="load-older" hidden' not in html
    assert 'data-oldest-seq="71"' in html


def test_load_older_walks_back_page_by_page_to_the_first_message(owner_client, long_chat):
    url = reverse("chats:older", args=[long_chat.code])
    seen = []
    before = 71
    while True:
        data = owner_client.get(url, {"before": before}).json()
        page = seqs(data["html"])
        seen = page + seen
        before = data["oldest_seq"]
        if not data["has_older"]:
            break
    assert seen == list(range(1, 71))


def test_the_chat_page_makes_the_same_queries_at_any_length(owner_client, owner, django_assert_num_queries):
    chat = make_chat(user=owner, character=make_character(), messages=60)
    owner_client.get(chat.get_absolute_url())  # warm the settings, session, user and model caches
    # the chat joined with its character, the newest page of messages (keyset); the chat's model
    # comes from the cache (chats.profiles.resolved_label: one query when it is not)
    with django_assert_num_queries(2):
        owner_client.get(chat.get_absolute_url())
    add_messages(chat, 3000)
    owner_client.get(chat.get_absolute_url())
    with django_assert_num_queries(2):
        response = owner_client.get(chat.get_absolute_url())
    assert seqs(response.content.decode())[-1] == 3060


def test_an_older_page_makes_the_same_queries_anywhere_in_the_chat(
    owner_client, owner, django_assert_num_queries
):
    chat = make_chat(user=owner, character=make_character(), messages=200)
    url = reverse("chats:older", args=[chat.code])
    owner_client.get(url, {"before": 150})
    # the chat, the page's ETag keys (seq, version, ...; no text), one keyset page as rows (each
    # message's HTML from the cache, by its row)
    with django_assert_num_queries(3):
        owner_client.get(url, {"before": 150})
    add_messages(chat, 3000)
    owner_client.get(url, {"before": 3000})
    with django_assert_num_queries(3):
        owner_client.get(url, {"before": 3000})
    # A page never shown yet: its messages are loaded as instances to be rendered, one query more.
    with django_assert_num_queries(4):
        assert seqs(owner_client.get(url, {"before": 51}).json()["html"]) == list(range(1, 51))
    with django_assert_num_queries(3):
        assert seqs(owner_client.get(url, {"before": 51}).json()["html"]) == list(range(1, 51))


def test_the_chat_list_shows_the_most_recent_chat_first_with_constant_queries(
    owner_client, owner, django_assert_num_queries
):
    older = make_chat(user=owner, character=make_character(name="Older"), messages=2)
    newer = make_chat(user=owner, character=make_character(name="Newer"), messages=2)
    owner_client.get(reverse("chats:list"))
    # one page of chats joined with their characters (no COUNT)
    with django_assert_num_queries(1):
        html = owner_client.get(reverse("chats:list")).content.decode()
    assert html.index(str(newer.code)) < html.index(str(older.code))
    for _ in range(40):
        make_chat(user=owner, character=make_character(), messages=1)
    owner_client.get(reverse("chats:list"))
    with django_assert_num_queries(1):
        html = owner_client.get(reverse("chats:list")).content.decode()
    assert 'rel="next"' in html


def test_another_user_gets_404_on_every_chat_url(client, other, long_chat):
    client.force_login(other)
    code = long_chat.code
    gets = [
        reverse("chats:detail", args=[code]),
        reverse("chats:older", args=[code]) + "?before=50",
        reverse("chats:message_stream", args=[code, 1]),
    ]
    posts = [
        reverse("chats:send", args=[code]),
        reverse("chats:message_stop", args=[code, 1]),
        reverse("chats:message_retry", args=[code, 1]),
        reverse("chats:message_swipe", args=[code, 1]),
    ]
    for url in gets:
        assert client.get(url).status_code == 404, url
    for url in posts:
        assert client.post(url, {"content": "hi", "index": 0, "version": 1}).status_code == 404, url
    assert str(code) not in client.get(reverse("chats:list")).content.decode()
    assert Message.objects.filter(session=long_chat).count() == 120


MESSAGE_ACTIONS = [
    "chats:message_edit",
    "chats:message_hide",
    "chats:message_delete",
    "chats:message_branch",
    "chats:message_pin",
    "chats:message_stop",
]


def test_every_message_action_is_404_for_another_user_a_trashed_chat_or_a_missing_message(
    client, owner_client, other, long_chat
):
    """The message and its chat are read in one query scoped to the user: another user's chat, a
    chat in the trash and a seq it does not have are all 404, and nothing is changed."""
    code = long_chat.code
    before = list(
        Message.objects.filter(session=long_chat).values_list("seq", "content", "version", "hidden")
    )
    form = {"content": "taken over", "version": 1, "hidden": "1", "and_after": "1"}
    client.force_login(other)
    for name in MESSAGE_ACTIONS:
        assert client.post(reverse(name, args=[code, 1]), form).status_code == 404, name
    for seq in (999, 2**31, 2**63):
        for name in MESSAGE_ACTIONS:
            assert owner_client.post(reverse(name, args=[code, seq]), form).status_code == 404, (name, seq)
    long_chat.deleted_at = timezone.now()
    long_chat.save(update_fields=["deleted_at"])
    for name in MESSAGE_ACTIONS:
        assert owner_client.post(reverse(name, args=[code, 1]), form).status_code == 404, name
    after = list(Message.objects.filter(session=long_chat).values_list("seq", "content", "version", "hidden"))
    assert after == before
    assert ChatSession.objects.filter(user=other).count() == 0  # no branch made for the intruder


def test_anonymous_visitors_are_sent_to_log_in(client, long_chat):
    for url in (
        reverse("chats:list"),
        long_chat.get_absolute_url(),
        reverse("chats:message_stream", args=[long_chat.code, 1]),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_starting_a_chat_puts_the_greeting_first_with_alternates_as_swipes(owner_client, owner):
    character = make_character(
        name="Wren",
        first_message="Welcome, {{user}}!",
        alternate_greetings=["Who sent you, {{user}}?", "Tea?"],
    )
    response = owner_client.post(reverse("chats:new", args=[character.code]))
    chat = owner.chatsession_set.get()
    assert response["Location"] == chat.get_absolute_url()
    greeting = chat.messages.get()
    assert (greeting.seq, greeting.role, greeting.content) == (1, "assistant", "Welcome, olivia!")
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "1/3" in html

    swipe = reverse("chats:message_swipe", args=[chat.code, 1])
    data = owner_client.post(swipe, {"index": 1, "version": greeting.version}).json()
    assert "Who sent you, olivia?" in data["html"] and "2/3" in data["html"]
    stale = owner_client.post(swipe, {"index": 2, "version": greeting.version})
    assert stale.status_code == 409
    greeting.refresh_from_db()
    assert greeting.content == "Who sent you, olivia?"


def test_a_private_character_of_someone_else_cannot_be_chatted_with(client, other, owner):
    private = make_character(owner=owner, public=False)
    client.force_login(other)
    assert client.post(reverse("chats:new", args=[private.code])).status_code == 404


def test_message_text_is_rendered_as_safe_markdown(owner_client, owner):
    chat = make_chat(user=owner, character=make_character(), messages=0)
    add_messages(chat, 1, text='*waves* "Hi" <script>alert(1)</script> <img src=x onerror=alert(1)>')
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "<em>waves</em>" in html
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html


def test_an_edited_message_never_shows_its_old_rendering(owner_client, owner):
    from chats import services

    chat = make_chat(user=owner, character=make_character(), messages=3, text="*before* {seq}")
    assert "<em>before</em> 2" in owner_client.get(chat.get_absolute_url()).content.decode()  # cached now
    message = chat.messages.get(seq=2)
    services.message_edit(message=message, content="**after**", version=message.version)
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "<strong>after</strong>" in html and "<em>before</em> 2" not in html
    older = owner_client.get(reverse("chats:older", args=[chat.code]), {"before": 3}).json()["html"]
    assert "<strong>after</strong>" in older


def test_a_cached_rendering_is_found_by_its_text_not_by_the_label_asking_for_it():
    """Ids are handed out again after a restore: whatever asks under an old label gets its own text."""
    from core.markdown import render_cached

    assert "<em>a secret</em>" in render_cached({"7.1": "*a secret*"})["7.1"]
    html = render_cached({"7.1": "Bob says hi"})["7.1"]
    assert "Bob says hi" in html and "secret" not in html


def test_a_message_number_past_any_column_is_a_404_not_a_database_error(owner_client, long_chat):
    for seq in (2**31, 2**63, 10**30):
        for action in ("message_edit", "message_swipe", "message_delete"):
            url = reverse(f"chats:{action}", args=[long_chat.code, seq])
            assert owner_client.post(url, {"content": "x", "index": 0, "version": 1}).status_code == 404
    url = reverse("chats:message_edit", args=[long_chat.code, 120])
    version = Message.objects.get(session=long_chat, seq=120).version
    assert owner_client.post(url, {"content": "Still editable.", "version": version}).status_code == 200
    assert Message.objects.get(session=long_chat, seq=120).content == "Still editable."
