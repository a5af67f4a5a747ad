"""Query-count guards for the chat endpoints the page calls: send, swipe, stop, retry, and the reply
stream once the reply is finished. Each makes the same queries in a chat of 40 and of 3,040 messages."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chats import generation
from chats.models import Message, MessageAlternative
from core import metrics
from tests.factories import add_messages, make_character, make_chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Mira"), messages=40)


def _finish_replies(chat) -> None:
    """The reply a send leaves streaming (no generation runs inside a test transaction)."""
    Message.objects.filter(session=chat, status=Message.Status.STREAMING).update(
        status=Message.Status.COMPLETE
    )


def test_sending_makes_the_same_queries_at_any_chat_length(owner_client, chat, django_assert_num_queries):
    url = reverse("chats:send", args=[chat.code])
    owner_client.post(url, {"content": "warm"})
    _finish_replies(chat)
    # the chat with its character; in one transaction (savepoint here): lock the chat's
    # seq counter, bump it, check no reply is streaming, insert the message and the empty reply
    # (one INSERT of both)
    with django_assert_num_queries(7):
        response = owner_client.post(url, {"content": "Hello"})
    assert response.status_code == 200
    _finish_replies(chat)
    chat.refresh_from_db()
    add_messages(chat, 3000)
    with django_assert_num_queries(7):
        response = owner_client.post(url, {"content": "Hello again"})
    assert response.json()["reply_seq"] == 3046


def test_a_double_click_costs_one_lookup_more_not_a_second_message(
    owner_client, chat, django_assert_num_queries
):
    url = reverse("chats:send", args=[chat.code])
    owner_client.post(url, {"content": "Hello", "client_token": "tok-1"})
    # the chat, the message sent with this token, the reply after it
    with django_assert_num_queries(3):
        again = owner_client.post(url, {"content": "Hello", "client_token": "tok-1"})
    assert again.status_code == 200
    assert Message.objects.filter(session=chat, role="user", content="Hello").count() == 1


def _with_swipes(chat, seq: int) -> Message:
    message = Message.objects.get(session=chat, seq=seq)
    MessageAlternative.objects.bulk_create(
        MessageAlternative(message=message, index=i, content=f"Take {i}") for i in range(3)
    )
    Message.objects.filter(pk=message.pk).update(alternative_count=3)
    return Message.objects.get(pk=message.pk)


def test_a_swipe_makes_the_same_queries_at_any_chat_length(owner_client, chat, django_assert_num_queries):
    message = _with_swipes(chat, 40)
    url = reverse("chats:message_swipe", args=[chat.code, 40])
    owner_client.post(url, {"index": 1, "version": message.version})
    message.refresh_from_db()
    # the message with its chat (one query); savepoint, the alternative, the update, the summary
    # covering it marked stale; release; re-read
    with django_assert_num_queries(7):
        data = owner_client.post(url, {"index": 2, "version": message.version}).json()
    assert "Take 2" in data["html"]
    chat.refresh_from_db()
    add_messages(chat, 3000)
    message.refresh_from_db()
    with django_assert_num_queries(7):
        owner_client.post(url, {"index": 0, "version": message.version})


def test_stop_and_retry_make_the_same_queries_at_any_chat_length(
    owner_client, chat, django_assert_num_queries
):
    Message.objects.filter(session=chat, seq=40).update(status=Message.Status.ERROR, error="down")
    stop = reverse("chats:message_stop", args=[chat.code, 40])
    retry = reverse("chats:message_retry", args=[chat.code, 40])
    owner_client.post(retry)  # warm the settings cache
    Message.objects.filter(session=chat, seq=40).update(status=Message.Status.ERROR)
    # the message with its chat (one query)
    with django_assert_num_queries(1):
        assert owner_client.post(stop).json() == {"stopping": False}
    # the message with its chat; savepoint, no reply streaming, the update; release; re-read
    with django_assert_num_queries(6):
        assert owner_client.post(retry).json()["stream_url"]
    add_messages(chat, 3000)
    Message.objects.filter(session=chat, seq=40).update(status=Message.Status.ERROR)
    with django_assert_num_queries(1):
        owner_client.post(stop)
    with django_assert_num_queries(6):
        owner_client.post(retry)


def _stream_queries(owner, chat, seq: int) -> tuple[int, str]:
    """Queries of the stream endpoint, before the response (its Server-Timing) and while streaming."""
    aclient = AsyncClient()
    aclient.force_login(owner)
    url = reverse("chats:message_stream", args=[chat.code, seq])

    async def consume():
        response = await aclient.get(url)
        body = b""
        async for chunk in response.streaming_content:
            body += chunk if isinstance(chunk, bytes) else chunk.encode()
        return response["Server-Timing"], body.decode()

    stats, token = metrics.begin_request()  # counts what runs while the body streams
    try:
        timing, body = async_to_sync(consume)()
    finally:
        metrics.end_request(token)
    before = int(timing.split('desc="')[1].split(" ")[0])
    return before + stats.queries, body


@pytest.mark.django_db(transaction=True)
def test_following_a_finished_reply_makes_the_same_queries_at_any_chat_length(owner, chat):
    _stream_queries(owner, chat, 40)  # warm the session, settings and user caches
    # before the response: the session, the chat, the message (the user comes from the cache, as
    # on the sync pages); while streaming: the message's final row (rendered into the "done" event)
    queries, body = _stream_queries(owner, chat, 40)
    assert queries == 4
    assert body.startswith("retry: 1000") and "event: done" in body and "Message 40" in body
    add_messages(chat, 3000)
    assert _stream_queries(owner, chat, 40)[0] == 4


def test_an_edit_makes_the_same_queries_at_any_length_and_shows_the_new_text(owner_client, owner):
    chat = make_chat(user=owner, character=make_character(), messages=20)
    url = reverse("chats:message_edit", args=[chat.code, 20])

    def version():
        return Message.objects.get(session=chat, seq=20).version

    owner_client.post(url, {"content": "warm", "version": version()})
    data = {"content": "A *short* chat.", "version": version()}
    with CaptureQueriesContext(connection) as short:
        response = owner_client.post(url, data)
    assert response.json() == {
        "content_html": "<p>A <em>short</em> chat.</p>\n",
        "version": data["version"] + 1,
    }
    # What the page shows in the message's place once reloaded.
    assert (
        '<div class="content prose"><p>A <em>short</em> chat.</p>\n</div>'
        in owner_client.get(chat.get_absolute_url()).content.decode()
    )
    add_messages(chat, 3000)
    data = {"content": "A long chat.", "version": version()}
    with CaptureQueriesContext(connection) as long:
        owner_client.post(url, data)
    # the message with its chat (one query); in a savepoint here: the versioned UPDATE and whether
    # a summary covers the message; no re-read
    assert len(short) == len(long) <= 5, [q["sql"][:150] for q in long.captured_queries]
    # No summary covers it: no UPDATE of the memory is built or run (test_memory.py: one that does).
    assert not [q for q in long.captured_queries if "UPDATE" in q["sql"] and "chats_memory" in q["sql"]]


def test_a_send_on_a_database_that_returns_no_ids_from_a_bulk_insert_still_starts_its_reply(
    owner_client, chat, monkeypatch, django_capture_on_commit_callbacks
):
    """SQLite before 3.35: the two messages go in one INSERT each, and the reply's generation is
    started with its id."""
    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    started = []
    monkeypatch.setattr(
        generation, "start_generation", lambda message_id, **kwargs: started.append(message_id)
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Hello"})
    assert response.status_code == 200
    reply = Message.objects.get(session=chat, seq=response.json()["reply_seq"])
    assert started == [reply.pk]
    assert reply.status == Message.Status.STREAMING
    assert response.json()["stream_url"].endswith(f"/messages/{reply.seq}/stream/")
    assert Message.objects.filter(session=chat, role="user", content="Hello").count() == 1
