"""{{roll}} on hostile input: a die past MAX_DIE_SIDES is left as written, never a 500 or a stall."""

from __future__ import annotations

import json
import random

import pytest
from django.urls import reverse

from characters.services import card_import
from chats import generation
from chats.macros import MAX_DIE_SIDES, MacroContext, expand
from chats.models import ChatSession, PromptSnapshot
from tests import cardkit

HUGE = "{{roll:d" + "9" * 5000 + "}}"  # past the 4,300 digits int() converts
CTX = MacroContext(char="Mira", user="Olivia")


@pytest.mark.parametrize(
    "text",
    [HUGE, "{{roll:d1000001}}", "{{roll:d0}}", "{{roll:d²}}", "{{roll:2d6}}", "{{roll:d-5}}"],
    ids=["5000 digits", "one past the limit", "zero", "superscript digit", "two dice", "negative"],
)
def test_a_die_rpchat_does_not_roll_is_left_as_written(text):
    assert expand(text, CTX) == text


def test_dice_up_to_the_limit_roll():
    rng = random.Random(7)
    for text, sides in [
        ("{{roll:d20}}", 20),
        ("{{ROLL:6}}", 6),
        ("{{roll:d٣}}", 3),
        ("{{roll:d1000000}}", 10**6),
    ]:
        assert 1 <= int(expand(text, CTX, rng=rng)) <= sides
    assert MAX_DIE_SIDES == 10**6


@pytest.mark.django_db
def test_a_greeting_with_a_huge_die_starts_the_chat(owner, owner_client):
    card = cardkit.v2_card("Mira", book=False)
    card["data"]["first_mes"] = f"You roll {HUGE} and {{{{roll:d20}}}}."
    character = card_import(source=json.dumps(card).encode(), file_name="mira.json", owner=owner).object
    response = owner_client.post(reverse("chats:new", args=[character.code]))
    assert response.status_code == 302
    greeting = ChatSession.objects.get(user=owner).messages.get().content
    assert greeting.startswith(f"You roll {HUGE} and ") and 1 <= int(greeting.rsplit(" ", 1)[1][:-1]) <= 20


@pytest.mark.django_db(transaction=True)
def test_an_authors_note_with_a_huge_die_is_sent_as_written(
    owner, owner_client, scripted_server, make_profile
):
    make_profile(scripted_server.url)  # the tiny model's context is too small for 5,000 digits
    card = cardkit.v2_card("Mira", book=False)
    character = card_import(source=json.dumps(card).encode(), file_name="mira.json", owner=owner).object
    owner_client.post(reverse("chats:new", args=[character.code]))
    chat = ChatSession.objects.get(user=owner)
    settings_url = reverse("chats:settings", args=[chat.code])
    fields = {"title": "Dice", "author_note": HUGE, "author_note_depth": 0, "author_note_frequency": 1}
    fields |= {"author_note_role": "system", "turn_strategy": "mention"}
    assert owner_client.post(settings_url, fields).status_code == 302
    sent = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Roll for it"})
    assert sent.status_code == 200
    reply = chat.messages.get(seq=sent.json()["reply_seq"])
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("complete", "Once upon a time")
    assert scripted_server.requests[-1]["messages"][-1] == {"role": "system", "content": HUGE}
    assert PromptSnapshot.objects.get(message=reply).data["messages"][-1] == {
        "role": "system",
        "content": HUGE,
    }
