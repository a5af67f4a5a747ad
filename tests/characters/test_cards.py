"""Card files: every container and version read, written back without loss, bad files named."""

from __future__ import annotations

import base64
import copy
import io
import json
import struct
import zipfile
import zlib

import pytest

from characters import cards
from characters.cards import CardError
from tests import cardkit

LIMIT = 10 * 1024 * 1024


def read(data: bytes) -> cards.ParsedCard:
    return cards.read_card(data, max_unpacked=LIMIT)


def round_trip(card: cards.ParsedCard, spec: str) -> dict:
    """What export writes for a parsed card: the same path characters.services takes."""
    book = None
    if card.book is not None:
        book = cards.build_book(
            values=card.book.values,
            extra=card.book.extra,
            entries=[(e.values, e.extra) for e in card.book.entries],
        )
    return cards.build_card(
        values=card.values, tags=card.tags, card_extra=card.card_extra, book=book, spec=spec
    )


def text_chunks(png: bytes) -> dict[str, dict]:
    found = {}
    for ctype, _, _, body in cards.png_chunks(png):
        if ctype == b"tEXt":
            key, _, value = body.partition(b"\x00")
            found[key.decode()] = json.loads(base64.b64decode(value))
    return found


# --- reading ------------------------------------------------------------------------------------


def test_a_png_with_both_chunks_is_read_from_ccv3():
    png = cardkit.png_card(
        {"chara": cardkit.b64(cardkit.v2_card("From V2")), "ccv3": cardkit.b64(cardkit.v3_card("From V3"))}
    )
    card = read(png)
    assert card.values["name"] == "From V3"
    assert card.values["nickname"] == "Addy"


def test_chunk_keywords_are_matched_case_insensitively():
    png = cardkit.png_card({"Chara": cardkit.b64(cardkit.v2_card("Upper"))})
    assert read(png).values["name"] == "Upper"


def test_the_avatar_keeps_the_image_but_not_the_card_chunks():
    png = cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card())})
    card = read(png)
    assert card.avatar.startswith(cards.PNG_SIGNATURE)
    assert [c for c, *_ in cards.png_chunks(card.avatar) if c == b"tEXt"] == []
    from PIL import Image

    assert Image.open(io.BytesIO(card.avatar)).size == (24, 36)


def test_an_animated_png_card_is_read():
    card = read(cardkit.apng_card(cardkit.v2_card("Animated")))
    assert card.values["name"] == "Animated"
    assert b"acTL" in card.avatar


def test_a_v1_json_card_is_read_into_the_card_fields():
    card = read(json.dumps(cardkit.v1_card()).encode())
    assert card.values["first_message"] == "*Gears whir.* Welcome, {{user}}."
    assert card.values["example_dialogue"].startswith("<START>")
    assert card.book is None


def test_the_embedded_book_becomes_a_lorebook_with_its_entries():
    card = read(json.dumps(cardkit.v2_card()).encode())
    assert card.book.values["name"] == "Archive lore"
    assert card.book.values["scan_depth"] == 6
    first, second = card.book.entries
    assert first.values["keys"] == ["archive", "stacks"]
    assert first.values["position"] == "after_char"
    assert first.values["extensions"] == {"position": 1, "depth": 4, "x_custom": {"a": None}}
    assert second.values["enabled"] is False
    assert second.extra["unknown"] == {"unknown_entry_key": "kept"}


def test_a_charx_archive_gives_its_card_and_main_icon():
    icon = cardkit.image_png(color=(1, 2, 3))
    card = read(cardkit.charx(cardkit.v3_card("Packed"), icon=icon))
    assert card.values["name"] == "Packed"
    assert card.avatar == icon


def test_a_json_v3_card_with_a_data_url_icon_gets_that_picture():
    icon = cardkit.image_png()
    v3 = cardkit.v3_card()
    v3["data"]["assets"] = [
        {
            "type": "icon",
            "name": "main",
            "ext": "png",
            "uri": "data:image/png;base64," + base64.b64encode(icon).decode(),
        }
    ]
    assert read(json.dumps(v3).encode()).avatar == icon


def test_a_newer_v3_spec_version_imports_with_a_warning():
    v3 = cardkit.v3_card()
    v3["spec_version"] = "3.5"
    card = read(json.dumps(v3).encode())
    assert card.values["name"] == "Ada"
    assert "newer than 3.0" in card.warnings[0]


def test_an_unreadable_ccv3_chunk_falls_back_to_chara_with_a_warning():
    png = cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card("Fallback")), "ccv3": "%%%not base64%%%"})
    card = read(png)
    assert card.values["name"] == "Fallback"
    assert "ccv3 chunk was unreadable" in card.warnings[0]


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("book", [True, False])
@pytest.mark.parametrize("make, spec", [(cardkit.v2_card, cards.SPEC_V2), (cardkit.v3_card, cards.SPEC_V3)])
def test_import_then_export_gives_back_every_field_of_the_card(make, spec, book):
    original = make(book=book)
    out = round_trip(read(json.dumps(original).encode()), spec)
    assert out["data"] == original["data"]
    # Everything at the top level comes back too; the V1 fields are added there, as ST writes them.
    assert {k: out[k] for k in original} == original
    assert {k: out[k] for k in cards.V1_KEYS} == {k: original["data"][k] for k in cards.V1_KEYS}


def test_a_v1_card_comes_back_with_every_field_at_the_top_and_in_data():
    original = {**cardkit.v1_card(), "some_old_key": "kept"}
    out = round_trip(read(json.dumps(original).encode()), cards.SPEC_V2)
    assert {k: out[k] for k in original} == original
    assert {k: out["data"][k] for k in cards.V1_KEYS} == cardkit.v1_card()


def test_absent_optional_keys_stay_absent_and_odd_values_come_back_as_written():
    v2 = cardkit.v2_card()
    del v2["data"]["creator"]
    v2["data"]["character_version"] = 2  # a number, not the spec's string
    v2["data"]["system_prompt"] = None
    del v2["data"]["character_book"]["scan_depth"]
    v2["data"]["character_book"]["entries"][1]["position"] = "after_desc"
    out = round_trip(read(json.dumps(v2).encode()), cards.SPEC_V2)
    assert out["data"] == v2["data"]


def test_tags_keep_their_spelling_even_when_the_tag_exists_in_another_case():
    v2 = cardkit.v2_card()
    card = read(json.dumps(v2).encode())
    # The database matched "Steampunk" to an existing "steampunk" tag.
    out = cards.build_card(
        values=card.values,
        tags=["steampunk", "Archive"],
        card_extra=card.card_extra,
        book=None,
        spec=cards.SPEC_V2,
    )
    assert out["data"]["tags"] == ["Steampunk", "archive"]
    changed = cards.build_card(
        values=card.values, tags=["steampunk"], card_extra=card.card_extra, book=None, spec=cards.SPEC_V2
    )
    assert changed["data"]["tags"] == ["steampunk"]


def test_an_edited_field_is_exported_with_its_new_value():
    v2 = cardkit.v2_card()
    v2["data"]["character_version"] = 2
    card = read(json.dumps(v2).encode())
    card.values["description"] = "Edited in rpchat."
    card.values["character_version"] = "3"
    out = round_trip(card, cards.SPEC_V2)
    assert out["data"]["description"] == out["description"] == "Edited in rpchat."
    assert out["data"]["character_version"] == "3"


def test_png_export_writes_chara_as_v2_and_ccv3_as_v3_before_iend():
    original = cardkit.v3_card()
    card = read(
        cardkit.png_card({"ccv3": cardkit.b64(original), "chara": cardkit.b64(cardkit.v2_card("Old"))})
    )
    png = cards.png_with_card(
        card.avatar, v2=round_trip(card, cards.SPEC_V2), v3=round_trip(card, cards.SPEC_V3)
    )
    chunks = [c for c, *_ in cards.png_chunks(png)]
    assert chunks[-3:] == [b"tEXt", b"tEXt", b"IEND"]
    texts = text_chunks(png)
    assert {k: texts["ccv3"][k] for k in original} == original
    assert texts["chara"]["spec"] == "chara_card_v2" and texts["chara"]["data"] == original["data"]
    # and the written file reads back as the same card
    assert round_trip(read(png), cards.SPEC_V3) == texts["ccv3"]


# --- bad files ----------------------------------------------------------------------------------


def error_of(data: bytes) -> str:
    with pytest.raises(CardError) as info:
        read(data)
    return str(info.value)


def test_a_truncated_png_is_refused_as_truncated():
    png = cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card())})
    assert "truncated" in error_of(png[: len(png) // 2])
    assert "truncated" in error_of(png[:-6])


def test_a_png_with_a_damaged_chunk_is_refused():
    png = bytearray(cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card())}))
    png[40] ^= 0xFF  # inside IHDR or the first chunk's body
    assert "damaged" in error_of(bytes(png))


def test_a_png_without_a_card_says_so():
    assert "holds no character card" in error_of(cardkit.image_png())


def test_invalid_base64_is_named():
    assert (
        error_of(cardkit.png_card({"chara": "this is not base64 !!!"}))
        == "the chara chunk is not valid base64"
    )


def test_invalid_json_is_named_with_its_position():
    bad = base64.b64encode(b'{"spec": "chara_card_v2", "data": {').decode()
    assert error_of(cardkit.png_card({"chara": bad})).startswith("the chara chunk is not valid JSON: ")
    assert "line 1" in error_of(b'{"name": "x",,}')


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(name=42), "data.name must be a string, not a number"),
        (lambda d: d.update(tags="fantasy"), "data.tags must be a list of strings, not a string"),
        (
            lambda d: d.update(alternate_greetings=["ok", 3]),
            "data.alternate_greetings must be a list of strings, not a list with other values in it",
        ),
        (lambda d: d.update(extensions=[]), "data.extensions must be an object, not a list"),
        (
            lambda d: d["character_book"]["entries"][0].update(keys="archive"),
            "data.character_book.entries[0].keys must be a list of strings, not a string",
        ),
        (
            lambda d: d["character_book"]["entries"][0].update(insertion_order=2**40),
            "data.character_book.entries[0].insertion_order is 1099511627776",
        ),
        (lambda d: d.update(name="   "), "the card has no name"),
    ],
)
def test_wrong_types_are_refused_with_the_field_named(change, message):
    v2 = cardkit.v2_card()
    change(v2["data"])
    assert error_of(json.dumps(v2).encode()).startswith(message)


def test_other_files_are_not_cards():
    assert error_of(b"") == "the file is empty"
    assert error_of(b"GIF89a....").startswith("not a character card")
    assert error_of(b"[1, 2]").startswith("not a character card")
    assert "lorebook" in error_of(json.dumps({"spec": "lorebook_v3", "data": {"entries": []}}).encode())
    assert error_of(json.dumps({"spec": "chara_card_v9", "data": {}}).encode()).startswith(
        "unknown card spec"
    )


def test_a_charx_without_card_json_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hi")
    assert error_of(buffer.getvalue()) == "the CHARX archive has no card.json at its root"


def test_a_zip_bomb_is_refused_by_its_declared_size_before_unpacking():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", json.dumps(cardkit.v2_card()))
        archive.writestr("assets/other/big.bin", b"\0" * (LIMIT + 1))  # compresses to ~10 KB
    assert len(buffer.getvalue()) < 100_000
    assert "would unpack to" in error_of(buffer.getvalue())


def test_a_zip_member_that_unpacks_to_more_than_it_declares_is_refused():
    body = json.dumps(cardkit.v2_card()).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("card.json", body)
    data = bytearray(buffer.getvalue())
    # Lie about the uncompressed size in both headers: claim 10 bytes.
    local = data.index(b"PK\x03\x04")
    struct.pack_into("<I", data, local + 22, 10)
    central = data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 10)
    message = error_of(bytes(data))
    assert message.startswith("card.json in the CHARX archive")


def test_a_damaged_zip_is_refused():
    assert error_of(b"PK\x03\x04" + b"\x00" * 40).startswith("the CHARX archive is damaged")


def test_the_png_chunk_writer_keeps_the_image_bytes_untouched():
    image = cardkit.image_png(size=(5, 5))
    card = {"spec": "chara_card_v2", "spec_version": "2.0", "data": {"name": "X"}}
    png = cards.png_with_card(image, v2=card, v3=card)
    idat = lambda data: [body for c, _, _, body in cards.png_chunks(data) if c == b"IDAT"]  # noqa: E731
    assert idat(png) == idat(image)
    for ctype, _start, end, body in cards.png_chunks(png):
        assert zlib.crc32(ctype + body) == struct.unpack(">I", png[end - 4 : end])[0]


def test_parse_card_does_not_change_the_dict_it_reads():
    v3 = cardkit.v3_card()
    before = copy.deepcopy(v3)
    cards.parse_card(v3)
    assert v3 == before
