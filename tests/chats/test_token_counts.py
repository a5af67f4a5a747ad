"""Prompts fit the context they are given, in any script, counted with the engine's own tokenizer.

The chats are imported from SillyTavern files and the reply is asked for through the chat page, with
llama.cpp's real server and the tiny model as the built-in engine. The tiny model's tokenizer spends
a token per UTF-8 byte on these scripts (three per Chinese character), so a count that is off shows
up at once: llama.cpp refuses a prompt longer than its context.
"""

from __future__ import annotations

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chats import generation
from chats.models import ChatSession, Message
from settings_app.engines import BuiltinServer
from tests import cardkit
from tests.factories import make_character
from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.django_db(transaction=True)

CONTEXT = 1024
REPLY_TOKENS = 64

LINES = {
    "Chinese": ("旅店老板慢慢地擦着柜台，注视着火炉旁的陌生人。", "你看起来走了很远的路，要不要来一杯麦酒？"),
    "Japanese": (
        "宿屋の主人はゆっくりとカウンターを拭いていた。",
        "遠くから来たみたいね。エールを一杯いかが？",
    ),
    "Russian": (
        "Хозяйка таверны медленно протирала стойку.",
        "Похоже, вы проделали долгий путь. Хотите эля?",
    ),
}


@pytest.fixture
def small_builtin(tiny_builtin):
    tiny_builtin.builtin_context_size = CONTEXT
    tiny_builtin.builtin_max_tokens = REPLY_TOKENS
    tiny_builtin.save()
    return tiny_builtin


def import_chat(client, character, script: str, n: int = 80) -> ChatSession:
    user_line, char_line = LINES[script]
    lines = [cardkit.st_header(character_name=character.name)] + [
        {
            "name": "Olivia" if i % 2 else character.name,
            "is_user": bool(i % 2),
            "mes": f"{i}. {user_line if i % 2 else char_line}",
            "send_date": 1729284737000 + i * 60000,
        }
        for i in range(n)
    ]
    upload = SimpleUploadedFile(f"{script}.jsonl", cardkit.jsonl(lines), content_type="application/jsonl")
    response = client.post(reverse("chats:import", args=[character.code]), {"file": upload})
    assert response.status_code == 302
    return ChatSession.objects.filter(character=character).latest("id")


def real_prompt_tokens(messages: list[dict]) -> int:
    """The prompt as llama.cpp reads it: its chat template applied, then its tokenizer."""
    root = BuiltinServer._url.removesuffix("/v1")
    text = httpx.post(root + "/apply-template", json={"messages": messages}).json()["prompt"]
    return len(httpx.post(root + "/tokenize", json={"content": text, "add_special": True}).json()["tokens"])


@pytest.mark.parametrize("script", list(LINES))
def test_the_prompt_fits_the_context_in_any_script(owner, owner_client, small_builtin, script):
    character = make_character(owner=owner, name="Ada", description="An innkeeper. " * 5)
    chat = import_chat(owner_client, character, script)
    response = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": LINES[script][0]})
    reply = Message.objects.get(session=chat, seq=response.json()["reply_seq"])
    generation.wait_for(reply.pk, timeout=60)
    reply.refresh_from_db()
    # llama.cpp answers 400 (exceed_context_size_error) to a prompt past its context.
    assert (reply.status, reply.content) == ("complete", TINY_REPLY), reply.error
    snapshot = reply.prompt_snapshot.data
    real = real_prompt_tokens(snapshot["messages"])
    assert real <= CONTEXT - REPLY_TOKENS
    # Counted exactly, so the history fills the context rather than leaving most of it unused.
    assert real >= (CONTEXT - REPLY_TOKENS) * 0.85, real
    assert snapshot["used"] == real
    assert 2 < snapshot["history_included"] < 80 and snapshot["history_dropped_for_budget"]
    assert snapshot["counted_with"] == "the engine's tokenizer"
    inspector = owner_client.get(
        reverse("chats:message_prompt", args=[chat.code, reply.seq])
    ).content.decode()
    assert (
        f"{real} of {CONTEXT - REPLY_TOKENS} tokens used (counted with the engine&#x27;s tokenizer)"
        in inspector
    )
    assert f"{real} prompt tokens" in inspector  # and the server's own count agrees


def test_history_is_counted_in_one_batch_and_then_from_the_cache(
    owner, owner_client, small_builtin, monkeypatch
):
    from settings_app import engines

    calls: list[int] = []
    real = engines.tokenize_counts

    def counting(config, texts):
        calls.append(len(texts))
        return real(config, texts)

    monkeypatch.setattr(engines, "tokenize_counts", counting)
    character = make_character(owner=owner, name="Ada")
    chat = import_chat(owner_client, character, "Russian")
    for content in ("Первый вопрос", "Второй вопрос"):
        response = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": content})
        reply = Message.objects.get(session=chat, seq=response.json()["reply_seq"])
        generation.wait_for(reply.pk, timeout=60)
    # The first prompt sends every message it may use in one request (and each card text once);
    # the second finds them all in the cache and sends only what is new.
    assert max(calls) >= 10, calls
    split = calls.index(max(calls)) + 1
    assert sum(calls[split:]) <= 4, calls


def test_a_remote_engine_without_a_tokenizer_is_calibrated_from_the_usage_it_reports(
    owner, owner_client, make_profile, scripted_server
):
    from chats.prompt import Prompt

    profile = make_profile(scripted_server.url, context_size=4096)
    character = make_character(owner=owner, name="Ada")
    chat = import_chat(owner_client, character, "Japanese", n=10)

    def ask(content):
        response = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": content})
        reply = Message.objects.get(session=chat, seq=response.json()["reply_seq"])
        generation.wait_for(reply.pk, timeout=60)
        reply.refresh_from_db()
        return reply

    first = ask("最初の質問")
    sent = first.prompt_snapshot.data
    assert sent["counted_with"] == "an estimate"
    estimated = Prompt(messages=sent["messages"]).estimated_raw()
    # The server says the prompt was twice what rpchat estimated (its tokenizer is less thrifty).
    scripted_server.usage = {"prompt_tokens": 2 * estimated, "completion_tokens": 4}
    second = ask("二番目の質問").prompt_snapshot.data
    profile.refresh_from_db()
    learned = 2 * estimated / Prompt(messages=second["messages"]).estimated_raw()
    assert profile.token_ratio == pytest.approx(learned, rel=0.001) and 1.8 < learned < 2
    third = ask("三番目の質問").prompt_snapshot.data
    history = next(p["tokens"] for p in third["parts"] if p["name"].startswith("chat history"))
    before = next(p["tokens"] for p in sent["parts"] if p["name"].startswith("chat history"))
    # Three more messages, each counted at twice the estimate: far more than the first prompt's count.
    assert history > 1.8 * before


def test_a_tokenizer_that_fails_mid_way_leaves_an_estimated_prompt_not_a_failed_reply(
    owner, owner_client, small_builtin, monkeypatch
):
    from settings_app import engines

    def broken(config, texts):
        raise engines.EngineError("The model server answered HTTP 500: tokenizer crashed")

    monkeypatch.setattr(engines, "tokenize_counts", broken)
    character = make_character(owner=owner, name="Ada")
    chat = import_chat(owner_client, character, "Chinese", n=6)
    response = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "你好"})
    reply = Message.objects.get(session=chat, seq=response.json()["reply_seq"])
    generation.wait_for(reply.pk, timeout=60)
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("complete", TINY_REPLY), reply.error


def test_a_connection_profile_on_a_llama_cpp_server_is_counted_with_its_tokenizer(
    owner, owner_client, make_profile, tiny_engine_url
):
    # The session's tiny llama.cpp server has a context of 2,048 tokens.
    make_profile(tiny_engine_url, context_size=2048, max_tokens=REPLY_TOKENS)
    character = make_character(owner=owner, name="Ada")
    chat = import_chat(owner_client, character, "Chinese")
    response = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "你好"})
    reply = Message.objects.get(session=chat, seq=response.json()["reply_seq"])
    generation.wait_for(reply.pk, timeout=60)
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("complete", TINY_REPLY), reply.error
    snapshot = reply.prompt_snapshot.data
    assert snapshot["counted_with"] == "the engine's tokenizer"
    # What rpchat counted is what the server read, and it fills the context.
    assert snapshot["used"] == reply.meta["usage"]["prompt_tokens"]
    assert (2048 - REPLY_TOKENS) * 0.85 <= snapshot["used"] <= 2048 - REPLY_TOKENS
