"""manage.py import_cards: folders of cards in, broken files named, a second run skips the rest."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from characters.models import Character
from tests import cardkit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "cards"
    (root / "more").mkdir(parents=True)
    (root / "Ada.png").write_bytes(cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card("Ada"))}))
    (root / "more" / "Bea.json").write_bytes(json.dumps(cardkit.v3_card("Bea")).encode())
    (root / "more" / "Cy.charx").write_bytes(cardkit.charx(cardkit.v3_card("Cy"), icon=cardkit.image_png()))
    (root / "Broken.png").write_bytes(cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card("X"))})[:200])
    (root / "notes.txt").write_text("not a card")
    return root


def run(*args) -> str:
    out = StringIO()
    call_command("import_cards", *args, stdout=out)
    return out.getvalue()


def test_a_folder_is_imported_recursively_and_a_broken_file_is_named(folder, owner):
    with pytest.raises(CommandError) as info:
        run(str(folder), "--user", "olivia")
    assert str(info.value).startswith("Cards: 3 imported, 0 skipped, 1 failed.")
    assert sorted(Character.objects.values_list("name", "visibility")) == [
        ("Ada", "private"),
        ("Bea", "private"),
        ("Cy", "private"),
    ]
    assert set(Character.objects.values_list("owner__username", flat=True)) == {"olivia"}


def test_the_failure_is_reported_by_file_name_and_reason(folder, owner):
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("import_cards", str(folder), "--user", "olivia", stdout=out)
    assert f"{folder / 'Broken.png'}: failed (the PNG is truncated" in out.getvalue()


def test_a_second_run_skips_what_was_imported(folder, owner):
    (folder / "Broken.png").unlink()
    assert "Cards: 3 imported, 0 skipped, 0 failed." in run(str(folder), "--user", "olivia")
    assert "Cards: 0 imported, 3 skipped, 0 failed." in run(str(folder), "--user", "olivia")
    assert Character.objects.count() == 3


def test_without_a_user_the_cards_are_public_instance_characters(folder):
    (folder / "Broken.png").unlink()
    run(str(folder / "Ada.png"))
    character = Character.objects.get()
    assert (character.owner, character.visibility) == (None, "public")


def test_a_huge_file_is_refused_by_its_size(tmp_path, owner):
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as fh:
        fh.truncate(1 << 30)
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("import_cards", str(huge), "--user", "olivia", stdout=out)
    assert (
        "huge.png: failed (the file is 1.0 GB; the limit is 32.0 MB (RPCHAT_MAX_CARD_BYTES))"
        in out.getvalue()
    )


def test_bad_arguments_are_command_errors(folder, owner):
    with pytest.raises(CommandError, match="There is no user named 'nobody'"):
        run(str(folder), "--user", "nobody")
    with pytest.raises(CommandError, match="no such file or folder"):
        run(str(folder / "missing"))
