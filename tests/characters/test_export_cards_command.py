"""manage.py export_cards: every character out as a card file that imports back the same."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from characters.models import Character
from characters.services import card_import
from tests import cardkit
from tests.factories import make_character

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def test_a_users_characters_are_exported_as_png_cards_that_import_back(tmp_path, owner, other):
    card_import(source=json.dumps(cardkit.v3_card("Ada")).encode(), file_name="a.json", owner=owner)
    make_character(owner=owner, name="Ada")  # same name: its file must not overwrite the first
    make_character(owner=other, name="Not mine")
    out = StringIO()
    call_command("export_cards", str(tmp_path / "out"), "--user", "olivia", stdout=out)
    assert "Exported 2 card(s)" in out.getvalue()
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["Ada (2).png", "Ada.png"]
    results = [
        card_import(source=p, file_name=p.name, owner=other) for p in sorted((tmp_path / "out").iterdir())
    ]
    assert [r.status for r in results] == ["imported", "imported"]
    back = Character.objects.filter(owner=other, name="Ada").exclude(nickname="").get()
    original = Character.objects.get(owner=owner, nickname="Addy")
    for field in (
        "description",
        "first_message",
        "alternate_greetings",
        "extensions",
        "nickname",
        "system_prompt",
    ):
        assert getattr(back, field) == getattr(original, field)
    assert back.lorebook.entries.count() == 2


def test_json_export_writes_one_card_per_character(tmp_path, owner):
    make_character(owner=owner, name="Wren")
    call_command("export_cards", str(tmp_path), "--format", "json", stdout=StringIO())
    card = json.loads((tmp_path / "Wren.json").read_text())
    assert card["spec"] == "chara_card_v2" and card["data"]["name"] == "Wren"
