"""The deterministic recall test: a fact stated once around message 1,000 of a generated
100,000-message chat is in the prompt when the newest message refers to it, and only then; the same
in a branch from message 50,000; gone once the message stating it is edited to say otherwise.

Everything goes through the real flows: the chat from tools/load_data.py (what `manage.py bench`
generates), the fact written with the message editor, messages sent through the chat page's send
endpoint, replies from the tiny model, and the prompt read back from what the inspector shows.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from chats import generation
from chats.models import ChatSession, Message, PromptSnapshot
from tools import load_data

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SIZE = 100_000
FACT_SEQ = 1_000
FACT = "Remember this: the smith Zorvath Quellin keeps the vault key, and its number is 7341."
EDITED = "Zorvath Quellin left the valley long ago; nobody keeps a vault key any more."


def send(client: Client, chat: ChatSession, content: str) -> dict:
    response = client.post(reverse("chats:send", args=[chat.code]), {"content": content})
    assert response.status_code == 200, response.content
    reply = chat.messages.get(seq=response.json()["reply_seq"])
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE, reply.error
    return PromptSnapshot.objects.get(message=reply).data


def text_of(prompt: dict) -> str:
    return "\n".join(m["content"] for m in prompt["messages"])


@pytest.fixture
def roomy_tiny_engine(tmp_path):
    """The tiny model with room for the bench character's long card (it counts bytes, not words)."""
    from tests.conftest import start_llama_server
    from tools.tiny_model import write_tiny_gguf

    server = start_llama_server(write_tiny_gguf(tmp_path / "roomy.gguf", n_ctx_train=16384), n_ctx=16384)
    yield server.listening_address.rstrip("/") + "/v1"
    del server


def test_a_fact_from_message_1000_of_100000_is_recalled_when_mentioned(
    roomy_tiny_engine, make_profile, settings
):
    settings.RPCHAT = {**settings.RPCHAT, "GENERATIONS_PER_MINUTE": 0}
    started = time.monotonic()
    load_data.generate(chat_sizes=[SIZE], character_sets=[])
    generated = time.monotonic() - started
    make_profile(roomy_tiny_engine, name="tiny", context_size=1024, max_tokens=32)
    chat = ChatSession.objects.get(title=load_data.CHAT_TITLE.format(SIZE))
    user = get_user_model().objects.get(username=load_data.BENCH_USER)
    client = Client()
    client.force_login(user)

    # The fact, stated once, written with the message editor.
    stating = chat.messages.get(seq=FACT_SEQ)
    edit = reverse("chats:message_edit", args=[chat.code, FACT_SEQ])
    assert client.post(edit, {"content": FACT, "version": stating.version}).status_code == 200

    asked = send(client, chat, "Do you still remember Zorvath, and what his number was?")
    assert "7341" in text_of(asked)
    recalled = [i for i in asked["memory"]["items"] if i["included"] and i["kind"] == "message"]
    assert any(i["start_seq"] == FACT_SEQ and "zorvath" in i["matched"] for i in recalled)
    assert asked["history_included"] < 100  # it came from memory, not from the history window

    unrelated = send(client, chat, "The lantern flickers while the rain falls on the tavern roof.")
    assert "7341" not in text_of(unrelated) and "Zorvath" not in text_of(unrelated)

    # A branch from message 50,000 remembers it too.
    branch_url = client.post(reverse("chats:message_branch", args=[chat.code, 50_000])).json()["url"]
    branch = ChatSession.objects.get(code=branch_url.rstrip("/").rsplit("/", 1)[1])
    in_branch = send(client, branch, "Tell me again about Zorvath and the number.")
    assert "7341" in text_of(in_branch)

    # Edited to say otherwise: the old fact is gone.
    stating.refresh_from_db()
    assert client.post(edit, {"content": EDITED, "version": stating.version}).status_code == 200
    after_edit = send(client, chat, "Do you still remember Zorvath, and what his number was?")
    assert "7341" not in text_of(after_edit)
    assert "left the valley" in text_of(after_edit)
    print(f"generated {SIZE:,} messages in {generated:.0f}s")
