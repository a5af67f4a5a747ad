"""Sending a message through the real views, with replies from llama.cpp's real server."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import reverse

from chats import generation
from chats.models import ChatSession, Message
from tests.factories import make_character, make_chat
from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.django_db(transaction=True)


def send(client, session: ChatSession, content: str = "Hello there", token: str = ""):
    return client.post(
        reverse("chats:send", args=[session.code]), {"content": content, "client_token": token}
    )


def finish(session: ChatSession) -> Message:
    reply = session.messages.order_by("-seq").first()
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    return reply


def read_stream(client, url: str) -> list[tuple[str, dict]]:
    """Every SSE event of a stream, read through Django's ASGI handler as a browser would."""

    async def consume():
        response = await client.get(url)
        assert response["Content-Type"] == "text/event-stream"
        body = b""
        async for chunk in response.streaming_content:
            body += chunk if isinstance(chunk, bytes) else chunk.encode()
        return body.decode()

    events = []
    for block in async_to_sync(consume)().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Wren"))


def test_the_streamed_reply_is_the_models_text_and_is_what_was_saved(owner, chat, tiny_builtin):
    aclient = AsyncClient()
    aclient.force_login(owner)
    response = async_to_sync(aclient.post)(
        reverse("chats:send", args=[chat.code]), {"content": "Hello there"}
    )
    assert response.status_code == 200
    events = read_stream(aclient, response.json()["stream_url"])

    streamed = "".join(e[1]["text"] for e in events if e[0] in ("snapshot", "delta"))
    assert streamed == TINY_REPLY
    assert events[-1][0] == "done" and events[-1][1]["status"] == "complete"
    reply = Message.objects.get(session=chat, seq=2)
    assert reply.content == TINY_REPLY
    assert reply.status == Message.Status.COMPLETE
    assert reply.meta["engine"] == "built-in demo model (SmolLM2-135M)"
    assert reply.meta["finish_reason"] == "stop"
    assert Message.objects.get(session=chat, seq=1).content == "Hello there"
    chat.refresh_from_db()
    assert chat.message_count == 2


def test_a_page_that_attaches_after_the_reply_finished_gets_the_whole_reply(
    owner_client, chat, tiny_builtin, owner
):
    url = send(owner_client, chat).json()["stream_url"]
    finish(chat)
    aclient = AsyncClient()
    aclient.force_login(owner)
    events = read_stream(aclient, url)
    assert [e[0] for e in events] == ["done"]
    assert TINY_REPLY in events[0][1]["html"]


def test_the_reply_keeps_generating_when_nobody_is_watching(owner_client, chat, tiny_builtin):
    send(owner_client, chat)  # the page never opens the stream
    reply = finish(chat)
    assert reply.content == TINY_REPLY
    page = owner_client.get(chat.get_absolute_url())
    assert TINY_REPLY in page.content.decode()


def test_the_reply_is_sent_through_a_connection_profile(owner_client, chat, make_profile, tiny_engine_url):
    make_profile(tiny_engine_url, name="Tiny server")
    send(owner_client, chat)
    reply = finish(chat)
    assert (reply.content, reply.meta["engine"]) == (TINY_REPLY, "Tiny server")


def test_a_short_length_limit_is_reported_to_the_user(owner_client, chat, make_profile, tiny_engine_url):
    make_profile(tiny_engine_url, max_tokens=3)
    send(owner_client, chat)
    reply = finish(chat)
    assert reply.content == "Hello, traveler"
    assert reply.meta["finish_reason"] == "length"
    assert "length limit" in reply.meta["notice"]


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ("unreachable", "Could not connect to the model server"),
        ("not_found", "HTTP 404"),
        ("wrong_key", "refused the API key"),
        ("over_context", "longer than the model's context"),
        ("server_error", "HTTP 503"),
    ],
)
def test_engine_failures_keep_the_users_message_and_say_why(
    request,
    owner_client,
    chat,
    make_profile,
    tiny_engine_url,
    tiny_model_path,
    scripted_server,
    setup,
    expected,
):
    from tests.conftest import start_llama_server

    servers = []
    if setup == "unreachable":
        make_profile("http://127.0.0.1:9/v1")
    elif setup == "not_found":
        make_profile(tiny_engine_url.replace("/v1", "/nothing-here"))
    elif setup == "wrong_key":
        servers.append(start_llama_server(tiny_model_path, api_keys=["right-key"]))
        make_profile(servers[0].listening_address + "/v1", api_key="wrong-key")
    elif setup == "over_context":
        servers.append(start_llama_server(tiny_model_path, n_ctx=256))
        make_profile(servers[0].listening_address + "/v1", context_size=100_000)
    elif setup == "server_error":
        scripted_server.mode = "http503"
        make_profile(scripted_server.url)
    content = "word " * 600 if setup == "over_context" else "Are you there?"
    assert send(owner_client, chat, content).status_code == 200
    reply = finish(chat)

    assert Message.objects.get(session=chat, seq=1).content == content.strip()
    assert reply.status == Message.Status.ERROR
    assert expected in reply.error
    page = owner_client.get(chat.get_absolute_url()).content.decode()
    assert expected.split("'")[0] in page.replace("&#x27;", "'")
    assert 'data-action="retry"' in page
    del servers


def test_retry_generates_a_failed_reply_again(owner_client, chat, make_profile, tiny_engine_url):
    profile = make_profile("http://127.0.0.1:9/v1")
    send(owner_client, chat)
    reply = finish(chat)
    assert reply.status == Message.Status.ERROR
    profile.base_url = tiny_engine_url
    profile.save()
    response = owner_client.post(reverse("chats:message_retry", args=[chat.code, reply.seq]))
    assert response.status_code == 200
    reply = finish(chat)
    assert (reply.status, reply.content, reply.error) == ("complete", TINY_REPLY, "")


def test_stop_ends_the_reply_and_keeps_what_was_written(owner_client, chat, make_profile, scripted_server):
    scripted_server.pieces = [f"word{i} " for i in range(200)]
    scripted_server.delay = 0.05
    make_profile(scripted_server.url)
    send(owner_client, chat)
    reply = chat.messages.get(seq=2)
    live = generation.Runner.live[reply.pk]
    for _ in range(200):
        if live.text.count("word") >= 3:
            break
        asyncio.run(asyncio.sleep(0.02))
    response = owner_client.post(reverse("chats:message_stop", args=[chat.code, reply.seq]))
    assert response.json() == {"stopping": True}
    reply = finish(chat)
    assert reply.status == Message.Status.COMPLETE
    assert reply.meta["finish_reason"] == "stopped"
    assert reply.content.startswith("word0 word1 word2")
    assert "word199" not in reply.content
    assert scripted_server.disconnected.wait(5), "the engine call was not cancelled"


def test_a_second_message_while_a_reply_streams_is_refused(owner_client, chat, make_profile, scripted_server):
    scripted_server.delay = 0.3
    make_profile(scripted_server.url)
    assert send(owner_client, chat, "first").status_code == 200
    second = send(owner_client, chat, "second")
    assert second.status_code == 409
    assert "still being written" in second.json()["error"]
    finish(chat)
    assert next(iter(chat.messages.values_list("content", flat=True).order_by("seq"))) == "first"
    assert chat.messages.count() == 2


def test_a_double_click_sends_one_message(owner_client, chat, tiny_builtin):
    first = send(owner_client, chat, "only once", token="tok-1").json()
    second = send(owner_client, chat, "only once", token="tok-1").json()
    finish(chat)
    assert first["reply_seq"] == second["reply_seq"] == 2
    assert chat.messages.filter(content="only once").count() == 1


def test_an_empty_or_overlong_message_is_refused_with_a_reason(owner_client, chat, settings):
    assert send(owner_client, chat, "   ").json()["error"] == "The message is empty."
    settings.RPCHAT = {**settings.RPCHAT, "MAX_MESSAGE_CHARS": 10}
    response = send(owner_client, chat, "x" * 11)
    assert response.status_code == 400
    assert "limit is 10" in response.json()["error"]
    assert chat.messages.count() == 0


def test_text_completions_mode_streams_from_the_real_server(
    owner_client, chat, make_profile, tiny_engine_url, instruct_presets
):
    from settings_app.models import InstructTemplate

    make_profile(tiny_engine_url, mode="text", instruct_template=InstructTemplate.objects.get(name="ChatML"))
    send(owner_client, chat)
    reply = finish(chat)
    assert (reply.content, reply.finish_reason) == (TINY_REPLY, "stop")


def test_stop_strings_end_the_reply(owner_client, chat, make_profile, tiny_engine_url):
    make_profile(tiny_engine_url, mode="text", stop_strings=[" tiny"])
    send(owner_client, chat)
    reply = finish(chat)
    assert reply.content == "Hello, traveler! I am a"
    assert reply.finish_reason == "stop"
