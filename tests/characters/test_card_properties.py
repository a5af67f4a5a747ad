"""Property-based tests of the card and lorebook readers and writers (hypothesis).

Any valid card (of any version, with any mix of optional and unknown keys) comes back from export
as it went in, through the database too; any bytes at all either parse or fail with CardError.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from characters import cards
from characters.cards import CardError
from characters.models import Character
from characters.services import card_build, card_import
from tests import cardkit

# Valid cards hold text a database can store: no NUL or lone surrogate (refused with their own
# error, see test_card_import).
chars = st.characters(codec="utf-8", exclude_characters="\x00")
# JSON values as JSON parsers return them (no NaN or infinities, integers in JavaScript's range).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(chars, max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(chars, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
text = st.text(chars, max_size=40)
short = st.text(chars, max_size=30)
int32 = st.integers(-(2**31), 2**31 - 1)


def unknown_keys(known: set[str]):
    return st.dictionaries(
        st.text(chars, min_size=1, max_size=12).filter(lambda k: k not in known), json_values, max_size=3
    )


def some_of(required: dict, optional: dict):
    """A dict with every `required` strategy and a random subset of the `optional` ones."""
    return st.fixed_dictionaries(required, optional=optional)


ENTRY_KEYS = {f.key for f in cards.ENTRY_FIELDS}
entry = st.tuples(
    some_of(
        {
            "keys": st.lists(short, max_size=3),
            "content": text,
            "extensions": st.dictionaries(short, json_values, max_size=3),
            "enabled": st.booleans(),
            "insertion_order": int32,
        },
        {
            "case_sensitive": st.booleans() | st.none(),
            "name": short,
            "priority": int32,
            "id": st.integers(0, 10**6) | st.text(chars, max_size=10),
            "comment": text,
            "selective": st.booleans(),
            "secondary_keys": st.lists(short, max_size=3),
            "constant": st.booleans(),
            "position": st.sampled_from(["before_char", "after_char", "", "after_desc"]),
            "use_regex": st.booleans(),
        },
    ),
    unknown_keys(ENTRY_KEYS),
).map(lambda pair: {**pair[1], **pair[0]})

BOOK_KEYS = {f.key for f in cards.BOOK_FIELDS} | {"entries"}
book = st.tuples(
    some_of(
        {
            "extensions": st.dictionaries(short, json_values, max_size=2),
            "entries": st.lists(entry, max_size=4),
        },
        {
            "name": short,
            "description": text,
            "scan_depth": st.integers(0, 2**31 - 1),
            "token_budget": st.integers(0, 2**31 - 1),
            "recursive_scanning": st.booleans(),
        },
    ),
    unknown_keys(BOOK_KEYS),
).map(lambda pair: {**pair[1], **pair[0]})

name = st.text(chars, min_size=1, max_size=40).filter(str.strip)
DATA_KEYS = {f.key for f in cards.CARD_FIELDS} | {"tags", "character_book", "group_only_greetings"}
data = st.tuples(
    some_of(
        {
            "name": name,
            "description": text,
            "personality": text,
            "scenario": text,
            "first_mes": text,
            "mes_example": text,
        },
        {
            "creator_notes": text | st.none(),
            "system_prompt": text,
            "post_history_instructions": text,
            "alternate_greetings": st.lists(text, max_size=3),
            "tags": st.lists(short, max_size=4),
            "creator": short,
            "character_version": short | st.integers(0, 99) | st.floats(0, 99, allow_nan=False),
            "extensions": st.dictionaries(short, json_values, max_size=4),
            "character_book": book,
            "nickname": short,
        },
    ),
    unknown_keys(DATA_KEYS),
).map(lambda pair: {**pair[1], **pair[0]})


@st.composite
def any_card(draw):
    version = draw(st.sampled_from(["v1", "v2", "v3"]))
    if version == "v1":
        fields = draw(data)
        card = {k: fields[k] for k in cards.V1_KEYS}
        # A V1 card exported is a V2 card, whose spec_version is always "2.0": not an unknown key.
        card.update(draw(unknown_keys(set(cards.V1_KEYS) | {"spec", "spec_version", "entries", "data"})))
        return card
    card_data = draw(data)
    spec = "chara_card_v3" if version == "v3" else "chara_card_v2"
    if version == "v3":
        card_data["group_only_greetings"] = draw(st.lists(text, max_size=2))
    top = draw(unknown_keys(set(cards.V1_KEYS) | {"spec", "spec_version", "data"}))
    return {**top, "spec": spec, "spec_version": "3.0" if version == "v3" else "2.0", "data": card_data}


def exported(parsed: cards.ParsedCard, spec: str) -> dict:
    book_dict = None
    if parsed.book is not None:
        book_dict = cards.build_book(
            values=parsed.book.values,
            extra=parsed.book.extra,
            entries=[(e.values, e.extra) for e in parsed.book.entries],
        )
    return cards.build_card(
        values=parsed.values, tags=parsed.tags, card_extra=parsed.card_extra, book=book_dict, spec=spec
    )


def assert_gives_back(original: dict, out: dict) -> None:
    if "spec" in original:
        assert out["data"] == original["data"]
        assert {k: out[k] for k in original} == original
    else:
        assert {k: out[k] for k in original} == original


@settings(max_examples=300, deadline=None)
@given(any_card())
def test_any_card_comes_back_from_export_as_it_went_in(card):
    parsed = cards.read_card(json.dumps(card).encode(), max_unpacked=1 << 20)
    spec = card.get("spec", "chara_card_v2")
    assert_gives_back(card, exported(parsed, spec))


def as_json_numbers(obj):
    """`obj` with every number as the double a JSON reader (JavaScript, SillyTavern) makes of it.

    PostgreSQL's jsonb keeps numbers as decimals: a float like -6.618800008253806e16 comes back as
    the integer -66188000082538060, which is the same number to every JSON reader."""
    return json.loads(json.dumps(obj), parse_int=float)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(card=any_card())
def test_any_card_comes_back_through_the_database(owner, card):
    png = cardkit.png_card({"chara": cardkit.b64(card)})
    with transaction.atomic():
        result = card_import(source=png, file_name="card.png", owner=owner)
        assert result.status == "imported", result.reason
        character = Character.objects.get(pk=result.object.pk)  # as stored, not as built
        out = card_build(character=character, spec=card.get("spec", "chara_card_v2"))
        assert_gives_back(as_json_numbers(card), as_json_numbers(out))
        transaction.set_rollback(True)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_are_a_card_or_a_card_error(data):
    for blob in (data, cards.PNG_SIGNATURE + data, b"PK\x03\x04" + data, b"{" + data):
        with contextlib.suppress(CardError):
            cards.read_card(blob, max_unpacked=1 << 20)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_damaged_card_png_is_read_or_refused_with_a_card_error(draw):
    png = bytearray(cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card())}, size=(4, 4)))
    for _ in range(draw.draw(st.integers(1, 4))):
        position = draw.draw(st.integers(0, len(png) - 1))
        png[position] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(png)))
    with contextlib.suppress(CardError):
        cards.read_card(bytes(png[:cut]), max_unpacked=1 << 20)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["spec", "spec_version", "data", "name", "entries", "first_mes"]), json_values
    )
)
def test_any_json_object_is_a_card_or_a_card_error(obj):
    for reader in (lambda b: cards.read_card(b, max_unpacked=1 << 20), cards.read_lorebook):
        with contextlib.suppress(CardError):
            reader(json.dumps(obj).encode())


WI_KEYS = {
    "uid",
    "key",
    "keysecondary",
    "comment",
    "content",
    "constant",
    "selective",
    "order",
    "disable",
} | set(cards.WI_EXTENSION_KEYS)
wi_entry = st.tuples(
    some_of(
        {"key": st.lists(short, max_size=3), "content": text},
        {
            "keysecondary": st.lists(short, max_size=3),
            "comment": text,
            "constant": st.booleans(),
            "selective": st.booleans(),
            "order": int32,
            "disable": st.booleans(),
            "position": st.integers(0, 7),
            "selectiveLogic": st.integers(0, 3),
            "probability": st.integers(0, 100),
            "useProbability": st.booleans(),
            "depth": st.integers(0, 100),
            "group": short,
            "caseSensitive": st.none() | st.booleans(),
            "excludeRecursion": st.booleans(),
            "sticky": st.none() | st.integers(0, 9),
            "displayIndex": st.integers(0, 99),
            "matchWholeWords": st.none() | st.booleans(),
            "role": st.none() | st.integers(0, 2),
        },
    ),
    unknown_keys(WI_KEYS | {"extensions"}),
).map(lambda pair: {**pair[1], **pair[0]})


@st.composite
def world_info_file(draw):
    entries = draw(st.lists(wi_entry, max_size=5))
    out = {"entries": {}}
    for uid, e in enumerate(entries):
        out["entries"][str(uid)] = {"uid": uid, **e}
    out.update(draw(unknown_keys({"entries"})))
    return out


@settings(max_examples=300, deadline=None)
@given(world_info_file())
def test_any_world_info_file_comes_back_from_export_as_it_went_in(wi):
    parsed = cards.read_lorebook(json.dumps(wi).encode())
    out = cards.build_world_info(
        values=parsed.values, extra=parsed.extra, entries=[(e.values, e.extra) for e in parsed.entries]
    )
    assert out == wi
