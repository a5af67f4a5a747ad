"""chat_import_sillytavern: what a SillyTavern chat becomes in rpchat, and what a bad file does."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from django.urls import reverse

from chats.models import ChatMember, ChatSession, Message, MessageAlternative
from chats.sillytavern import chat_import_sillytavern
from core.tokens import estimate_tokens
from settings_app.models import Persona
from tests import cardkit
from tests.factories import make_character

pytestmark = pytest.mark.django_db
UTC = dt.UTC


@pytest.fixture
def ada(owner):
    return make_character(owner=owner, name="Ada", public=False)


def import_bytes(data: bytes, *, user, character, name="Ada - 2024-10-18@20h52m17s.jsonl", **kwargs):
    return chat_import_sillytavern(
        source=io.BytesIO(data), file_name=name, user=user, character=character, **kwargs
    )


def test_a_chat_is_imported_with_its_messages_in_order(owner, ada):
    result = import_bytes(
        cardkit.jsonl([cardkit.st_header(), *cardkit.st_messages()]), user=owner, character=ada
    )
    assert (result.status, result.reason) == ("imported", "5 messages")
    session = result.object
    assert (session.user, session.character, session.title) == (owner, ada, "Ada - 2024-10-18@20h52m17s")
    assert (session.message_count, session.last_seq) == (5, 5)
    rows = list(Message.objects.filter(session=session).order_by("seq"))
    assert [m.seq for m in rows] == [1, 2, 3, 4, 5]
    assert [m.role for m in rows] == ["assistant", "user", "assistant", "user", "assistant"]
    assert [m.speaker for m in rows] == ["Ada", "Olivia", "Ada", "Olivia", "Ada"]
    assert rows[2].content == "The second answer."
    assert all(m.token_count == estimate_tokens(m.content) for m in rows)


def test_swipes_become_alternatives_with_the_active_one_as_the_message(owner, ada):
    session = import_bytes(
        cardkit.jsonl([cardkit.st_header(), *cardkit.st_messages()]), user=owner, character=ada
    ).object
    third = Message.objects.get(session=session, seq=3)
    assert (third.alternative_index, third.alternative_count) == (1, 3)
    alternatives = list(MessageAlternative.objects.filter(message=third).order_by("index"))
    assert [a.content for a in alternatives] == [
        "The first answer.",
        "The second answer.",
        "The third answer.",
    ]
    assert alternatives[0].meta["st"]["send_date"] == "October 18, 2024 8:54pm"
    # A message with a single swipe has no alternative rows to page through.
    assert Message.objects.get(session=session, seq=5).alternative_count == 0


def test_hidden_messages_extras_and_metadata_are_kept(owner, ada):
    Persona.objects.create(user=owner, name="Olivia")
    session = import_bytes(
        cardkit.jsonl([cardkit.st_header(), *cardkit.st_messages()]), user=owner, character=ada
    ).object
    hidden = Message.objects.get(session=session, seq=4)
    assert hidden.hidden is True and hidden.content == "(a hidden aside)"
    third = Message.objects.get(session=session, seq=3)
    # The reasoning has a place of its own (shown apart, never sent back); the export puts it back.
    assert third.meta["extra"] == {"api": "openai", "model": "gpt-4o-mini"}
    assert third.reasoning == "think"
    assert third.meta["st"]["gen_started"] == "2024-10-18T20:54:50.000Z"
    assert Message.objects.get(session=session, seq=2).meta["st"]["force_avatar"] == "User Avatars/olivia.png"
    assert session.metadata["integrity"] == "4f9c1c9e-1111-2222-3333-444455556666"
    assert session.metadata["an_extension_key"] == [1, 2, 3]
    # The author's note becomes the chat's own, and the header's persona is found by name.
    assert (
        session.author_note,
        session.author_note_depth,
        session.author_note_frequency,
        session.author_note_role,
    ) == (
        "Ada is tired.",
        3,
        2,
        "system",
    )
    assert session.persona.name == "Olivia"


def test_messages_keep_their_own_dates(owner, ada):
    session = import_bytes(
        cardkit.jsonl([cardkit.st_header(), *cardkit.st_messages()]), user=owner, character=ada
    ).object
    dates = list(Message.objects.filter(session=session).order_by("seq").values_list("created_at", flat=True))
    assert dates == [
        dt.datetime(2024, 10, 18, 20, 52, tzinfo=UTC),
        dt.datetime(2024, 10, 18, 20, 53, 1, tzinfo=UTC),
        dt.datetime(2024, 10, 18, 20, 55, tzinfo=UTC),
        dt.datetime(2024, 10, 18, 20, 56, 17, 123000, tzinfo=UTC),
        dt.datetime(2024, 10, 18, 19, 0, tzinfo=UTC),
    ]
    assert session.created_at == dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC)
    assert session.last_message_at == dates[-1]


def test_a_file_without_a_header_is_imported_too(owner, ada):
    result = import_bytes(cardkit.jsonl(cardkit.st_messages()), user=owner, character=ada)
    assert result.object.message_count == 5
    assert Message.objects.get(session=result.object, seq=1).content == "*Gears whir.* Welcome."


def test_a_group_chat_knows_who_said_what(owner):
    ada = make_character(owner=owner, name="Ada")
    bram = make_character(owner=owner, name="Bram")
    lines = [
        {"chat_metadata": {"tainted": True}, "user_name": "unused", "character_name": "unused"},
        {
            "name": "Ada",
            "is_user": False,
            "mes": "Hello.",
            "send_date": 1729284737000,
            "original_avatar": "ada-card.png",
        },
        {"name": "Olivia", "is_user": True, "mes": "Hi both.", "send_date": 1729284738000},
        {"name": "Bram", "is_user": False, "mes": "Evening.", "send_date": 1729284739000},
    ]
    result = import_bytes(
        cardkit.jsonl(lines),
        user=owner,
        character=ada,
        members=[ada, bram],
        avatars={"ada-card.png": ada},
        name="group.jsonl",
    )
    session = result.object
    assert session.is_group
    assert list(ChatMember.objects.filter(session=session).values_list("character__name", flat=True)) == [
        "Ada",
        "Bram",
    ]
    speakers = list(
        Message.objects.filter(session=session).order_by("seq").values_list("character__name", flat=True)
    )
    assert speakers == ["Ada", None, "Bram"]


def test_the_same_file_is_skipped_the_second_time(owner, ada):
    data = cardkit.jsonl([cardkit.st_header(), *cardkit.st_messages()])
    first = import_bytes(data, user=owner, character=ada)
    again = import_bytes(data, user=owner, character=ada)
    assert (again.status, again.object) == ("skipped", first.object)
    assert ChatSession.objects.count() == 1 and Message.objects.count() == 5


def test_a_big_chat_is_inserted_in_batches_with_counters_set_once(owner, ada, django_assert_max_num_queries):
    lines = [cardkit.st_header()] + [
        {
            "name": "Ada",
            "is_user": False,
            "mes": f"line {i}",
            "send_date": 1729284737000 + i * 1000,
            "swipes": [f"line {i}", "alt"],
            "swipe_id": 0,
        }
        for i in range(2500)
    ]
    data = cardkit.jsonl(lines)
    # Per 1,000 messages: a few INSERTs of messages and of alternatives (SQLite takes 999
    # parameters a statement), never one per row. 2,500 messages and 5,000 swipes would be
    # 7,500 single inserts.
    with django_assert_max_num_queries(400):
        result = import_bytes(data, user=owner, character=ada)
    assert result.object.message_count == 2500
    assert MessageAlternative.objects.filter(message__session=result.object).count() == 5000


def test_progress_is_reported_in_bytes_read(owner, ada):
    data = cardkit.jsonl([cardkit.st_header()] + [{"name": "A", "mes": "x" * 50}] * 2100)
    seen = []
    import_bytes(data, user=owner, character=ada, on_progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == len(data) and len(seen) >= 3


# --- bad files --------------------------------------------------------------------------------------


def broken_file() -> bytes:
    good = cardkit.st_messages()
    return b"\n".join(
        [
            json.dumps(cardkit.st_header()).encode(),
            json.dumps(good[0]).encode(),
            b'{"name": "Ada", "mes": "cut off',
            json.dumps(good[1]).encode(),
            b"[1, 2, 3]",
            json.dumps({"name": "Ada", "mes": 42}).encode(),
            json.dumps({"name": "Ada", "mes": "nul \u0000 inside"}).encode(),
            json.dumps(good[2]).encode(),
        ]
    )


def test_a_file_with_broken_lines_is_refused_whole_naming_each_line(owner, ada):
    result = import_bytes(broken_file(), user=owner, character=ada)
    assert result.status == "failed"
    assert result.reason == (
        "4 broken line(s), nothing was imported: "
        "line 3: invalid JSON (Unterminated string starting at column 24); "
        "line 5: not a JSON object; line 6: mes must be a string; "
        "line 7: it contains a NUL character (\\u0000), which cannot be stored"
    )
    assert ChatSession.objects.count() == 0 and Message.objects.count() == 0


def test_broken_lines_can_be_skipped_and_are_reported(owner, ada):
    result = import_bytes(broken_file(), user=owner, character=ada, skip_broken_lines=True)
    assert result.status == "imported"
    assert result.object.message_count == 3
    assert result.warnings[0].startswith("skipped 4 broken line(s): line 3: invalid JSON")
    assert list(
        Message.objects.filter(session=result.object).order_by("seq").values_list("seq", flat=True)
    ) == [1, 2, 3]


def test_an_overlong_line_is_broken_without_being_read_whole(owner, ada, settings):
    settings.RPCHAT = {**settings.RPCHAT, "MAX_CHAT_LINE_BYTES": 1000}
    data = cardkit.jsonl([cardkit.st_header(), {"name": "A", "mes": "y" * 5000}, {"name": "A", "mes": "ok"}])
    result = import_bytes(data, user=owner, character=ada)
    assert result.reason.endswith("line 2: longer than 1,000 bytes (RPCHAT_MAX_CHAT_LINE_BYTES)")
    assert import_bytes(data, user=owner, character=ada, skip_broken_lines=True).object.message_count == 1


class Upload(io.BytesIO):
    """An uploaded file: knows its size before anything is read."""

    def __init__(self, size):
        super().__init__(b"")
        self.size = size

    def read(self, *args):
        raise AssertionError("the file was read")


def test_a_file_over_the_limit_is_refused_before_reading(owner, ada, tmp_path):
    result = chat_import_sillytavern(
        source=Upload(2 << 30), file_name="huge.jsonl", user=owner, character=ada
    )
    assert result.reason == "the file is 2.0 GB; the limit is 512.0 MB (RPCHAT_MAX_CHAT_BYTES)"
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as fh:
        fh.truncate(600 << 20)
    assert chat_import_sillytavern(
        source=path, file_name="huge.jsonl", user=owner, character=ada
    ).reason.startswith("the file is 600.0 MB")
    assert ChatSession.objects.count() == 0


def test_an_empty_file_is_refused(owner, ada):
    assert import_bytes(b"", user=owner, character=ada).reason == "the file is empty"
    assert import_bytes(b"\n\n", user=owner, character=ada).reason == "the file is empty"


def test_an_unreadable_send_date_is_kept_and_reported(owner, ada):
    lines = [cardkit.st_header(), {"name": "Ada", "mes": "a", "send_date": "the day before"}]
    result = import_bytes(cardkit.jsonl(lines), user=owner, character=ada)
    assert result.warnings == ["1 message(s) had a send_date rpchat could not read; kept as written"]
    message = Message.objects.get(session=result.object)
    assert message.meta["st"]["send_date"] == "the day before"
    assert message.created_at == dt.datetime(2024, 10, 18, 20, 52, 17, tzinfo=UTC)  # the chat's start


def test_a_file_of_nothing_but_garbage_names_its_first_broken_lines_and_counts_the_rest(owner, ada):
    data = b"\n".join(b"garbage %d" % i for i in range(5000))
    for skip in (False, True):
        result = import_bytes(data, user=owner, character=ada, skip_broken_lines=skip)
        assert result.status == "failed"
        assert result.reason.startswith("5000 broken line(s), nothing was imported: line 1: invalid JSON")
        assert result.reason.endswith("line 10: invalid JSON (Expecting value at column 1); and 4990 more")
    assert ChatSession.objects.count() == 0


@pytest.mark.parametrize(
    "date",
    ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00", "9999-12-31T23:59:59"],
)
def test_dates_at_the_edges_of_the_calendar_are_kept_as_written(owner, ada, settings, client, date):
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14: the furthest a page's local time moves
    lines = [
        cardkit.st_header(create_date=date),
        {"name": "Ada", "is_user": False, "mes": "From the edge of time.", "send_date": date},
    ]
    result = import_bytes(cardkit.jsonl(lines), user=owner, character=ada)
    assert result.status == "imported"
    assert result.warnings == ["1 message(s) had a send_date rpchat could not read; kept as written"]
    message = Message.objects.get(session=result.object)
    assert message.meta["st"]["send_date"] == date
    client.force_login(owner)
    assert client.get(result.object.get_absolute_url()).status_code == 200
    exported = client.get(reverse("chats:export_jsonl", args=[result.object.code]))
    assert date in b"".join(exported.streaming_content).decode()


def test_numbers_no_database_stores_make_a_line_broken(owner, ada):
    data = (
        cardkit.jsonl([cardkit.st_header()]).rstrip(b"\n")
        + b'\n{"name": "Ada", "mes": "a", "extra": {"x": NaN}}\n'
    )
    result = import_bytes(data, user=owner, character=ada)
    assert result.reason == "1 broken line(s), nothing was imported: line 2: NaN is not a JSON number"
