"""Lorebook regex keys are user input: they run on RE2 in linear time, and a key RE2 cannot run is
skipped, the reply goes out, and its owner is told why (prompt inspector, import notes)."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from characters import lorekeys
from characters.services import card_import
from chats import generation, lore
from chats.models import ChatSession
from chats.services import chat_start
from core.tokens import estimate_tokens
from tests import cardkit
from tests.hang import finishes
from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.django_db


def card_file(*entries: tuple[str, list[str], str]) -> bytes:
    """A V2 card whose book has one regex entry per (name, keys, content)."""
    card = cardkit.v2_card("Ada", book=False)
    card["data"]["character_book"] = {
        "name": "Ada's lore",
        "scan_depth": 4,
        "token_budget": 500,
        "entries": [
            {"id": i, "name": name, "keys": keys, "content": content, "use_regex": True, "enabled": True}
            for i, (name, keys, content) in enumerate(entries)
        ],
    }
    return json.dumps(card).encode()


def imported(owner, *entries):
    result = card_import(source=card_file(*entries), file_name="ada.json", owner=owner)
    assert result.status == "imported", result.reason
    return result


def activation(owner, *entries):
    """activate(text) for a chat with a card holding `entries`: (activated, skipped)."""
    character = imported(owner, *entries).object
    chat = chat_start(user=owner, character=character)
    found = lore.entries_for(session=chat, character=character)

    def activate(text: str) -> tuple[list[str], list[dict]]:
        result = lore.activate(found, recent=[text], estimate=estimate_tokens)
        return result.activated, result.skipped

    return activate


def test_a_backtracking_key_on_its_worst_message_finishes(owner):
    # Python's re takes about 2**n steps for (a+)+$ on n a's and a "!": hours for 40.
    activate = activation(
        owner, ("Doom", ["(a+)+$"], "Doom is near."), ("Archive", ["/ARCHIVE/i"], "Nine floors.")
    )
    assert finishes(activate, "a" * 40 + "! Then to the archive") == (["Archive"], [])
    assert finishes(activate, "b" * 10 + "a" * 40) == (["Doom"], [])


@pytest.mark.parametrize(
    "key, reason",
    [
        (r"(a)\1", "backreferences are not supported (RE2: invalid escape sequence: \\1)"),
        (r"/(?P<x>a)(?P=x)/", "not supported by RE2 (invalid perl operator: (?P)"),
        (
            r"(?<=dark )forest",
            "lookahead and lookbehind are not supported (RE2: invalid perl operator: (?<=)",
        ),
        (r"/forest(?!s)/i", "lookahead and lookbehind are not supported (RE2: invalid perl operator: (?!)"),
        ("[unclosed", "not a valid regular expression (RE2: missing ]: [unclosed)"),
        ("a{1000}b{1000}", "too complex: "),  # then RE2's count of its instructions, over 2,000
        ("x" * 10_001, "too long: 10,001 characters, the limit is 10,000"),
    ],
)
def test_a_key_re2_cannot_run_is_skipped_with_the_reason(owner, key, reason):
    activate = activation(owner, ("Odd", [key], "Odd."), ("Forest", ["/FOREST/i"], "Tall trees."))
    activated, skipped = activate("aa in a dark forest " + "x" * 10_001)
    assert activated == ["Forest"]
    assert [(s["entry"], s["key"]) for s in skipped] == [("Odd", key)]
    assert skipped[0]["reason"].startswith(reason)


def test_keys_left_when_the_time_budget_is_spent_are_skipped_not_run(owner, monkeypatch):
    activate = activation(owner, ("Forest", ["/FOREST/i"], "Tall trees."))
    monkeypatch.setattr(lore, "REGEX_SECONDS", -1)
    assert activate("a dark forest") == (
        [],
        [
            {
                "entry": "Forest",
                "key": "/FOREST/i",
                "reason": "not run: matching this reply's keys had taken -1 s",
            }
        ],
    )


def test_a_costly_key_is_not_run_over_a_window_too_long_for_it(owner):
    # (?s).{0,50}sword.{0,50} compiles to about 800 instructions: 800 times 300 KB is over MAX_WORK.
    activate = activation(
        owner, ("Sword", ["(?s).{0,50}sword.{0,50}"], "A blade."), ("Blade", ["/blade/"], "Sharp.")
    )
    assert activate("a sword and a blade") == (["Sword", "Blade"], [])
    activated, skipped = activate("a sword and a blade " + "x" * 300_000)
    assert activated == ["Blade"]
    assert skipped == [
        {
            "entry": "Sword",
            "key": "(?s).{0,50}sword.{0,50}",
            "reason": "not run: too complex for a scan window of 300,020 characters",
        }
    ]


def test_compiled_keys_are_cached_within_a_bound():
    assert lorekeys.compile_key("/dragon/i", case_sensitive=True) is lorekeys.compile_key(
        "dragon", case_sensitive=False
    )
    assert lorekeys._compile.cache_info().maxsize == lorekeys.CACHE_SIZE


def test_the_import_notes_name_the_keys_replies_will_skip(owner):
    result = imported(owner, ("Echo", [r"(a)\1"], "Echo."), ("Fine", ["/fine/i"], "Fine."))
    assert result.warnings == [
        "lorebook entry “Echo”: the regex key (a)\\1 will be skipped: "
        "backreferences are not supported (RE2: invalid escape sequence: \\1)"
    ]


@pytest.mark.django_db(transaction=True)
def test_the_reply_goes_out_and_the_prompt_inspector_lists_the_skipped_keys(
    owner, owner_client, tiny_builtin
):
    character = imported(
        owner,
        ("Echo", [r"(a)\1"], "Echo."),
        ("Shade", [r"/(?<=dark )forest/i"], "Shade."),
        ("Forest", ["/FOREST/i"], "Tall trees."),
    ).object
    owner_client.post(reverse("chats:new", args=[character.code]))
    chat = ChatSession.objects.get(user=owner)
    sent = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "aa, a dark forest"})
    assert sent.status_code == 200
    seq = sent.json()["reply_seq"]
    reply = chat.messages.get(seq=seq)
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("complete", TINY_REPLY)
    html = owner_client.get(reverse("chats:message_prompt", args=[chat.code, seq])).content.decode()
    assert "<dt>Lore activated</dt><dd>Forest</dd>" in html
    assert "<dt>Lore keys skipped</dt>" in html
    assert (
        "<li><code>(a)\\1</code> in “Echo”: backreferences are not supported "
        "(RE2: invalid escape sequence: \\1)</li>"
    ) in html
    assert "<li><code>/(?&lt;=dark )forest/i</code> in “Shade”: lookahead and lookbehind" in html
