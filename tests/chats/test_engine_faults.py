"""Engine faults against a real loopback server that misbehaves on purpose: nothing is lost."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from chats import generation
from chats.models import Message
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Wren"), messages=2)


def send_and_finish(client, chat, content="Still there?") -> Message:
    response = client.post(reverse("chats:send", args=[chat.code]), {"content": content})
    assert response.status_code == 200
    reply = chat.messages.get(seq=response.json()["reply_seq"])
    generation.wait_for(reply.pk, timeout=30)
    reply.refresh_from_db()
    assert chat.messages.get(seq=reply.seq - 1).content == content  # the user's message is kept
    return reply


@pytest.fixture
def short_timeouts(settings):
    settings.RPCHAT = {**settings.RPCHAT, "ENGINE_FIRST_TOKEN_TIMEOUT": 0.5, "ENGINE_STALL_TIMEOUT": 0.5}


def test_a_timeout_before_the_first_token(owner_client, chat, make_profile, scripted_server, short_timeouts):
    scripted_server.mode = "silent"
    scripted_server.delay = 3
    make_profile(scripted_server.url)
    reply = send_and_finish(owner_client, chat)
    assert reply.status == "error"
    assert "sent nothing for 0 seconds" in reply.error or "sent nothing" in reply.error


def test_a_stall_mid_stream_keeps_the_partial_reply(
    owner_client, chat, make_profile, scripted_server, short_timeouts
):
    scripted_server.pieces = ["Half", " a", " reply", "<stall>"]
    scripted_server.delay = 0.05
    original = scripted_server.handle

    def stalling(h):
        scripted_server.pieces = ["Half", " a", " reply"]
        scripted_server.delay = 0.01
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        import json
        import time

        for piece in scripted_server.pieces:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            h.wfile.flush()
        time.sleep(2)

    scripted_server.handle = stalling
    make_profile(scripted_server.url)
    reply = send_and_finish(owner_client, chat)
    scripted_server.handle = original
    assert (reply.status, reply.content) == ("incomplete", "Half a reply")
    assert "stopped sending" in reply.error
    page = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "This reply is incomplete." in page and 'data-action="retry"' in page


def test_malformed_sse(owner_client, chat, make_profile, scripted_server):
    scripted_server.mode = "malformed"
    make_profile(scripted_server.url)
    reply = send_and_finish(owner_client, chat)
    assert reply.status == "error"
    assert "not JSON" in reply.error


def test_a_connection_dropped_mid_reply(owner_client, chat, make_profile, scripted_server):
    scripted_server.mode = "drop"
    make_profile(scripted_server.url)
    reply = send_and_finish(owner_client, chat)
    assert (reply.status, reply.content) == ("incomplete", "Once upon")
    assert "closed before the reply finished" in reply.error or "dropped" in reply.error


@pytest.mark.parametrize("status", [400, 429, 500, 502])
def test_http_errors_with_a_body(owner_client, chat, make_profile, scripted_server, status):
    scripted_server.mode = f"http{status}"
    make_profile(scripted_server.url)
    reply = send_and_finish(owner_client, chat)
    assert reply.status == "error"
    assert f"HTTP {status}" in reply.error and "scripted failure" in reply.error


def test_a_dns_failure(owner_client, chat, make_profile):
    make_profile("http://no-such-host.invalid/v1")
    reply = send_and_finish(owner_client, chat)
    assert reply.status == "error"
    assert "Could not connect to the model server" in reply.error


def test_a_failed_reply_can_be_retried_and_then_succeeds(owner_client, chat, make_profile, scripted_server):
    scripted_server.mode = "drop"
    make_profile(scripted_server.url)
    reply = send_and_finish(owner_client, chat)
    scripted_server.mode = "ok"
    owner_client.post(reverse("chats:message_retry", args=[chat.code, reply.seq]))
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert (reply.status, reply.content, reply.error) == ("complete", "Once upon a time", "")


def test_a_page_that_reattaches_mid_reply_gets_every_token(
    owner, owner_client, chat, make_profile, scripted_server
):
    import json

    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    scripted_server.pieces = [f"w{i} " for i in range(30)]
    scripted_server.delay = 0.03
    make_profile(scripted_server.url)
    response = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Tell me"})
    reply = chat.messages.get(seq=response.json()["reply_seq"])
    live = generation.Runner.live[reply.pk]
    while live.text.count("w") < 5:  # the first tab saw a few tokens, then the page reloads
        live.finished.wait(0.01)
    aclient = AsyncClient()
    aclient.force_login(owner)

    async def consume():
        resp = await aclient.get(response.json()["stream_url"])
        body = b""
        async for chunk in resp.streaming_content:
            body += chunk
        return body.decode()

    events = [b for b in async_to_sync(consume)().split("\n\n") if b.startswith("event:")]
    text = ""
    for block in events:
        kind = block.split("\n")[0].split(": ")[1]
        data = json.loads(block.split("data: ", 1)[1])
        if kind == "snapshot":
            text = data["text"]
        elif kind == "delta":
            text += data["text"]
    assert events[0].startswith("event: snapshot")
    assert text == "".join(scripted_server.pieces)
    reply.refresh_from_db()
    assert reply.content == text


SECRETS = ("olivia-ops", "hunter2-secret", "sk-live-0123456789")


def _shown_to_the_user(client, chat, reply: Message) -> str:
    """What the person sees of a failed reply (the stream's last event carries the same error and
    partial as the page), and the text stored with it."""
    page = client.get(chat.get_absolute_url()).content.decode()
    return "\n".join([page, reply.content, reply.error])


def test_an_unreachable_engine_gives_the_user_a_plain_reason_and_staff_the_address_without_credentials(
    owner_client, chat, make_profile, admin_client, caplog
):
    make_profile("http://olivia-ops:hunter2-secret@127.0.0.1:9/v1", api_key="sk-live-0123456789")
    reply = send_and_finish(owner_client, chat)

    assert reply.status == "error"
    assert "Could not connect to the model server" in reply.error
    seen = _shown_to_the_user(owner_client, chat, reply)
    assert "Could not connect to the model server" in seen
    for secret in (*SECRETS, "127.0.0.1:9"):
        assert secret not in seen, secret
    # Staff: the address, its credentials masked, in the log and in the message's admin page.
    assert "http://***@127.0.0.1:9/v1" in reply.meta["error_detail"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "http://***@127.0.0.1:9/v1" in logged
    admin_page = admin_client.get(reverse("admin:chats_message_change", args=[reply.pk])).content.decode()
    assert "***@127.0.0.1:9" in admin_page
    for secret in SECRETS:
        assert secret not in json.dumps(reply.meta) and secret not in logged and secret not in admin_page


def test_an_engine_that_repeats_the_credentials_it_was_sent_does_not_pass_them_on(
    owner_client, chat, make_profile, scripted_server, caplog
):
    import logging

    caplog.set_level(logging.INFO, logger="httpx")  # httpx logs each URL it calls at INFO
    scripted_server.mode = "echo401"
    port = scripted_server.url.split(":")[2].split("/")[0]
    make_profile(f"http://olivia-ops:hunter2-secret@127.0.0.1:{port}/v1", api_key="sk-live-0123456789")
    reply = send_and_finish(owner_client, chat)

    assert reply.status == "error" and "refused the API key (HTTP 401)" in reply.error
    seen = _shown_to_the_user(owner_client, chat, reply)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"127.0.0.1:{port}" in logged  # the request was logged, without its credentials
    basic = "b2xpdmlhLW9wczpodW50ZXIyLXNlY3JldA=="  # olivia-ops:hunter2-secret, as basic auth sends it
    for secret in (*SECRETS, basic):
        assert secret not in seen, secret
        assert secret not in logged and secret not in json.dumps(reply.meta), secret


@pytest.fixture
def endless(scripted_server, make_profile, settings):
    """An engine that ignores max_tokens and never stops, and a small size limit for replies."""
    settings.RPCHAT = {**settings.RPCHAT, "MAX_REPLY_CHARS": 20_000, "MAX_MESSAGE_CHARS": 5_000}
    scripted_server.mode = "endless"
    scripted_server.pieces = ["All work and no play makes Jack a dull boy. "]
    scripted_server.delay = 0.0005
    make_profile(scripted_server.url)
    return scripted_server


def test_a_reply_from_an_engine_that_never_stops_is_cut_at_the_size_limit(owner_client, chat, endless):
    reply = send_and_finish(owner_client, chat)

    assert (reply.status, reply.finish_reason) == ("incomplete", "size_limit")
    assert len(reply.content) == 20_000 and reply.content.startswith("All work and no play")
    assert "size limit of 20,000 characters" in reply.error
    assert endless.disconnected.wait(5), "the engine was not hung up on"
    page = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "This reply is incomplete." in page and 'data-action="retry"' in page
    assert len(page) < 60_000  # the chat page: its three messages, one of them 20,000 characters


def test_impersonation_from_an_engine_that_never_stops_is_cut_at_a_messages_length(
    owner_client, chat, endless
):
    import threading

    answers = []
    # In a thread: without the limit the request never ends, and the test fails instead of hanging.
    asking = threading.Thread(
        target=lambda: answers.append(owner_client.post(reverse("chats:impersonate", args=[chat.code]))),
        daemon=True,
    )
    asking.start()
    asking.join(30)

    assert answers, "the impersonation never ended"
    response = answers[0]
    assert response.status_code == 200
    text = response.json()["text"]
    assert len(text) <= 5_000 and text.startswith("All work and no play")
    assert endless.disconnected.wait(5), "the engine was not hung up on"
