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
        name="Mira",
        description="{{char}} captains a ship.",
        personality="wry",
        scenario="Launch day with {{user}}.",
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
        ("user", "Message 1"),
        ("assistant", "Message 2"),
        ("user", "Message 3"),
        ("assistant", "Message 4"),
    ]


def test_the_card_system_prompt_overrides_the_instances_with_original(owner):
    site = SiteSettings.load()
    site.system_prompt = "Instance prompt."
    site.save()
    character = make_character(system_prompt="Card first. {{original}}", description="")
    chat = make_chat(user=owner, character=character)
    assert build(chat).messages[0]["content"] == "Card first. Instance prompt."


def test_history_is_trimmed_to_the_budget_newest_kept(owner):
    chat = make_chat(
        user=owner, character=make_character(description=""), messages=200, text="x" * 35 + " {seq}"
    )
    prompt = build(chat, context_size=600, reply_tokens=100)
    seqs = [int(m["content"].split()[-1]) for m in prompt.messages[1:]]
    assert seqs == list(range(200 - len(seqs) + 1, 201))
    assert prompt.history_dropped_for_budget
    assert prompt.used <= 500


def test_example_dialogue_is_dropped_before_history(owner):
    character = make_character(
        description="", example_dialogue="<START>\n" + "long example " * 40 + "\n<START>\nshort one"
    )
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


def test_building_a_prompt_costs_the_same_queries_at_10_and_5000_messages(owner, django_assert_num_queries):
    # 5,000 messages are far more than any context holds, which is what the guard is about.
    small = make_chat(user=owner, character=make_character(), messages=10)
    big = make_chat(user=owner, character=make_character(), messages=5_000)
    SiteSettings.load()
    for chat in (small, big):
        assert chat.character.name  # loaded with the chat when generating (select_related)
    # one keyset read of the newest messages, one read of the applicable lorebook entries, one of
    # the chat's memory settings with its pinned facts; in the long chat also the one full-text
    # read of older messages matching the newest words, with their stretches' summaries
    with django_assert_num_queries(3):
        short = build(small)
    with django_assert_num_queries(4):
        long = build(big)
    assert short.history_included == 10
    assert long.messages[-1]["content"] == "Message 5000"


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


# --- lorebooks -----------------------------------------------------------------------------------


def _book(character=None, owner=None, **fields):
    from characters.models import Lorebook

    return Lorebook.objects.create(character=character, owner=owner, **fields)


def _entry(book, keys, content, **fields):
    from characters.models import LorebookEntry

    return LorebookEntry.objects.create(lorebook=book, keys=keys, content=content, **fields)


def test_lore_activates_on_keys_inside_the_scan_window_only(owner):
    character = make_character(description="Desc.")
    book = _book(character, scan_depth=2)
    _entry(book, ["dragon"], "Dragons sleep under the mountain.")
    _entry(book, ["castle"], "The castle fell long ago.")
    chat = make_chat(user=owner, character=character)
    add_messages(chat, 1, text="I saw a castle once")
    add_messages(chat, 2, text="Small talk {seq}")
    system = build(chat).messages[0]["content"]
    assert "Dragons" not in system and "castle fell" not in system  # castle is 3 messages back
    add_messages(chat, 1, text="Is that a DRAGON?")
    prompt = build(chat)
    assert "Dragons sleep under the mountain." in prompt.messages[0]["content"]
    assert "castle fell" not in prompt.messages[0]["content"]
    assert prompt.lore_activated == ["dragon"]


def test_constant_entries_secondary_logic_regex_and_case(owner):
    from characters.models import LorebookEntry

    character = make_character(description="")
    book = _book(character, scan_depth=4)
    _entry(book, [], "Always here.", constant=True)
    _entry(
        book,
        ["sword"],
        "Needs both.",
        selective=True,
        secondary_keys=["fire"],
        selective_logic=LorebookEntry.Logic.AND_ANY,
    )
    _entry(
        book,
        ["sword"],
        "Not with ice.",
        selective=True,
        secondary_keys=["ice"],
        selective_logic=LorebookEntry.Logic.NOT_ANY,
    )
    _entry(book, [r"/gr[ae]y wolf/i"], "Wolves.", use_regex=True)
    _entry(book, ["Moon"], "Case matters.", case_sensitive=True)
    chat = make_chat(user=owner, character=character)
    add_messages(chat, 1, text="A sword wreathed in fire. A GREY WOLF howls at the moon.")
    system = build(chat).messages[0]["content"]
    assert "Always here." in system and "Needs both." in system and "Not with ice." in system
    assert "Wolves." in system and "Case matters." not in system


def test_lore_budget_drops_the_lowest_priority_first(owner):
    character = make_character(description="")
    book = _book(character, token_budget=20)
    _entry(book, ["a"], "x" * 50, priority=1, name="low")
    _entry(book, ["a"], "y" * 50, priority=9, name="high")
    chat = make_chat(user=owner, character=character)
    add_messages(chat, 1, text="a")
    prompt = build(chat)
    assert "y" * 50 in prompt.messages[0]["content"] and "x" * 50 not in prompt.messages[0]["content"]
    assert prompt.lore_dropped == ["low"]


def test_recursive_lore_is_bounded(owner):
    character = make_character(description="")
    book = _book(character, recursive_scanning=True)
    _entry(book, ["start"], "mentions alpha")
    _entry(book, ["alpha"], "mentions beta")
    _entry(book, ["beta"], "mentions gamma")
    _entry(book, ["gamma"], "mentions delta")
    _entry(book, ["delta"], "the end")
    chat = make_chat(user=owner, character=character)
    add_messages(chat, 1, text="start")
    activated = build(chat).lore_activated
    assert activated[:4] == ["start", "alpha", "beta", "gamma"]
    assert "delta" not in activated  # three rounds of recursion at most


def test_global_lorebooks_attached_to_a_chat_or_character(owner):
    character = make_character(description="")
    world = _book(owner=owner, name="World")
    _entry(world, ["city"], "The city never sleeps.")
    chat = make_chat(user=owner, character=character)
    add_messages(chat, 1, text="To the city!")
    assert "never sleeps" not in build(chat).messages[0]["content"]
    chat.lorebooks.add(world)
    assert "never sleeps" in build(chat).messages[0]["content"]
    chat.lorebooks.clear()
    character.lorebooks.add(world)
    assert "never sleeps" in build(chat).messages[0]["content"]


# --- author's note, text mode --------------------------------------------------------------------


def test_authors_note_goes_at_its_depth(owner):
    chat = make_chat(user=owner, character=make_character(), messages=6)
    chat.author_note = "Keep it short, {{char}}."
    chat.author_note_depth = 2
    chat.save()
    messages = build(chat).messages
    assert messages[-3] == {"role": "system", "content": f"Keep it short, {chat.character.name}."}
    assert messages[-2]["content"] == "Message 5"


@pytest.mark.parametrize("name", ["ChatML", "Llama 3", "Mistral", "Alpaca", "Vicuna", "Gemma"])
def test_text_mode_renders_each_shipped_instruct_template(owner, name, instruct_presets):
    from settings_app.models import InstructTemplate

    template = InstructTemplate.objects.get(name=name)
    chat = make_chat(user=owner, character=make_character(name="Mira", description="Pilot."), messages=2)
    prompt = build_prompt(
        session=chat,
        character=chat.character,
        user_name="Olivia",
        persona_description="",
        site=SiteSettings.load(),
        context_size=2048,
        reply_tokens=100,
        before_seq=3,
        mode="text",
        template=template,
    )
    assert prompt.text.startswith(template.prompt_prefix)
    assert f"{template.user_prefix}Message 1{template.user_suffix}" in prompt.text
    assert f"{template.assistant_prefix}Message 2{template.assistant_suffix}" in prompt.text
    assert prompt.text.endswith(template.assistant_prefix)
    assert prompt.stop == template.stop_strings


def test_chatml_text_prompt_is_exact(owner):
    site = SiteSettings.load()
    site.system_prompt = "Be {{char}}."
    site.save()
    chat = make_chat(user=owner, character=make_character(name="Mira", description=""), messages=2)
    prompt = build_prompt(
        session=chat,
        character=chat.character,
        user_name="Olivia",
        persona_description="",
        site=SiteSettings.load(),
        context_size=2048,
        reply_tokens=100,
        before_seq=3,
        mode="text",
    )
    assert prompt.text == (
        "<|im_start|>system\nBe Mira.<|im_end|>\n"
        "<|im_start|>user\nMessage 1<|im_end|>\n"
        "<|im_start|>assistant\nMessage 2<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_creator_notes_are_never_sent(owner):
    chat = make_chat(user=owner, character=make_character(creator_notes="SECRET NOTES"), messages=2)
    assert "SECRET NOTES" not in str(build(chat).messages)
