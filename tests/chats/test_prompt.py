"""Prompt building: exact output on small fixtures, and a cost that does not grow with the chat."""

from __future__ import annotations

import pytest

from chats.macros import MacroContext, expand
from chats.prompt import build_prompt
from settings_app.models import SiteSettings
from tests.factories import add_messages, make_character, make_chat

pytestmark = pytest.mark.django_db


def build(chat, *, context_size=2048, reply_tokens=100, **kw):
    return build_prompt(
        session=chat,
        character=chat.character,
        user_name=kw.pop("user_name", "Olivia"),
        persona_description=kw.pop("persona_description", ""),
        site=SiteSettings.load(),
        context_size=context_size,
        reply_tokens=reply_tokens,
        before_seq=chat.last_seq + 1,
    )


def test_the_prompt_is_system_then_history_in_order(owner):
    character = make_character(
        name="Mira", description="{{char}} captains a ship.", personality="wry", scenario="Launch day with {{user}}."
    )
    site = SiteSettings.load()
    site.system_prompt = "You are {{char}}. Talk to {{user}}."
    site.save()
    chat = make_chat(user=owner, character=character, messages=4)
    prompt = build(chat)
    assert prompt.messages[0] == {
        "role": "system",
        "content": "You are Mira. Talk to Olivia.\n\nMira captains a ship.\n\n"
        "Mira's personality: wry\n\nScenario: Launch day with Olivia.",
    }
    assert [(m["role"], m["content"]) for m in prompt.messages[1:]] == [
        ("user", "Message 1"), ("assistant", "Message 2"), ("user", "Message 3"), ("assistant", "Message 4"),
    ]


def test_the_card_system_prompt_overrides_the_instances_with_original(owner):
    site = SiteSettings.load()
    site.system_prompt = "Instance prompt."
    site.save()
    character = make_character(system_prompt="Card first. {{original}}", description="")
    chat = make_chat(user=owner, character=character)
    assert build(chat).messages[0]["content"] == "Card first. Instance prompt."


def test_history_is_trimmed_to_the_budget_newest_kept(owner):
    chat = make_chat(user=owner, character=make_character(description=""), messages=200, text="x" * 35 + " {seq}")
    prompt = build(chat, context_size=600, reply_tokens=100)
    seqs = [int(m["content"].split()[-1]) for m in prompt.messages[1:]]
    assert seqs == list(range(200 - len(seqs) + 1, 201))
    assert prompt.history_dropped_for_budget
    assert prompt.used <= 500


def test_example_dialogue_is_dropped_before_history(owner):
    character = make_character(description="", example_dialogue="<START>\n" + "long example " * 40 + "\n<START>\nshort one")
    chat = make_chat(user=owner, character=character, messages=10)
    roomy = build(chat, context_size=2048)
    assert "long example" in roomy.messages[0]["content"] and "short one" in roomy.messages[0]["content"]
    tight = build(chat, context_size=260, reply_tokens=100)
    assert len(tight.messages) == 11  # all history kept
    assert "long example" not in tight.messages[0]["content"]
    assert [p.included for p in tight.parts if p.name.startswith("example")] == [False, True]


def test_hidden_and_failed_messages_are_left_out(owner):
    from chats.models import Message

    chat = make_chat(user=owner, character=make_character(), messages=4)
    Message.objects.filter(session=chat, seq=2).update(hidden=True)
    Message.objects.filter(session=chat, seq=3).update(status="error")
    contents = [m["content"] for m in build(chat).messages[1:]]
    assert contents == ["Message 1", "Message 4"]


def test_building_a_prompt_costs_the_same_queries_at_10_and_100000_messages(owner, django_assert_num_queries):
    small = make_chat(user=owner, character=make_character(), messages=10)
    big = make_chat(user=owner, character=make_character(), messages=100_000)
    SiteSettings.load()
    small.character, big.character  # loaded with the chat when generating (select_related)
    # one keyset read of the newest messages, one read of the applicable lorebook entries
    with django_assert_num_queries(2):
        short = build(small)
    with django_assert_num_queries(2):
        long = build(big)
    assert short.history_included == 10
    assert long.messages[-1]["content"] == "Message 100000"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{char}} greets {{user}}", "Mira greets Olivia"),
        ("{{CHAR}} and {{User}}", "Mira and Olivia"),
        ("<BOT> waves at <user>", "Mira waves at Olivia"),
        ("a{{// a comment}}b", "ab"),
        ("{{unknown}} stays", "{{unknown}} stays"),
    ],
)
def test_macros(text, expected):
    assert expand(text, MacroContext(char="Mira", user="Olivia")) == expected


def test_random_roll_and_pick_macros():
    import random

    ctx = MacroContext(char="M", user="U", chat_seed="chat-1")
    assert expand("{{random:a,b,c}}", ctx, rng=random.Random(1)) in {"a", "b", "c"}
    assert 1 <= int(expand("{{roll:d6}}", ctx)) <= 6
    picks = {expand("{{pick:x,y,z}}", ctx) for _ in range(20)}
    assert len(picks) == 1  # stable within a chat
