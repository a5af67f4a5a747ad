"""Lore that takes effect: SillyTavern's World Info settings and V3 decorators change the prompt.

Every book here comes in through the real card importer (a V2 or V3 card with a character_book, its
SillyTavern settings in each entry's `extensions`), every turn through `message_send`, and every
prompt through `generation.reply_prompt`, what a generation runs before it calls the engine (it also
records the timed effects). The model's reply is stood in for by a fixed text.
"""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from characters.models import Character
from characters.services import card_import
from chats import generation, lore
from chats.models import ChatMember, ChatSession, LoreEffect, Message
from chats.services import chat_start, message_send, next_speaker, reply_regenerate, reply_request
from core.tokens import estimate_tokens
from settings_app.models import Persona, SiteSettings
from tests import cardkit
from tools.tiny_model import TINY_REPLY

pytestmark = pytest.mark.django_db

REPLY = "Noted."


@pytest.fixture(autouse=True)
def _plain_site(db, request, monkeypatch):
    if "tiny_builtin" not in request.fixturenames:
        # Building a prompt never calls the engine: no need to start one.
        from settings_app import engines

        monkeypatch.setattr(engines.BuiltinServer, "url_for", lambda **kw: "http://127.0.0.1:9/v1")
        # ... and counting is the estimate's (the token tests are tests/chats/test_token_counts.py).
        from core import tokens

        monkeypatch.setattr(engines, "token_counter", lambda config: tokens.EstimateCounter())
    site = SiteSettings.load()
    site.system_prompt = ""
    site.post_history_instructions = ""
    site.save()


def entry(content: str, keys=(), **fields) -> dict:
    """A character_book entry; `ext` holds its SillyTavern settings (the extensions)."""
    ext = fields.pop("ext", {})
    return {
        "keys": list(keys),
        "content": content,
        "extensions": ext,
        "enabled": True,
        "insertion_order": fields.pop("order", 100),
        "position": fields.pop("position", "after_char"),
        "name": fields.pop("name", content.rsplit("\n", maxsplit=1)[-1].rstrip(".")),
        **fields,
    }


def import_card(owner, *entries: dict, name="Ada", v3=False, book=None, extensions=None, **data) -> Character:
    card = cardkit.v2_card(name, book=False)
    card["data"].update(
        {
            "description": f"{name} keeps the archive.",
            "personality": "",
            "scenario": "",
            "first_mes": "Welcome.",
            "mes_example": "",
            "system_prompt": "",
            "post_history_instructions": "",
            "alternate_greetings": [],
            **data,
        }
    )
    card["data"]["extensions"].update(extensions or {})
    card["data"]["character_book"] = {
        "name": f"{name}'s lore",
        "scan_depth": 4,
        "token_budget": 500,
        "extensions": {},
        "entries": [{"id": i, **e} for i, e in enumerate(entries)],
        **(book or {}),
    }
    if v3:
        card["spec"], card["spec_version"] = "chara_card_v3", "3.0"
        card["data"]["group_only_greetings"] = []
    result = card_import(source=json.dumps(card).encode(), file_name=f"{name}.json", owner=owner)
    assert result.status == "imported", result.reason
    return result.object


def start(owner, *entries, **card) -> ChatSession:
    return chat_start(user=owner, character=import_card(owner, *entries, **card))


def turn(chat: ChatSession, owner, text: str):
    """Send `text`, build the reply's prompt as a generation does, and finish the reply."""
    chat = ChatSession.objects.get(pk=chat.pk)  # a fresh read: nothing carried in memory
    _, reply = message_send(session=chat, user=owner, content=text)
    _, _, prompt, _ = generation.reply_prompt(reply.pk)
    _finish(reply)
    return prompt


def _finish(reply: Message) -> None:
    Message.objects.filter(pk=reply.pk).update(status=Message.Status.COMPLETE, content=REPLY, token_count=2)


def system(prompt) -> str:
    return prompt.messages[0]["content"]


def why(prompt) -> dict[str, tuple[bool, str]]:
    return {d["entry"]: (d["fired"], d["why"]) for d in prompt.lore_decisions}


# --- timed effects -------------------------------------------------------------------------------


def test_sticky_keeps_an_entry_in_for_its_messages_then_cooldown_rests_it(owner):
    chat = start(owner, entry("Dragons sleep.", ["dragon"], ext={"sticky": 4, "cooldown": 4}))
    # The greeting is message 1: the first reply has 2 messages before it, the next 4, and so on.
    first = turn(chat, owner, "A dragon!")
    assert system(first) == "Ada keeps the archive.\n\nDragons sleep."
    assert why(first) == {"Dragons sleep": (True, "key matched: dragon")}
    second = turn(chat, owner, "All quiet.")
    assert system(second) == "Ada keeps the archive.\n\nDragons sleep."
    assert why(second) == {
        "Dragons sleep": (True, "sticky: fired when the chat had 2 messages, stays until it has 6")
    }
    third = turn(chat, owner, "The dragon again?")
    assert system(third) == "Ada keeps the archive."
    assert why(third) == {"Dragons sleep": (False, "cooldown: resting until the chat has 10 messages")}
    fourth = turn(chat, owner, "Dragon, dragon.")
    assert system(fourth) == "Ada keeps the archive."
    fifth = turn(chat, owner, "Dragon!")
    assert system(fifth) == "Ada keeps the archive.\n\nDragons sleep."
    assert why(fifth) == {"Dragons sleep": (True, "key matched: dragon")}
    # Recorded per chat in the database: a firing that begins a window, one row each.
    assert list(LoreEffect.objects.filter(session=chat).values_list("position", flat=True)) == [2, 10]


def test_a_regenerated_reply_sees_what_its_first_generation_saw(owner):
    chat = start(owner, entry("Dragons sleep.", ["dragon"], ext={"sticky": 4}))
    turn(chat, owner, "A dragon!")
    second = turn(chat, owner, "All quiet.")
    last = Message.objects.get(session=chat, seq=5)
    for _ in range(2):  # two more swipes of the same reply
        regenerated = reply_regenerate(message=last)
        _, _, again, _ = generation.reply_prompt(regenerated.pk, "regenerate")
        _finish(regenerated)
        assert again.messages == second.messages
        assert why(again) == why(second)
    assert list(LoreEffect.objects.filter(session=chat).values_list("position", flat=True)) == [2]


def test_regenerating_the_reply_that_began_an_effect_replaces_it_and_deleting_it_ends_it(owner):
    chat = start(owner, entry("Dragons sleep.", ["dragon"], ext={"sticky": 4}))
    turn(chat, owner, "A dragon!")
    first_reply = Message.objects.get(session=chat, seq=3)
    regenerated = reply_regenerate(message=first_reply)
    generation.reply_prompt(regenerated.pk, "regenerate")
    _finish(regenerated)
    assert LoreEffect.objects.filter(session=chat).count() == 1
    from chats.services import messages_delete

    messages_delete(rows=Message.objects.filter(session=chat, seq__gte=2))
    assert not LoreEffect.objects.filter(session=chat).exists()


def test_a_branch_keeps_the_timed_effects_of_the_history_it_copied(owner):
    from chats.services import chat_branch

    chat = start(owner, entry("Dragons sleep.", ["dragon"], ext={"sticky": 4}))
    turn(chat, owner, "A dragon!")
    turn(chat, owner, "Hm.")
    early = chat_branch(session=chat, at_seq=2)  # before the reply that began it
    kept = chat_branch(session=chat, at_seq=3)
    assert why(turn(kept, owner, "Quiet."))["Dragons sleep"] == (
        True,
        "sticky: fired when the chat had 2 messages, stays until it has 6",
    )
    assert not LoreEffect.objects.filter(session=early).exists()


def test_purging_a_chat_and_its_character_takes_their_effects_along(owner):
    from datetime import timedelta
    from io import StringIO

    from django.core.management import call_command
    from django.utils import timezone

    chat = start(owner, entry("Dragons sleep.", ["dragon"], ext={"sticky": 4}))
    turn(chat, owner, "A dragon!")
    assert LoreEffect.objects.filter(session=chat).count() == 1
    long_ago = timezone.now() - timedelta(days=60)
    ChatSession.objects.filter(pk=chat.pk).update(deleted_at=long_ago)
    Character.objects.filter(pk=chat.character_id).update(deleted_at=long_ago)
    call_command("prune", stdout=StringIO(), stderr=StringIO())
    assert not ChatSession.objects.filter(pk=chat.pk).exists()
    assert not LoreEffect.objects.exists()


def test_triggers_limit_an_entry_to_some_kinds_of_generation(owner):
    chat = start(
        owner,
        entry("First take.", ["x"], name="Normal", ext={"triggers": ["normal"]}),
        entry("Another take.", ["x"], name="Swipe", ext={"triggers": ["swipe"]}),
        entry("Asked again.", ["x"], name="Regenerate", ext={"triggers": ["regenerate"]}),
    )
    first = turn(chat, owner, "x")
    assert system(first) == "Ada keeps the archive.\n\nFirst take."
    assert why(first)["Swipe"] == (False, "triggers: only for swipe, not normal")
    regenerated = reply_regenerate(message=Message.objects.get(session=chat, seq=3))
    _, _, again, _ = generation.reply_prompt(regenerated.pk, "regenerate")
    assert system(again) == "Ada keeps the archive.\n\nAnother take.\nAsked again."


def test_continuing_a_reply_keeps_what_its_generation_began(owner):
    chat = start(owner, entry("Dragons sleep.", ["dragon"], ext={"sticky": 4, "triggers": ["normal"]}))
    turn(chat, owner, "A dragon!")
    from chats.services import reply_continue

    reply = reply_continue(message=Message.objects.get(session=chat, seq=3))
    _, _, continued, _ = generation.reply_prompt(reply.pk, "continue")
    assert why(continued)["Dragons sleep"] == (False, "triggers: only for normal, not continue")
    assert list(LoreEffect.objects.filter(session=chat).values_list("position", flat=True)) == [2]


def test_delay_holds_an_entry_until_the_chat_has_enough_messages(owner):
    chat = start(owner, entry("The bell tolls.", ["bell"], ext={"delay": 4}))
    early = turn(chat, owner, "A bell rings.")
    assert system(early) == "Ada keeps the archive."
    assert why(early) == {"The bell tolls": (False, "delay: waits until the chat has 4 messages (it has 2)")}
    later = turn(chat, owner, "The bell again.")
    assert system(later) == "Ada keeps the archive.\n\nThe bell tolls."


def test_probability_is_rolled_once_per_chat_and_reply_and_a_regenerate_rolls_the_same(owner):
    character = import_card(
        owner, entry("Rain falls.", ["rain"], ext={"probability": 50, "useProbability": True})
    )
    outcomes = []
    for _ in range(20):  # both outcomes: all 20 alike has odds of 1 in 500,000
        chat = chat_start(user=owner, character=character)
        prompt = turn(chat, owner, "Rain?")
        fired, reason = why(prompt)["Rain falls"]
        assert ("Rain falls." in system(prompt)) is fired
        assert reason.startswith(
            "key matched: rain; probability 50% passed" if fired else "probability: rolled "
        )
        reply = Message.objects.get(session=chat, seq=3)
        regenerated = reply_regenerate(message=reply)
        _, _, again, _ = generation.reply_prompt(regenerated.pk, "regenerate")
        _finish(regenerated)
        assert why(again) == why(prompt)
        outcomes.append(fired)
    assert True in outcomes and False in outcomes


def test_probability_off_or_sticky_never_rolls(owner):
    chat = start(
        owner,
        entry("Fog.", ["fog"], ext={"probability": 0, "useProbability": False}),
        entry("Never.", ["fog"], ext={"probability": 0, "useProbability": True}),
    )
    prompt = turn(chat, owner, "fog")
    assert system(prompt) == "Ada keeps the archive.\n\nFog."
    assert why(prompt)["Never"][1].startswith("probability: rolled ")


def test_a_world_info_file_attached_to_a_chat_brings_its_settings(owner):
    from characters.services import lorebook_import

    def wi(uid, content, keys, **fields):
        return {
            "uid": uid,
            "key": keys,
            "keysecondary": [],
            "comment": content,
            "content": content,
            "constant": False,
            "selective": True,
            "order": 100,
            "position": 0,
            "disable": False,
            **fields,
        }

    world = {
        "entries": {
            "0": wi(0, "Stay close.", ["storm"], position=4, depth=0, role=2, sticky=4),
            "1": wi(1, "Cats purr.", ["cat"], matchWholeWords=True),
            "2": wi(2, "Rarely.", ["storm"], comment="Rare storm", probability=0, useProbability=True),
        }
    }
    result = lorebook_import(source=json.dumps(world).encode(), file_name="weather.json", owner=owner)
    assert result.status == "imported", result.reason
    chat = start(owner)
    chat.lorebooks.add(result.object)
    first = turn(chat, owner, "A storm over the concatenated roofs.")
    assert first.messages[-1] == {"role": "assistant", "content": "Stay close."}
    assert system(first) == "Ada keeps the archive."
    assert why(first)["Rare storm"][1].startswith("probability: rolled ")
    assert why(first)["Stay close."] == (True, "key matched: storm")
    second = turn(chat, owner, "The cat sleeps.")
    assert second.messages[-1] == {"role": "assistant", "content": "Stay close."}
    assert system(second) == "Cats purr.\n\nAda keeps the archive."


def test_settings_written_in_the_lorebook_editor_take_effect(owner, owner_client):
    from characters.models import Lorebook
    from tests.characters.test_lorebook_editor import add_entry, new_book

    book = new_book(owner_client)
    add_entry(
        owner_client,
        book,
        comment="Gulls",
        keys="gull",
        content="Gulls cry.",
        st_position=4,
        depth=0,
        role=2,
        sticky=4,
        match_whole_words="on",
    )
    add_entry(owner_client, book, comment="Tide", keys="tide", content="The tide turns.", delay=4)
    chat = start(owner)
    chat.lorebooks.add(Lorebook.objects.get(pk=book.pk))
    first = turn(chat, owner, "A gull and a tide, seagulls too.")
    assert first.messages[-1] == {"role": "assistant", "content": "Gulls cry."}
    assert why(first) == {
        "Gulls": (True, "key matched: gull"),
        "Tide": (False, "delay: waits until the chat has 4 messages (it has 2)"),
    }
    second = turn(chat, owner, "Seagulls only.")
    assert second.messages[-1] == {"role": "assistant", "content": "Gulls cry."}
    assert why(second)["Gulls"] == (True, "sticky: fired when the chat had 2 messages, stays until it has 6")
    assert system(second) == "The tide turns.\n\nAda keeps the archive."


def test_recursion_flags_and_budget_exceptions(owner):
    chat = start(
        owner,
        entry("Mentions the tower.", ["start"], name="Start"),
        entry("Tower lore.", ["tower"], name="Tower", ext={"delay_until_recursion": True}),
        entry("Tower, not by recursion.", ["tower"], name="Excluded", ext={"exclude_recursion": True}),
        entry("Says moat but feeds nothing.", ["start"], name="Quiet", ext={"prevent_recursion": True}),
        entry("Moat lore.", ["moat"], name="Moat"),
        entry("x" * 400, ["start"], name="Huge", ext={"ignore_budget": True}),
        entry("@@ignore_on_max_context\nFirst to go.", ["start"], name="Trim", priority=100),
        # room for Start, Tower and Quiet; Trim's priority would win it, but it goes first
        book={
            "recursive_scanning": True,
            "token_budget": sum(
                map(estimate_tokens, ["Mentions the tower.", "Tower lore.", "Says moat but feeds nothing."])
            ),
        },
    )
    prompt = turn(chat, owner, "start")
    decisions = why(prompt)
    assert decisions["Tower"] == (True, "key matched: tower (recursion)")
    assert decisions["Excluded"] == (False, "no key matched in the last 4 messages")
    assert decisions["Moat"] == (False, "no key matched in the last 4 messages")
    assert decisions["Quiet"][0] is True and decisions["Huge"][0] is True
    assert decisions["Trim"][0] is False and decisions["Trim"][1].startswith("left out for budget:")
    direct = turn(chat, owner, "the tower")
    assert why(direct)["Tower"][0] is True and why(direct)["Excluded"] == (True, "key matched: tower")


# --- inclusion groups ----------------------------------------------------------------------------


def test_an_entry_delayed_until_recursion_gets_its_recursive_pass(owner):
    chat = start(
        owner,
        entry("Moat lore.", ["moat"], name="Moat", ext={"delay_until_recursion": True}),
        book={"recursive_scanning": True},
    )
    prompt = turn(chat, owner, "The moat is deep.")
    assert system(prompt) == "Ada keeps the archive.\n\nMoat lore."
    assert why(prompt)["Moat"] == (True, "key matched: moat (recursion)")
    assert "Moat lore." not in system(
        turn(
            start(owner, entry("Moat lore.", ["moat"], name="Moat", ext={"delay_until_recursion": True})),
            owner,
            "moat",
        )
    )  # a book without recursive scanning has no recursive pass


def test_an_inclusion_group_lets_one_entry_in_by_weight(owner):
    chat = start(
        owner,
        entry("Sunny.", ["weather"], name="Sunny", ext={"group": "weather", "group_weight": 0}),
        entry("Stormy.", ["weather"], name="Stormy", ext={"group": "weather", "group_weight": 100}),
        entry("Windy.", ["weather"], name="Windy", ext={"group": "weather,air", "group_weight": 0}),
    )
    prompt = turn(chat, owner, "What is the weather?")
    assert system(prompt) == "Ada keeps the archive.\n\nStormy."
    decisions = why(prompt)
    assert decisions["Stormy"] == (True, "key matched: weather")
    assert decisions["Sunny"][0] is False
    assert decisions["Sunny"][1].startswith(
        "inclusion group “weather”: lost to Stormy, which won the weighted roll"
    )


def test_group_override_wins_by_insertion_order_and_scoring_keeps_the_best_match(owner):
    chat = start(
        owner,
        entry("Low.", ["sea"], name="Low", order=10, ext={"group": "g", "group_override": True}),
        entry("High.", ["sea"], name="High", order=90, ext={"group": "g", "group_override": True}),
        entry("Plain.", ["sea"], name="Plain", order=200, ext={"group": "g"}),
        entry("One key.", ["ship"], name="One", ext={"group": "s", "use_group_scoring": True}),
        entry("Two keys.", ["ship", "sail"], name="Two", ext={"group": "s", "use_group_scoring": True}),
    )
    prompt = turn(chat, owner, "A ship sets sail on the sea.")
    assert system(prompt) == "Ada keeps the archive.\n\nHigh.\nTwo keys."
    decisions = why(prompt)
    assert decisions["Low"] == (False, "inclusion group “g”: lost to High, which has priority")
    assert decisions["Plain"] == (False, "inclusion group “g”: lost to High, which has priority")
    assert decisions["One"] == (False, "inclusion group “s”: 1 keys matched, another entry had 2")


# --- matching ------------------------------------------------------------------------------------


def test_whole_word_keys_match_words_not_parts_of_words(owner):
    chat = start(
        owner,
        entry("Cats purr.", ["cat"], name="Cat", ext={"match_whole_words": True}),
        entry("Black cats.", ["black cat"], name="Black cat", ext={"match_whole_words": True}),
        entry("Any cat.", ["cat"], name="Part"),
        entry("Jürgen knows.", ["jürgen", "c++"], name="Non-word", ext={"match_whole_words": True}),
        book={"scan_depth": 1},
    )
    prompt = turn(chat, owner, "Concatenate the blackcat files, HiJürgen, inc++.")
    assert system(prompt) == "Ada keeps the archive.\n\nAny cat."
    prompt = turn(chat, owner, "(cat) or a black cat?")
    assert system(prompt) == "Ada keeps the archive.\n\nCats purr.\nBlack cats.\nAny cat."
    for text in ("Hi JÜRGEN!", "I write c++."):
        assert system(turn(chat, owner, text)) == "Ada keeps the archive.\n\nJürgen knows."


def test_whole_words_and_decorators_stay_linear_on_hostile_text(owner):
    from tests.hang import finishes

    character = import_card(
        owner,
        entry("Word.", ["a" * 50], name="Word", ext={"match_whole_words": True}),
        entry("@@unknown\n" * 9_000 + "Many decorators.", ["b"], name="Decorated"),
    )
    chat = chat_start(user=owner, character=character)
    found = lore.entries_for(session=chat, character=character, position=2)

    def activated(text: str) -> list[str]:
        return lore.activate(found, recent=[text], estimate=estimate_tokens).activated

    assert finishes(activated, "a" * 300_000 + " b") == ["Decorated"]
    assert finishes(activated, "a" * 50 + "!" + "a" * 300_000) == ["Word"]


def test_keys_may_name_the_character_and_the_user_by_macro(owner):
    chat = start(
        owner,
        entry("Ada is named.", ["{{char}}"], name="Char"),
        entry("Olivia is named.", ["<USER>"], name="User"),
        entry("Whole word.", ["{{char}}"], name="Word", ext={"match_whole_words": True}),
    )
    prompt = turn(chat, owner, "Adage, says olivia.")
    assert system(prompt) == "Ada keeps the archive.\n\nAda is named.\nOlivia is named."
    assert why(prompt)["Char"] == (True, "key matched: {{char}}")


def test_an_entry_scans_its_own_depth(owner):
    chat = start(
        owner,
        entry("Deep.", ["anchor"], name="Deep", ext={"scan_depth": 5}),
        entry("Shallow.", ["anchor"], name="Shallow"),
        book={"scan_depth": 1},
    )
    turn(chat, owner, "Drop the anchor.")
    prompt = turn(chat, owner, "Waiting.")
    assert system(prompt) == "Ada keeps the archive.\n\nDeep."
    assert why(prompt)["Shallow"] == (False, "no key matched in the last 1 message")


def test_entries_can_match_the_card_and_the_persona(owner):
    Persona.objects.create(user=owner, name="Olivia", description="A wandering librarian.", is_default=True)
    chat = start(
        owner,
        entry("Gears turn.", ["clockwork"], name="Card", ext={"match_character_description": True}),
        entry("Books whisper.", ["librarian"], name="Persona", ext={"match_persona_description": True}),
        entry("Not from the card.", ["clockwork"], name="History only"),
        description="Ada is a clockwork archivist.",
    )
    prompt = turn(chat, owner, "Hello.")
    assert system(prompt) == (
        "Ada is a clockwork archivist.\n\nGears turn.\nBooks whisper.\n\nAbout Olivia: A wandering librarian."
    )
    assert why(prompt)["Card"] == (True, "key matched: clockwork")
    assert why(prompt)["History only"] == (False, "no key matched in the last 4 messages")


# --- where entries go ----------------------------------------------------------------------------


def test_an_entry_at_depth_goes_into_the_history_with_its_role(owner):
    chat = start(
        owner,
        entry("Whisper one.", ["go"], name="A", ext={"position": 4, "depth": 1, "role": 1}),
        entry("Whisper two.", ["go"], name="B", order=120, ext={"position": 4, "depth": 1, "role": 1}),
        entry("Narrator.", ["go"], name="C", ext={"position": 4, "depth": 0, "role": 0}),
    )
    turn(chat, owner, "Hi.")
    prompt = turn(chat, owner, "Let's go.")
    assert prompt.messages == [
        {"role": "system", "content": "Ada keeps the archive."},
        {"role": "assistant", "content": "Welcome."},
        {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": REPLY},
        {"role": "user", "content": "Whisper one.\nWhisper two."},
        {"role": "user", "content": "Let's go."},
        {"role": "system", "content": "Narrator."},
    ]


def test_the_characters_note_goes_in_at_its_depth_and_role(owner):
    chat = start(
        owner,
        extensions={"depth_prompt": {"prompt": "{{char}} hides a key.", "depth": 1, "role": "assistant"}},
    )
    prompt = turn(chat, owner, "Hello there.")
    assert prompt.messages == [
        {"role": "system", "content": "Ada keeps the archive."},
        {"role": "assistant", "content": "Welcome."},
        {"role": "assistant", "content": "Ada hides a key."},
        {"role": "user", "content": "Hello there."},
    ]
    assert [p.name for p in prompt.parts if p.name == "character's note"] == ["character's note"]


def test_lore_at_the_authors_note_and_around_the_examples(owner):
    chat = start(
        owner,
        entry("Above the note.", ["x"], name="AN top", ext={"position": 2}),
        entry("Below the note.", ["x"], name="AN bottom", ext={"position": 3}),
        entry("Before examples.", ["x"], name="EM top", ext={"position": 5}),
        mes_example="<START>\n{{char}}: Shh.",
    )
    ChatSession.objects.filter(pk=chat.pk).update(author_note="Keep it short.", author_note_depth=0)
    prompt = turn(chat, owner, "x")
    assert prompt.messages[-1] == {
        "role": "system",
        "content": "Above the note.\nKeep it short.\nBelow the note.",
    }
    assert system(prompt) == (
        "Ada keeps the archive.\n\nBefore examples.\nExample dialogue:\n<START>\nAda: Shh."
    )


def test_lore_goes_to_its_places_under_a_context_template_too(owner, owner_client):
    from chats import story
    from chats.prompt import build_prompt
    from tests.chats.test_prompt_presets import choose, imported

    chat = start(
        owner,
        entry("@@position after_desc\nShe hums.", ["go"], name="Hums"),
        entry("@@position personality\nAlso brave.", ["go"], name="Brave"),
        entry("Bells ring.", ["go"], name="Bells", ext={"position": 4, "depth": 0, "role": 0}),
        personality="kind",
    )
    turn(chat, owner, "go")
    chat = choose(owner_client, chat, context_preset=imported(owner, "context/Storyteller.json"))
    prompt = build_prompt(
        session=chat,
        character=chat.character,
        user_name="Olivia",
        persona_description="",
        site=SiteSettings.load(),
        context_size=2048,
        reply_tokens=100,
        before_seq=chat.last_seq + 1,
        mode="text",
        presets=story.chat_presets(chat),
    )
    assert prompt.text == (
        "## Ada\nAda keeps the archive.\nShe hums.\nTemper: kind\nAlso brave.\nSetting: anywhere\n"
        "~~~ The tale begins ~~~\nAda: Welcome.\nOlivia: go\nAda: Noted.\nBells ring.\nAda:"
    )


# --- V3 decorators -------------------------------------------------------------------------------


def test_v3_decorators_place_and_gate_entries(owner):
    chat = start(
        owner,
        entry("@@depth 0\n@@role assistant\nA prefill.", ["go"], name="Depth"),
        entry("@@position after_desc\nAfter the description.", ["go"], name="After desc"),
        entry("@@position personality\nAlso stern.", ["go"], name="Personality"),
        entry("@@dont_activate\nNever.", ["go"], name="Dont"),
        entry("@@activate\nAlways.", [], name="Activate"),
        entry("@@activate_only_after 2\nLater on.", ["go"], name="After"),
        entry("@@activate_only_every 2\nEvery other.", ["go"], name="Every"),
        entry("@@additional_keys moon,star\nNight.", ["go"], name="Additional"),
        entry("@@exclude_keys sun\nNo sun.", ["go"], name="Exclude"),
        entry(
            "@@risu_only 3\n@@@depth 1\n@@@role assistant\n@@role user\nFallback.", ["go"], name="Fallback"
        ),
        v3=True,
        personality="kind",
    )
    prompt = turn(chat, owner, "go under the sun")
    assert system(prompt) == (
        "Ada keeps the archive.\n\nAfter the description.\n\nAda's personality: kind\nAlso stern.\n\nAlways."
    )
    assert prompt.messages[1:] == [
        {"role": "assistant", "content": "Welcome."},
        {"role": "user", "content": "Fallback."},
        {"role": "user", "content": "go under the sun"},
        {"role": "assistant", "content": "A prefill."},
    ]
    decisions = why(prompt)
    assert decisions["Dont"] == (False, "@@dont_activate")
    assert decisions["After"] == (False, "@@activate_only_after 2: 1 character messages so far")
    assert decisions["Every"] == (False, "@@activate_only_every 2: 1 character messages so far")
    assert decisions["Additional"] == (False, "no key matched in the last 4 messages")
    assert decisions["Exclude"] == (False, "no key matched in the last 4 messages")
    later = turn(chat, owner, "go see the moon")
    assert "Later on." in system(later) and "Every other." in system(later) and "Night." in system(later)
    assert "No sun." not in system(later)  # the sun is still in the last 4 messages


def test_v3_match_history_and_ui_prompt_decorators(owner):
    chat = start(
        owner,
        entry("@@keep_activate_after_match\nOnce met, always.", ["ghost"], name="Keep"),
        entry("@@dont_activate_after_match\nOnly the first time.", ["ghost"], name="Once"),
        entry("@@disable_ui_prompt post_history_instructions\nNo jailbreak.", ["ghost"], name="UI"),
        v3=True,
        book={"scan_depth": 1},
        post_history_instructions="Stay in character.",
    )
    first = turn(chat, owner, "A ghost!")
    assert system(first) == "Ada keeps the archive.\n\nOnce met, always.\nOnly the first time.\nNo jailbreak."
    assert first.messages[-1] == {"role": "user", "content": "A ghost!"}  # no post-history instructions
    second = turn(chat, owner, "Gone.")
    assert system(second) == "Ada keeps the archive.\n\nOnce met, always."
    assert why(second)["Once"] == (
        False,
        "@@dont_activate_after_match: it fired when the chat had 2 messages",
    )
    assert second.messages[-1] == {"role": "system", "content": "Stay in character."}


def test_is_greeting_follows_the_greeting_the_chat_shows(owner):
    from chats.services import message_select_alternative

    chat = start(
        owner,
        entry("@@is_greeting 1\nThe storm greeting.", ["go"], name="Storm"),
        v3=True,
        alternate_greetings=["A storm rolls in."],
    )
    assert "The storm greeting." not in system(turn(chat, owner, "go"))
    greeting = Message.objects.get(session=chat, seq=1)
    message_select_alternative(message=greeting, index=1, version=greeting.version)
    prompt = turn(chat, owner, "go on")
    assert system(prompt) == "Ada keeps the archive.\n\nThe storm greeting."
    assert why(prompt)["Storm"] == (True, "key matched: go")


def test_decorator_lines_are_parsed_as_the_v3_spec_says():
    assert lore.parse_decorators("@@depth 2\n@@depth 5\n@@unknown\n@@@role user\n\nText\n@@not one") == (
        {"depth": 2, "role": "user"},
        "Text\n@@not one",
    )
    assert lore.parse_decorators("@@depth x\n@@@depth 3\nT") == ({"depth": 3}, "T")
    assert lore.parse_decorators("@@depth 1\n@@@depth 3\nT") == ({"depth": 1}, "T")
    assert lore.parse_decorators("plain @@depth 1") == ({}, "plain @@depth 1")


def test_settings_of_the_wrong_type_fall_back_to_sillytaverns_defaults():
    from characters.models import Lorebook, LorebookEntry

    odd = {
        "position": "four",
        "depth": -3,
        "role": {"x": 1},
        "probability": "NaN",
        "useProbability": "yes",
        "group": ["a"],
        "group_weight": float("inf"),
        "sticky": "2.5",
        "cooldown": True,
        "delay": None,
        "scan_depth": 10**12,
        "match_whole_words": 1,
        "match_persona_description": "true",
    }
    row = LorebookEntry(pk=1, lorebook=Lorebook(pk=1), keys=["k"], content="@@depth x\nText.", extensions=odd)
    entry = lore.Entry(row)
    assert (entry.position, entry.depth, entry.role) == ("before_char", 0, "system")
    assert (entry.probability, entry.use_probability, entry.groups, entry.group_weight) == (
        100.0,
        True,
        [],
        100.0,
    )
    assert (entry.sticky, entry.cooldown, entry.delay, entry.scan_depth) == (0, 0, 0, lore.MAX_SCAN_DEPTH)
    assert (entry.whole_words, entry.sources, entry.decorators, entry.content) == (False, (), {}, "Text.")


# --- group chats ---------------------------------------------------------------------------------


def group_chat(owner, *members: Character) -> ChatSession:
    chat = chat_start(user=owner, character=members[0])
    ChatSession.objects.filter(pk=chat.pk).update(is_group=True, turn_strategy="natural")
    for i, member in enumerate(members):
        ChatMember.objects.create(session=chat, character=member, position=i)
    return ChatSession.objects.get(pk=chat.pk)


def test_natural_order_honours_talkativeness_and_mentions(owner):
    shy = import_card(owner, name="Shy", extensions={"talkativeness": "0"})
    chatty = import_card(owner, name="Chatty", extensions={"talkativeness": 1})
    chat = group_chat(owner, shy, chatty)
    speakers = set()
    for _ in range(6):
        _, reply = message_send(session=chat, user=owner, content="Hello, everyone.")
        speakers.add(reply.speaker)
        _finish(reply)
        chat = ChatSession.objects.get(pk=chat.pk)
    assert speakers == {"Chatty"}
    _, reply = message_send(session=chat, user=owner, content="What do you think, shy one?")
    assert reply.speaker == "Shy"
    _finish(reply)
    # Without a new message the last speaker does not answer itself; the same moment, the same pick.
    chat = ChatSession.objects.get(pk=chat.pk)
    assert next_speaker(chat).name == "Chatty"
    assert next_speaker(chat).name == next_speaker(ChatSession.objects.get(pk=chat.pk)).name


def test_natural_order_rolls_are_seeded_by_the_chat(owner):
    a = import_card(owner, name="Ann", extensions={"talkativeness": 0.5})
    b = import_card(owner, name="Bea", extensions={"talkativeness": 0.5})
    picks = []
    for _ in range(24):  # both picked: all 24 alike has odds of 1 in 8 million
        chat = group_chat(owner, a, b)
        first = next_speaker(chat, content="Hello.")
        assert next_speaker(chat, content="Hello.") == first
        picks.append(first.name)
    assert set(picks) == {"Ann", "Bea"}


def test_each_member_brings_its_own_book_when_it_speaks(owner):
    ann = import_card(owner, entry("Ann's secret.", ["archive"]), name="Ann")
    bea = import_card(owner, entry("Bea's secret.", ["archive"]), name="Bea", description="Bea guards it.")
    chat = group_chat(owner, ann, bea)
    ChatSession.objects.filter(pk=chat.pk).update(turn_strategy="manual")
    _, reply = message_send(session=chat, user=owner, content="The archive?", speaker=bea)
    _, _, prompt, _ = generation.reply_prompt(reply.pk)
    _finish(reply)
    assert system(prompt).startswith("Bea guards it.\n\nBea's secret.\n\nAlso in this chat: Ann")
    assert "Ann's secret." not in system(prompt)
    reply = reply_request(session=ChatSession.objects.get(pk=chat.pk), speaker=ann)
    _, _, prompt, _ = generation.reply_prompt(reply.pk)
    assert system(prompt).startswith("Ann keeps the archive.\n\nAnn's secret.")
    assert "Bea's secret." not in system(prompt)


# --- cost ----------------------------------------------------------------------------------------


def test_prompt_building_stays_constant_in_queries_with_timed_effect_state(owner, django_assert_num_queries):
    from settings_app import engines
    from tests.factories import add_messages

    entries = [
        entry(f"Fact {i}.", [f"k{i}"], name=f"E{i}", ext={"sticky": 2, "cooldown": 2}) for i in range(30)
    ]
    chat = start(owner, *entries)
    # Long-term memory off: its recall of older messages has guards of its own (test_memory.py).
    from chats.models import ChatMemory

    ChatMemory.objects.create(session=chat, enabled=False)
    words = " ".join(f"k{i}" for i in range(30))
    site = SiteSettings.load()
    config = engines.resolve_engine(site)

    def measure() -> None:
        _, reply = message_send(session=ChatSession.objects.get(pk=chat.pk), user=owner, content=words)
        row = Message.objects.select_related(
            "session", "session__character", "session__persona", "session__user"
        ).get(pk=reply.pk)
        # the history, the entries with each one's latest effect (a subquery, no query of its own),
        # the chat's memory settings
        with django_assert_num_queries(3):
            prompt = generation.prompt_for(
                session=row.session,
                character=row.session.character,
                site=site,
                config=config,
                before_seq=row.seq,
            )
        assert len(prompt.activation.started) == 30
        # recording: whether this reply began anything before (none here), one insert
        with django_assert_num_queries(2):
            lore.effects_save(
                session=row.session,
                message_id=row.pk,
                position=prompt.position,
                started=prompt.activation.started,
            )
        # generated again: that check, then (in a savepoint here) one delete and one insert
        with django_assert_num_queries(5):
            lore.effects_save(
                session=row.session,
                message_id=row.pk,
                position=prompt.position,
                started=prompt.activation.started,
            )
        _finish(reply)

    measure()
    # A long chat with thousands of earlier effects costs the same.
    add_messages(ChatSession.objects.get(pk=chat.pk), 200, text="filler {seq}")
    anchor = Message.objects.filter(session=chat).order_by("seq").first()
    LoreEffect.objects.bulk_create(
        LoreEffect(session=chat, entry_id=e.pk, message_id=anchor.pk, position=p)
        for e in chat.character.lorebook.entries.all()
        for p in range(5, 195, 2)
    )
    assert LoreEffect.objects.filter(session=chat).count() > 2800
    measure()


def test_activated_entries_are_counted_in_one_batch(owner):
    character = import_card(owner, *(entry(f"Fact {i}.", ["x"], name=f"E{i}") for i in range(5)))
    chat = chat_start(user=owner, character=character)
    found = lore.entries_for(session=chat, character=character, position=2)
    batches = []

    def one(text):
        raise AssertionError("counted one at a time")

    def many(texts):
        batches.append(list(texts))
        return [3 for _ in texts]

    result = lore.activate(found, recent=["x"], estimate=one, estimate_many=many)
    assert batches == [[f"Fact {i}." for i in range(5)]] and result.tokens == 15


def test_a_reply_whose_lore_begins_nothing_writes_nothing(owner, django_assert_num_queries):
    chat = start(owner, entry("Plain.", ["x"]), entry("Odds.", ["x"], ext={"probability": 50}))
    _, reply = message_send(session=ChatSession.objects.get(pk=chat.pk), user=owner, content="x")
    _, _, prompt, _ = generation.reply_prompt(reply.pk)
    assert prompt.activation.started == []
    with django_assert_num_queries(1):  # whether an earlier generation of it began anything: no
        lore.effects_save(session=chat, message_id=reply.pk, position=prompt.position, started=[])
    assert not LoreEffect.objects.exists()


# --- end to end, with the model ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_prompt_inspector_says_why_each_entry_fired_or_not(owner, owner_client, tiny_builtin):
    site = SiteSettings.load()
    site.system_prompt = ""
    site.save()
    character = import_card(
        owner,
        entry("Dragons sleep.", ["dragon"], ext={"sticky": 4}),
        entry("The bell tolls.", ["bell"], ext={"delay": 10}),
        entry("Sunny.", ["sky"], name="Sunny", ext={"group": "w", "group_weight": 0}),
        entry("Stormy.", ["sky"], name="Stormy", ext={"group": "w", "group_weight": 100}),
    )
    owner_client.post(reverse("chats:new", args=[character.code]))
    chat = ChatSession.objects.get(user=owner)
    seqs = []
    for text in ("A dragon and a bell under the sky.", "Quiet now."):
        sent = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": text})
        seq = sent.json()["reply_seq"]
        reply = chat.messages.get(seq=seq)
        generation.wait_for(reply.pk)
        reply.refresh_from_db()
        assert (reply.status, reply.content) == ("complete", TINY_REPLY)
        seqs.append(seq)
    html = owner_client.get(reverse("chats:message_prompt", args=[chat.code, seqs[1]])).content.decode()
    assert (
        "<td>Dragons sleep</td><td>Ada&#x27;s lore</td><td>yes</td><td>sticky: fired when the chat had 2 messages, stays until it has 6</td>"
        in html
    )
    assert (
        "<td>The bell tolls</td><td>Ada&#x27;s lore</td><td>no</td><td>delay: waits until the chat has 10 messages (it has 4)</td>"
        in html
    )
    html = owner_client.get(reverse("chats:message_prompt", args=[chat.code, seqs[0]])).content.decode()
    assert "<td>Stormy</td><td>Ada&#x27;s lore</td><td>yes</td><td>key matched: sky</td>" in html
    assert (
        "<td>Sunny</td><td>Ada&#x27;s lore</td><td>no</td><td>inclusion group “w”: lost to Stormy, which won the weighted roll"
        in html
    )
