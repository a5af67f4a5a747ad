"""Reasoning models: the thinking is kept apart from the reply, shown collapsed, never sent back."""

from __future__ import annotations

import json
import random

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from chats import generation
from chats.models import ChatSession, Message
from chats.reasoning import ThinkSplitter, split_reasoning
from tests.chats.test_generation import read_stream
from tests.factories import make_character, make_chat
from tools.tiny_model import TINY_REPLY, TINY_THOUGHT, write_tiny_gguf

TAGGED = "\n<think>\nThe user waves. </thin is not a tag; </think >neither.\n</think>\n\nHello! <think>not mine</think>"
THOUGHT = "\nThe user waves. </thin is not a tag; </think >neither.\n"
REPLY = "Hello! <think>not mine</think>"


def run(pieces: list[str]) -> tuple[str, str]:
    splitter = ThinkSplitter()
    out = [part for piece in pieces for part in splitter.feed(piece)] + splitter.close()
    return (
        "".join(t for kind, t in out if kind == "reasoning"),
        "".join(t for kind, t in out if kind == "content"),
    )


def test_a_think_block_is_split_off_however_the_stream_cuts_it():
    assert run([TAGGED]) == (THOUGHT, REPLY)
    assert run(list(TAGGED)) == (THOUGHT, REPLY)  # one character a piece
    for cut in range(len(TAGGED) + 1):  # every place one cut can fall, tags included
        assert run([TAGGED[:cut], TAGGED[cut:]]) == (THOUGHT, REPLY), cut
    rng = random.Random(12)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(TAGGED)), 6))
        pieces = [TAGGED[a:b] for a, b in zip([0, *cuts], [*cuts, len(TAGGED)], strict=True)]
        assert run(pieces) == (THOUGHT, REPLY)


def test_only_a_tag_that_opens_the_reply_starts_reasoning():
    assert split_reasoning("Hi <think>x</think> there") == ("", "Hi <think>x</think> there")
    assert split_reasoning("<thinking>plan</thinking>Go.") == ("plan", "Go.")
    assert split_reasoning("  <thi") == ("", "  <thi")  # a reply that merely starts like a tag
    assert split_reasoning("<think>cut off by the length limit") == ("cut off by the length limit", "")
    continued = ThinkSplitter(at_start=False)
    assert continued.feed("<think>x</think>") == [("content", "<think>x</think>")]


def test_splitting_is_linear_in_the_reply():
    # Hostile input: a long think block full of near-miss closing tags, fed a character at a time.
    # Quadratic work would take minutes here; the splitter looks at each character a bounded number of times.
    body = "</thin" * 40_000
    splitter = ThinkSplitter()
    out = [part for ch in "<think>" + body + "</think>ok" for part in splitter.feed(ch)] + splitter.close()
    assert "".join(t for k, t in out if k == "reasoning") == body
    assert "".join(t for k, t in out if k == "content") == "ok"


# --- through generation ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def thinking_model_path(tmp_path_factory) -> str:
    return write_tiny_gguf(tmp_path_factory.mktemp("engine") / "thinking.gguf", thinking=True)


@pytest.fixture
def thinking_builtin(transactional_db, thinking_model_path):
    """The built-in engine is the tiny model that thinks in a <think> block first."""
    from settings_app.engines import BuiltinServer
    from settings_app.models import SiteSettings

    site = SiteSettings.load()
    site.builtin_model_path = thinking_model_path
    site.builtin_max_tokens = 64
    site.save()
    yield site
    BuiltinServer.stop()


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Wren"))


def send_and_finish(client, chat, content="Hello there") -> Message:
    response = client.post(reverse("chats:send", args=[chat.code]), {"content": content})
    assert response.status_code == 200, response.content
    reply = chat.messages.get(seq=response.json()["reply_seq"])
    generation.wait_for(reply.pk, timeout=30)
    reply.refresh_from_db()
    return reply


def tiny_count(text: str) -> int:
    """Tokens of `text` by the built-in model's own tokenizer: llama.cpp's /tokenize, asked directly."""
    import httpx

    from settings_app.engines import BuiltinServer

    root = BuiltinServer._url.removesuffix("/v1")
    return len(httpx.post(root + "/tokenize", json={"content": text}).json()["tokens"])


@pytest.mark.django_db(transaction=True)
def test_a_think_block_from_the_model_is_kept_apart_and_shown_collapsed(owner_client, chat, thinking_builtin):
    reply = send_and_finish(owner_client, chat)
    assert reply.status == "complete", reply.error
    assert reply.content == TINY_REPLY
    assert reply.reasoning == TINY_THOUGHT
    assert reply.reasoning_tokens == tiny_count(TINY_THOUGHT)  # counted by the engine's own tokenizer
    assert reply.reasoning_ms is not None
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    box = html.split('<details class="reasoning">', 1)[1].split("</details>", 1)[0]
    assert TINY_THOUGHT in box and f"{reply.reasoning_tokens} tokens" in box
    assert "Thought for" in box
    assert '<details class="reasoning" open' not in html  # collapsed
    content = html.split('<div class="content prose">')[-1].split("</div>", 1)[0]
    assert "who goes there" not in content and "Hello, traveler!" in content


@pytest.mark.django_db(transaction=True)
def test_the_reasoning_is_never_sent_back_to_the_model(owner_client, chat, thinking_builtin):
    send_and_finish(owner_client, chat, "First")
    second = send_and_finish(owner_client, chat, "Second")
    sent = second.prompt_snapshot.data["messages"]
    assert {"role": "assistant", "content": TINY_REPLY} in sent
    assert all("who goes there" not in m["content"] for m in sent)
    inspector = owner_client.get(
        reverse("chats:message_prompt", args=[chat.code, second.seq])
    ).content.decode()
    assert "Hello, traveler!" in inspector and "who goes there" not in inspector


@pytest.mark.django_db(transaction=True)
def test_the_chat_setting_hides_the_reasoning_but_keeps_it(owner_client, chat, thinking_builtin):
    reply = send_and_finish(owner_client, chat)
    response = owner_client.post(
        reverse("chats:settings", args=[chat.code]),
        {
            "title": chat.title,
            "author_note_depth": 4,
            "author_note_frequency": 1,
            "author_note_role": "system",
            "turn_strategy": "mention",
            # show_reasoning unticked
        },
    )
    assert response.status_code == 302
    chat.refresh_from_db()
    assert chat.show_reasoning is False
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "who goes there" not in html and 'class="reasoning"' not in html
    assert TINY_REPLY in html
    reply.refresh_from_db()
    assert reply.reasoning == TINY_THOUGHT  # hidden, not lost
    form = owner_client.get(reverse("chats:settings", args=[chat.code])).content.decode()
    assert "Show the model&#x27;s reasoning" in form or "Show the model's reasoning" in form


@pytest.mark.django_db(transaction=True)
def test_reasoning_content_from_the_server_streams_apart_and_is_timed(
    owner, owner_client, chat, make_profile, scripted_server
):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    scripted_server.reasoning = ["Let", " me", " think", " about", " it."]
    scripted_server.pieces = ["Once", " upon", " a", " time"]
    scripted_server.usage = {
        "prompt_tokens": 200,
        "completion_tokens": 9,
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    profile = make_profile(scripted_server.url)
    aclient = AsyncClient()
    aclient.force_login(owner)
    response = async_to_sync(aclient.post)(reverse("chats:send", args=[chat.code]), {"content": "Hi"})
    events = read_stream(aclient, response.json()["stream_url"])
    thought = "".join(
        e[1].get("reasoning", "") if e[0] == "snapshot" else e[1]["text"]
        for e in events
        if e[0] in ("snapshot", "reasoning")
    )
    said = "".join(e[1]["text"] for e in events if e[0] in ("snapshot", "delta"))
    assert (thought, said) == ("Let me think about it.", "Once upon a time")
    reply = chat.messages.get(seq=2)
    assert (reply.reasoning, reply.content) == ("Let me think about it.", "Once upon a time")
    assert reply.reasoning_tokens == 5  # as the server reported them
    assert reply.reasoning_ms >= 4 * scripted_server.delay * 1000 * 0.5
    # The server's usage calibrates the estimate for this profile.
    profile.refresh_from_db()
    assert profile.token_ratio is not None and profile.token_ratio > 0


@pytest.mark.django_db(transaction=True)
def test_a_page_attaching_mid_reasoning_gets_the_reasoning_so_far(
    owner, owner_client, chat, make_profile, scripted_server, settings
):
    from django.test import AsyncClient

    settings.RPCHAT = {**settings.RPCHAT, "STREAM_PERSIST_INTERVAL": 0.05}
    scripted_server.reasoning = [f"step{i} " for i in range(20)]
    scripted_server.pieces = ["Done."]
    scripted_server.delay = 0.05
    make_profile(scripted_server.url)
    response = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Hi"})
    reply = chat.messages.get(seq=2)
    live = generation.Runner.live[reply.pk]
    for _ in range(200):
        if "step3" in live.reasoning:
            break
        import time

        time.sleep(0.02)
    aclient = AsyncClient()
    aclient.force_login(owner)
    events = read_stream(aclient, response.json()["stream_url"])  # a reload: it starts with a snapshot
    assert events[0][0] == "snapshot" and events[0][1]["reasoning"].startswith("step0 step1 step2 step3")
    thought = events[0][1]["reasoning"] + "".join(e[1]["text"] for e in events if e[0] == "reasoning")
    assert thought == "".join(scripted_server.reasoning)
    reply.refresh_from_db()
    assert reply.reasoning == "".join(scripted_server.reasoning).strip() and reply.content == "Done."


@pytest.mark.django_db(transaction=True)
def test_each_swipe_keeps_its_own_reasoning(owner_client, chat, make_profile, scripted_server):
    scripted_server.reasoning = ["first", " thought"]
    make_profile(scripted_server.url)
    reply = send_and_finish(owner_client, chat)
    scripted_server.reasoning = ["second", " thought"]
    scripted_server.pieces = ["Another", " reply"]
    owner_client.post(reverse("chats:message_regenerate", args=[chat.code, reply.seq]))
    generation.wait_for(reply.pk, timeout=30)
    reply.refresh_from_db()
    assert (reply.alternative_index, reply.reasoning, reply.content) == (1, "second thought", "Another reply")
    owner_client.post(
        reverse("chats:message_swipe", args=[chat.code, reply.seq]), {"index": 0, "version": reply.version}
    )
    reply.refresh_from_db()
    assert (reply.alternative_index, reply.reasoning, reply.content) == (
        0,
        "first thought",
        "Once upon a time",
    )
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "first thought" in html and "second thought" not in html
    # A branch takes each swipe's reasoning along.
    owner_client.post(reverse("chats:message_branch", args=[chat.code, reply.seq]))
    branch = ChatSession.objects.exclude(pk=chat.pk).get()
    copied = branch.messages.get(seq=reply.seq)
    assert (copied.reasoning, copied.reasoning_ms) == ("first thought", reply.reasoning_ms)
    assert list(copied.alternatives.order_by("index").values_list("reasoning", flat=True)) == [
        "first thought",
        "second thought",
    ]
    assert branch.show_reasoning is True


@pytest.mark.django_db(transaction=True)
def test_reasoning_goes_to_sillytavern_and_comes_back(
    owner, owner_client, chat, make_profile, scripted_server
):
    scripted_server.reasoning = ["first", " thought"]
    make_profile(scripted_server.url)
    reply = send_and_finish(owner_client, chat)
    scripted_server.reasoning = ["second", " thought"]
    owner_client.post(reverse("chats:message_regenerate", args=[chat.code, reply.seq]))
    generation.wait_for(reply.pk, timeout=30)
    response = owner_client.get(reverse("chats:export_jsonl", args=[chat.code]))
    body = b"".join(response.streaming_content).decode()
    lines = [json.loads(line) for line in body.splitlines()]
    exported = lines[-1]
    assert exported["extra"]["reasoning"] == "second thought"
    assert isinstance(exported["extra"]["reasoning_duration"], int)
    assert [i["extra"].get("reasoning") for i in exported["swipe_info"]] == [
        "first thought",
        "second thought",
    ]
    assert "thought" not in exported["mes"]

    upload = SimpleUploadedFile("back.jsonl", body.encode(), content_type="application/jsonl")
    owner_client.post(reverse("chats:import", args=[chat.character.code]), {"file": upload})
    imported = ChatSession.objects.exclude(pk=chat.pk).get()
    back = imported.messages.get(seq=reply.seq)
    assert (back.reasoning, back.content) == ("second thought", "Once upon a time")
    assert back.reasoning_ms == exported["extra"]["reasoning_duration"]
    assert [a.reasoning for a in back.alternatives.order_by("index")] == ["first thought", "second thought"]
    again = b"".join(owner_client.get(reverse("chats:export_jsonl", args=[imported.code])).streaming_content)
    assert json.loads(again.decode().splitlines()[-1])["extra"] == exported["extra"]


@pytest.mark.django_db(transaction=True)
def test_write_for_me_drafts_without_the_models_thinking(owner, chat, thinking_builtin):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    aclient = AsyncClient()
    aclient.force_login(owner)
    response = async_to_sync(aclient.post)(reverse("chats:impersonate", args=[chat.code]))
    assert response.json() == {"text": TINY_REPLY}


@pytest.mark.django_db(transaction=True)
def test_the_api_gives_the_reasoning_apart(owner, owner_client, chat, thinking_builtin):
    send_and_finish(owner_client, chat)
    page = owner_client.get(reverse("api:messages", args=[chat.code])).json()
    by_seq = {m["seq"]: m for m in page["messages"]}
    assert (by_seq[2]["content"], by_seq[2]["reasoning"]) == (TINY_REPLY, TINY_THOUGHT)
    assert by_seq[1]["reasoning"] == ""


def test_a_reply_whose_think_tag_the_prompt_opened_is_split_at_its_end():
    from chats.reasoning import split_forced_open

    assert split_forced_open("I should greet them.\n</think>\n\nHello!") == (
        "I should greet them.\n",
        "Hello!",
    )
    assert split_forced_open("Hello! No tags here.") is None
    assert split_forced_open("Quoting <think>x</think> in a reply") is None


@pytest.mark.django_db(transaction=True)
def test_a_closing_tag_alone_in_the_stream_ends_the_reasoning(
    owner_client, chat, make_profile, scripted_server
):
    # As from a DeepSeek-R1 distill whose template ends the prompt with "<think>\n".
    scripted_server.pieces = ["I", " should", " greet", " them.", "\n</th", "ink>", "\n\n", "Hello", "!"]
    make_profile(scripted_server.url)
    reply = send_and_finish(owner_client, chat)
    assert (reply.reasoning, reply.content) == ("I should greet them.", "Hello!")
    assert reply.reasoning_ms is not None


@pytest.mark.django_db(transaction=True)
def test_reasoning_is_shown_as_plain_text(owner_client, chat, make_profile, scripted_server):
    scripted_server.reasoning = ['<img src=x onerror="alert(1)">', "<script>alert(2)</script>"]
    make_profile(scripted_server.url)
    send_and_finish(owner_client, chat)
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    box = html.split('<details class="reasoning">', 1)[1].split("</details>", 1)[0]
    assert "<img" not in box and "<script" not in box
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in box


@pytest.mark.django_db(transaction=True)
def test_a_reply_written_by_another_worker_is_followed_with_its_reasoning(owner, chat):
    from asgiref.sync import async_to_sync, sync_to_async

    reply = Message.objects.create(
        session=chat,
        seq=1,
        role="assistant",
        status="streaming",
        content="So far",
        reasoning="Thinking so far",
    )
    assert reply.pk not in generation.Runner.live  # nothing in this process writes it

    @sync_to_async
    def finish_elsewhere():
        Message.objects.filter(pk=reply.pk).update(reasoning="Thinking so far, and more", status="complete")

    async def follow():
        events = []
        async for event in generation.follow(reply.pk, poll_interval=0.05):
            events.append(event)
            if len(events) == 1:
                await finish_elsewhere()
        return events

    events = async_to_sync(follow)()
    assert (events[0].kind, events[0].text, events[0].reasoning) == ("snapshot", "So far", "Thinking so far")
    assert [(e.kind, e.reasoning) for e in events[1:]] == [
        ("snapshot", "Thinking so far, and more"),
        ("done", ""),
    ]
