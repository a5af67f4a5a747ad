"""card_import and card export: what a user gets in rpchat and back out, and what a bad file leaves."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from characters import cards
from characters.models import Character, Lorebook, LorebookEntry, Tag
from characters.services import card_build, card_export_json, card_export_png, card_import
from tests import cardkit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def media_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def png_of(card: dict) -> bytes:
    return cardkit.png_card({"chara": cardkit.b64(card)})


def test_an_imported_card_is_a_private_character_of_the_importer_with_its_picture(owner):
    result = card_import(source=png_of(cardkit.v2_card()), file_name="ada.png", owner=owner)
    assert result.status == "imported"
    character = Character.objects.get()
    assert (character.owner, character.visibility, character.name) == (owner, "private", "Ada")
    assert character.first_message == "*Gears whir.* Welcome, {{user}}."
    assert character.extensions["vendor/x"] == {"y": [1, "z"]}
    assert character.card_extra["data"] == {"an_unknown_data_key": {"kept": True}}
    assert sorted(t.name for t in character.tags.all()) == ["Steampunk", "archive"]
    thumb = Image.open(character.thumbnail.open("rb"))
    assert (thumb.format, thumb.size) == ("WEBP", (300, 450))
    assert Image.open(character.avatar.open("rb")).size == (24, 36)


def test_a_card_can_be_shared_and_an_ownerless_import_is_public(owner):
    card_import(source=png_of(cardkit.v2_card("Shared")), file_name="a.png", owner=owner, public=True)
    card_import(source=png_of(cardkit.v2_card("Instance")), file_name="b.png", owner=None)
    assert dict(Character.objects.values_list("name", "visibility")) == {
        "Shared": "public",
        "Instance": "public",
    }


def test_the_embedded_book_becomes_the_characters_lorebook(owner):
    card_import(source=json.dumps(cardkit.v3_card()).encode(), file_name="ada.json", owner=owner)
    book = Lorebook.objects.get()
    assert book.character.name == "Ada" and book.owner == owner
    assert (book.name, book.scan_depth, book.token_budget, book.recursive_scanning) == (
        "Archive lore",
        6,
        300,
        True,
    )
    first, second = book.entries.order_by("id")
    assert (first.keys, first.secondary_keys, first.insertion_order, first.position) == (
        ["archive", "stacks"],
        ["floor"],
        50,
        "after_char",
    )
    assert first.extensions == {"position": 1, "depth": 4, "x_custom": {"a": None}}
    assert (second.uid, second.enabled, second.entry_extra["unknown"]) == (
        "lamp-1",
        False,
        {"unknown_entry_key": "kept"},
    )


def test_the_same_file_is_skipped_the_second_time_and_imported_again_after_a_delete(owner, other):
    png = png_of(cardkit.v2_card())
    assert card_import(source=png, file_name="ada.png", owner=owner).status == "imported"
    again = card_import(source=png, file_name="ada.png", owner=owner)
    assert (again.status, again.reason) == ("skipped", "already imported as Ada")
    assert card_import(source=png, file_name="ada.png", owner=other).status == "imported"
    from django.utils import timezone

    Character.objects.filter(owner=owner).update(deleted_at=timezone.now())
    assert card_import(source=png, file_name="ada.png", owner=owner).status == "imported"


def test_tags_are_shared_case_insensitively(owner):
    Tag.objects.create(name="steampunk")
    card_import(source=png_of(cardkit.v2_card()), file_name="a.png", owner=owner)
    assert Tag.objects.filter(name__iexact="steampunk").count() == 1
    character = Character.objects.get()
    assert card_build(character=character, spec=cards.SPEC_V2)["data"]["tags"] == ["Steampunk", "archive"]


@pytest.mark.parametrize(
    "original, spec",
    [
        (cardkit.v1_card(), None),
        (cardkit.v2_card(book=False), cards.SPEC_V2),
        (cardkit.v2_card(book=True), cards.SPEC_V2),
        (cardkit.v3_card(book=False), cards.SPEC_V3),
        (cardkit.v3_card(book=True), cards.SPEC_V3),
    ],
    ids=["v1", "v2", "v2-with-book", "v3", "v3-with-book"],
)
def test_a_png_card_exported_from_rpchat_gives_back_every_field(owner, original, spec):
    card_import(source=png_of(original), file_name="card.png", owner=owner)
    png = card_export_png(character=Character.objects.get())
    chunks = {}
    for ctype, _, _, body in cards.png_chunks(png):
        if ctype == b"tEXt":
            key, _, value = body.partition(b"\x00")
            chunks[key.decode()] = json.loads(base64.b64decode(value))
    assert set(chunks) == {"chara", "ccv3"}
    assert chunks["chara"]["spec"] == "chara_card_v2" and chunks["ccv3"]["spec"] == "chara_card_v3"
    written = chunks["ccv3"] if spec == cards.SPEC_V3 else chunks["chara"]
    if spec is None:  # V1: every field at the top level and in data
        assert {k: written[k] for k in original} == original
        assert {k: written["data"][k] for k in original} == original
    else:
        assert written["data"] == original["data"]
        assert {k: written[k] for k in original} == original
    assert Image.open(io.BytesIO(png)).size == (24, 36)


def test_a_json_export_keeps_the_version_of_the_imported_card(owner):
    card_import(source=json.dumps(cardkit.v3_card()).encode(), file_name="a.json", owner=owner)
    card_import(source=json.dumps(cardkit.v2_card("Bea")).encode(), file_name="b.json", owner=owner)
    v3 = json.loads(card_export_json(character=Character.objects.get(name="Ada")))
    v2 = json.loads(card_export_json(character=Character.objects.get(name="Bea")))
    assert (v3["spec"], v2["spec"]) == ("chara_card_v3", "chara_card_v2")
    assert v3["data"] == cardkit.v3_card()["data"]


def test_a_character_made_in_rpchat_exports_as_a_card_sillytavern_reads(owner):
    from tests.factories import make_character

    character = make_character(owner=owner, name="Native", tags=["x"])
    card = json.loads(card_export_json(character=character))
    assert card["spec"] == "chara_card_v2" and card["spec_version"] == "2.0"
    assert card["data"]["name"] == card["name"] == "Native"
    assert card["data"]["tags"] == ["x"] and card["data"]["extensions"] == {}
    png = card_export_png(character=character)
    assert Image.open(io.BytesIO(png)).size == (400, 600)  # a plain picture stands in for the avatar


def test_a_charx_card_is_imported_with_its_icon_as_avatar(owner):
    icon = cardkit.image_png(size=(30, 30), color=(9, 9, 9))
    result = card_import(
        source=cardkit.charx(cardkit.v3_card(), icon=icon), file_name="ada.charx", owner=owner
    )
    assert result.status == "imported"
    assert Image.open(Character.objects.get().avatar.open("rb")).size == (30, 30)


def test_a_jpeg_icon_is_stored_as_a_png_avatar(owner):
    buffer = io.BytesIO()
    Image.new("RGB", (20, 10), (1, 200, 3)).save(buffer, format="JPEG")
    card_import(
        source=cardkit.charx(
            cardkit.v3_card(), icon=buffer.getvalue(), icon_path="assets/icon/images/main.jpg"
        ),
        file_name="a.charx",
        owner=owner,
    )
    with Character.objects.get().avatar.open("rb") as fh:
        assert fh.read(8) == cards.PNG_SIGNATURE


# --- bad files leave nothing behind -------------------------------------------------------------


def assert_nothing_imported(media) -> None:
    assert Character.objects.count() == 0
    assert Lorebook.objects.count() == LorebookEntry.objects.count() == Tag.objects.count() == 0
    assert media_files(media) == []


@pytest.mark.parametrize(
    "data, reason",
    [
        (cardkit.image_png(), "the PNG holds no character card"),
        (png_of(cardkit.v2_card())[:300], "the PNG is truncated"),
        (cardkit.png_card({"chara": "@@@"}), "the chara chunk is not valid base64"),
        (b'{"name": ', "the file is not valid JSON"),
        (
            json.dumps({"spec": "chara_card_v2", "data": {"name": 7}}).encode(),
            "data.name must be a string, not a number",
        ),
        (
            json.dumps({"name": "Nul", "description": "a\u0000b"}).encode(),
            "the file cannot be imported: it contains a NUL character",
        ),
        (
            b'{"name": "Half", "description": "\\ud800"}',
            "the file cannot be imported: it contains a lone UTF-16 surrogate",
        ),
    ],
)
def test_a_bad_file_fails_with_its_reason_and_leaves_nothing(owner, media, data, reason):
    result = card_import(source=data, file_name="bad.png", owner=owner)
    assert result.status == "failed"
    assert result.reason.startswith(reason)
    assert str(result).startswith(f"bad.png: failed ({reason}")
    assert_nothing_imported(media)


def test_a_decompression_bomb_avatar_fails_and_leaves_nothing(owner, media):
    # 20,000 x 20,000 pixels declared: a few KB of PNG that would decode to 1.2 GB.
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    info = cards.png_with_card(buffer.getvalue(), v2=cardkit.v2_card(), v3=cardkit.v3_card())
    result = card_import(source=info, file_name="bomb.png", owner=owner)
    assert result.status == "failed"
    assert result.reason.startswith("the avatar cannot be used: The image is too large")
    assert_nothing_imported(media)


def test_a_database_failure_half_way_removes_the_rows_and_the_picture_files(owner, media, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(LorebookEntry.objects, "bulk_create", fail)
    with pytest.raises(RuntimeError):
        card_import(source=png_of(cardkit.v2_card()), file_name="ada.png", owner=owner)
    assert Character.objects.count() == 0 and Lorebook.objects.count() == 0
    assert media_files(media) == []


class EndlessFile:
    """A 1 GB upload that counts how much of it is read."""

    def __init__(self, size=1 << 30):
        self.remaining = size
        self.read_bytes = 0

    def read(self, n=-1):
        n = self.remaining if n < 0 else min(n, self.remaining)
        self.remaining -= n
        self.read_bytes += n
        return b"\x89PNG\r\n\x1a\n" + b"\0" * (n - 8) if n >= 8 else b"\0" * n


def test_a_huge_stream_is_refused_after_reading_just_past_the_limit(owner, settings, media):
    settings.RPCHAT = {**settings.RPCHAT, "MAX_CARD_BYTES": 4096}
    stream = EndlessFile()
    result = card_import(source=stream, file_name="huge.png", owner=owner)
    assert result.status == "failed"
    assert result.reason == "the file is larger than 4.0 KB (RPCHAT_MAX_CARD_BYTES)"
    assert stream.read_bytes == 4097
    assert_nothing_imported(media)


def test_a_huge_file_on_disk_is_refused_by_its_size_without_reading_it(owner, tmp_path, media):
    path = tmp_path / "huge.png"
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)  # a sparse 1 GB file: no disk used, and reading it would take seconds
    result = card_import(source=path, file_name="huge.png", owner=owner)
    assert result.reason == "the file is 1.0 GB; the limit is 32.0 MB (RPCHAT_MAX_CARD_BYTES)"
    assert_nothing_imported(media)


def test_a_book_over_the_entry_limit_is_refused_and_nothing_is_left(owner, settings, media):
    settings.RPCHAT = {**settings.RPCHAT, "MAX_LOREBOOK_ENTRIES": 1}  # the card's book has two
    result = card_import(source=json.dumps(cardkit.v3_card()).encode(), file_name="ada.json", owner=owner)
    assert result.status == "failed"
    assert "2 entries; the limit is 1 (RPCHAT_MAX_LOREBOOK_ENTRIES)" in result.reason
    assert (
        not Character.objects.exists()
        and not Lorebook.objects.exists()
        and not LorebookEntry.objects.exists()
    )
    assert media_files(media) == []
