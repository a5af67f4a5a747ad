"""The card importer tells other files from cards, and knows a card rpchat exported when it comes back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from characters.models import Character
from tests import cardkit

pytestmark = pytest.mark.django_db

PRESETS = Path(__file__).parent.parent / "settings_app" / "presets"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def upload(client, name: str, body: bytes) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        "/characters/import/",
        {"files": SimpleUploadedFile(name, body, content_type="application/json")},
        headers={"accept": "application/json"},
    )
    return response.json()["results"][0]


@pytest.mark.parametrize(
    ("relative", "looks"),
    [
        ("instruct/Bracket Turns.json", "a SillyTavern instruct template"),
        ("context/Storyteller.json", "a SillyTavern context template"),
        ("sysprompt/Quiet Narrator.json", "a SillyTavern system prompt"),
        ("TextGen Settings/Calm.json", "a SillyTavern text-completion sampler preset"),
        ("OpenAI Settings/Layered.json", "a SillyTavern chat-completion preset"),
    ],
)
def test_a_preset_is_refused_and_sent_to_the_presets_page(owner_client, relative, looks):
    result = upload(owner_client, Path(relative).name, (PRESETS / relative).read_bytes())
    assert result["status"] == "failed"
    assert result["reason"] == f"this is {looks}, not a character card; import it on the Presets page"
    assert not Character.objects.exists()


def test_a_theme_is_refused_with_what_it_is(owner_client):
    theme = {"name": "Midnight", "main_text_color": "rgb(220, 220, 210)", "blur_strength": 10}
    result = upload(owner_client, "Midnight.json", json.dumps(theme).encode())
    assert result["status"] == "failed"
    assert (
        result["reason"] == "this is a SillyTavern UI theme, not a character card; rpchat does not import it"
    )
    assert not Character.objects.exists()


def test_a_json_with_only_a_name_is_not_an_empty_character(owner_client):
    result = upload(
        owner_client, "package.json", json.dumps({"name": "left-pad", "version": "1.3.0"}).encode()
    )
    assert result["status"] == "failed"
    assert "it has a name but none of a card's fields" in result["reason"]
    assert not Character.objects.exists()


def test_a_v1_card_with_a_description_still_imports(owner_client):
    result = upload(owner_client, "ada.json", json.dumps(cardkit.v1_card()).encode())
    assert result["status"] == "imported"


@pytest.mark.parametrize("fmt", ["png", "json"])
def test_a_card_rpchat_exported_comes_back_as_the_same_character(owner_client, fmt):
    imported = upload(owner_client, "ada.png", cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card())}))
    assert imported["status"] == "imported"
    character = Character.objects.get()
    exported = owner_client.get(f"/characters/{character.code}/card.{fmt}").content
    again = upload(owner_client, f"Ada.{fmt}", exported)
    assert again["status"] == "skipped"
    assert again["reason"] == "the same card as Ada, already here"
    assert Character.objects.count() == 1


def test_an_exported_card_that_was_changed_imports_as_a_new_character(owner_client):
    upload(owner_client, "ada.json", json.dumps(cardkit.v3_card()).encode())
    character = Character.objects.get()
    card = json.loads(owner_client.get(f"/characters/{character.code}/card.json").content)
    card["data"]["description"] += " She has learned to sail."
    result = upload(owner_client, "Ada.json", json.dumps(card).encode())
    assert result["status"] == "imported"
    assert Character.objects.count() == 2


def test_another_users_identical_card_is_not_recognized_as_mine(owner_client, other, client):
    body = cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card())})
    upload(owner_client, "ada.png", body)
    character = Character.objects.get()
    exported = owner_client.get(f"/characters/{character.code}/card.png").content
    client.force_login(other)
    assert upload(client, "Ada.png", exported)["status"] == "imported"


def test_a_character_written_in_rpchat_comes_back_as_itself(owner_client, owner):
    from tests.factories import make_character

    character = make_character(owner=owner, name="Wren", description="Keeps bees.", public=False)
    exported = owner_client.get(f"/characters/{character.code}/card.png").content
    result = upload(owner_client, "Wren.png", exported)
    assert (result["status"], result["reason"]) == ("skipped", "the same card as Wren, already here")


@pytest.mark.parametrize(
    ("obj", "looks"),
    [
        ({"name": "Wide", "movingUIState": {}}, "a SillyTavern MovingUI layout"),
        ({"name": "Default", "quickReplySlots": [], "numberOfSlots": 5}, "a SillyTavern quick reply set"),
        ({"firstRun": False, "power_user": {}, "main_api": "openai"}, "SillyTavern's settings.json"),
        (
            {"order": [1], "temperature": 1.1, "max_length": 150, "tail_free_sampling": 0.9},
            "a SillyTavern NovelAI sampler preset",
        ),
        ({"id": "1", "name": "Crew", "members": ["a.png"], "chat_id": "x"}, "a SillyTavern group definition"),
    ],
)
def test_other_sillytavern_files_are_named_and_refused(owner_client, obj, looks):
    result = upload(owner_client, "file.json", json.dumps(obj).encode())
    assert result["status"] == "failed"
    assert result["reason"] == f"this is {looks}, not a character card; rpchat does not import it"
    assert not Character.objects.exists()
