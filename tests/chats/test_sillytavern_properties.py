"""Property-based tests of the SillyTavern chat importer and exporter (hypothesis).

Any chat SillyTavern could have written comes back from export with every key it had; any bytes at
all are imported or refused with a reason, and a refused file leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chats import sillytavern
from chats.models import ChatSession, Message
from chats.sillytavern import chat_export_sillytavern, chat_import_sillytavern
from tests.factories import make_character

pytestmark = pytest.mark.django_db
SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

chars = st.characters(codec="utf-8", exclude_characters="\x00")
text = st.text(chars, max_size=30)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
moments = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1)).map(
    lambda d: d.replace(tzinfo=dt.UTC)
)
send_dates = st.one_of(
    moments.map(sillytavern.format_send_date),
    moments.map(sillytavern.humanized),
    moments.map(lambda d: int(d.timestamp() * 1000)),
    moments.map(lambda d: d.isoformat()),
    st.sampled_from(["", "someday", "not a date"]),
)
MAPPED = set(sillytavern.MAPPED_KEYS)


@st.composite
def message(draw):
    out = {
        "name": draw(text),
        "is_user": draw(st.booleans()),
        "send_date": draw(send_dates),
        "mes": draw(text),
    }
    if draw(st.booleans()):
        out["is_system"] = draw(st.booleans())
    if draw(st.booleans()):
        out["extra"] = draw(st.dictionaries(text, json_values, max_size=3))
    kind = draw(st.sampled_from(["none", "one", "many", "odd"]))
    if kind == "one":
        out["swipes"] = [out["mes"]]
        out["swipe_id"] = 0
        out["swipe_info"] = [{"send_date": out["send_date"], "extra": out.get("extra", {})}]
    elif kind == "many":
        swipes = draw(st.lists(text, min_size=2, max_size=4))
        out["swipe_id"] = draw(st.integers(0, len(swipes) - 1))
        out["swipes"] = swipes
        out["mes"] = swipes[out["swipe_id"]]
        if draw(st.booleans()):
            out["swipe_info"] = draw(
                st.lists(
                    st.dictionaries(text, json_values, max_size=2), min_size=len(swipes), max_size=len(swipes)
                )
            )
    elif kind == "odd":
        out["swipes"] = draw(st.lists(json_values, max_size=2))
    extra_keys = draw(st.dictionaries(text.filter(lambda k: k not in MAPPED), json_values, max_size=3))
    return {**extra_keys, **out}


header = st.fixed_dictionaries(
    {"user_name": text, "character_name": text, "create_date": send_dates},
    optional={
        "chat_metadata": st.dictionaries(
            text.filter(lambda k: not k.startswith("rpchat_")), json_values, max_size=4
        )
    },
)


def read_back(session) -> list[dict]:
    return [json.loads(line) for line in "".join(chat_export_sillytavern(session)).split("\n")]


def as_json_numbers(obj):
    """Numbers as a JSON reader sees them: PostgreSQL's jsonb gives 1e16 back as 10000000000000000."""
    return json.loads(json.dumps(obj), parse_int=float)


def same_as_written(original: dict, written: dict) -> None:
    original, written = as_json_numbers(original), as_json_numbers(written)
    for key, value in original.items():
        if key == "send_date" and sillytavern.parse_send_date(value) is not None:
            # Written in SillyTavern's own format, to the minute it holds.
            expected = sillytavern.format_send_date(sillytavern.parse_send_date(value))
            assert written[key] == expected
        else:
            assert written[key] == value, key


@SETTINGS
@given(head=header, messages=st.lists(message(), max_size=8))
def test_any_sillytavern_chat_comes_back_from_export_with_every_key(owner, head, messages):
    character = make_character(owner=owner)
    data = "\n".join(json.dumps(line) for line in [head, *messages]).encode()
    with transaction.atomic():
        result = chat_import_sillytavern(
            source=io.BytesIO(data), file_name="chat.jsonl", user=owner, character=character
        )
        assert result.status == "imported", result.reason
        written_header, *written = read_back(result.object)
        assert len(written) == len(messages)
        for original, out in zip(messages, written, strict=False):
            same_as_written(original, out)
        head_out = {k: v for k, v in written_header.items() if k != "chat_metadata"}
        assert head_out == {k: v for k, v in head.items() if k != "chat_metadata"}
        assert as_json_numbers(written_header.get("chat_metadata", {})) == as_json_numbers(
            head.get("chat_metadata", {})
        )
        transaction.set_rollback(True)


@SETTINGS
@given(
    st.lists(
        st.binary(max_size=120)
        | st.sampled_from([b"{}", b'{"mes": 1}', b"[]", b"null", b'{"name": "a", "mes": "b"}']),
        max_size=6,
    )
)
def test_any_bytes_are_imported_or_refused_and_a_refusal_leaves_nothing(owner, lines):
    character = make_character(owner=owner)
    data = b"\n".join(lines)
    for skip in (False, True):
        with transaction.atomic():
            result = chat_import_sillytavern(
                source=io.BytesIO(data),
                file_name="x.jsonl",
                user=owner,
                character=character,
                skip_broken_lines=skip,
            )
            assert result.status in ("imported", "failed")
            if result.status == "failed":
                assert result.reason
                assert not ChatSession.objects.filter(user=owner).exists()
                assert not Message.objects.exists()
            else:
                assert result.object.message_count == Message.objects.filter(session=result.object).count()
            transaction.set_rollback(True)
