"""The character page shows every field the card's writer gave, with {{char}} and {{user}} filled in
for the viewer, and the card's own lorebook."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from characters.services import card_import
from settings_app.models import Persona
from tests import cardkit

pytestmark = pytest.mark.django_db


def imported(owner, **data):
    card = cardkit.v2_card("Mira")
    card["data"].update(data)
    return card_import(source=json.dumps(card).encode(), file_name="mira.json", owner=owner).object


def test_every_field_a_writer_gave_is_on_the_page_with_names_filled_in(owner, owner_client):
    character = imported(
        owner,
        description="{{char}} captains a courier ship.",
        personality="wry, decisive",
        scenario="{{user}} signs on as navigator.",
        first_mes="Welcome aboard, {{user}}.",
        alternate_greetings=["You're early, <USER>.", "Grab a crate, {{User}}."],
        mes_example="<START>\n{{user}}: Is the ship safe?\n{{char}}: Safe is a strong word.\n<START>\n{{char}}: Second example.",
        system_prompt="Write as {{char}}.",
        post_history_instructions="Keep {{char}} dry-humoured.",
        creator_notes="Made for testing.",
    )
    html = owner_client.get(character.get_absolute_url()).content.decode()
    for heading in ("Description", "Personality", "Scenario", "Greetings", "Example dialogue", "System prompt",
                    "Post-history instructions", "Creator's notes"):  # fmt: skip
        assert f"<h2>{heading}</h2>" in html, heading
    assert "olivia signs on as navigator." in html
    assert "{{user}}" not in html.split("the name you chat under")[1] and "{{char}}" not in html
    assert "Mira captains a courier ship." in html
    assert re.search(r'<li class="prose"><p>You.{1,6}re early, olivia.</p>', html)
    assert "Grab a crate, olivia." in html
    assert html.count('class="prose example"') == 2
    assert "olivia: Is the ship safe?<br>" in html and "Mira: Safe is a strong word." in html
    assert "the name you chat under" in html


def test_user_stands_for_the_viewers_default_persona(owner, other, client):
    character = imported(owner, scenario="{{user}} arrives.")
    character.visibility = "public"
    character.save()
    Persona.objects.create(user=other, name="Captain Ada", is_default=True)
    client.force_login(other)
    html = client.get(character.get_absolute_url()).content.decode()
    assert "Captain Ada arrives." in html


def test_the_cards_own_lorebook_is_listed(owner, owner_client):
    character = imported(owner)  # cardkit's card carries a lorebook
    html = owner_client.get(character.get_absolute_url()).content.decode()
    assert "<h2>Lorebook in this card</h2>" in html
    assert re.search(r"<summary>\d+ entr(y|ies): shown to the model", html)


def test_a_card_without_the_optional_fields_shows_no_empty_sections(owner, owner_client):
    character = imported(owner, personality="", mes_example="", alternate_greetings=[], system_prompt="")
    html = owner_client.get(reverse("characters:detail", args=[character.code])).content.decode()
    assert "<h2>Personality</h2>" not in html and "<h2>Example dialogue</h2>" not in html
    assert "<h2>Greeting</h2>" in html
