"""core.prepared: a hot query compiled once per connection gives what the ORM gives, for any values."""

from __future__ import annotations

import io
import json
import uuid
from datetime import datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.models import F, Value
from django.db.models.functions import Upper
from django.utils import timezone

from chats import paging, services
from chats.models import ChatSession, Message
from chats.sillytavern import chat_import_sillytavern
from core.prepared import PreparedInsert, PreparedQuery, PreparedUpdate
from tests.factories import make_character

pytestmark = pytest.mark.django_db

FIELDS = ("seq", "role", "speaker", "content", "hidden", "status", "version", "created_at", "updated_at")


def _import_chat(user, character, messages: int) -> ChatSession:
    """A chat as users bring theirs: a SillyTavern file, imported."""
    lines = [{"user_name": "Olivia", "character_name": character.name, "create_date": "2024-10-18@20h52m17s"}]
    for n in range(1, messages + 1):
        lines.append(
            {
                "name": "Olivia" if n % 2 else character.name,
                "is_user": bool(n % 2),
                "send_date": f"October 18, 2024 8:{n % 60:02d}pm",
                "mes": f"Line {n}: " + "words " * (n % 7),
            }
        )
    data = "\n".join(json.dumps(line) for line in lines).encode()
    result = chat_import_sillytavern(
        source=io.BytesIO(data), file_name=f"{character.name}.jsonl", user=user, character=character
    )
    assert result.status == "imported", result
    return result.object


@pytest.fixture
def chat(owner):
    return _import_chat(owner, make_character(owner=owner, name="Ada", public=False), 130)


def test_a_prepared_page_is_the_orms_page_in_every_direction(chat, django_assert_num_queries):
    for before, after in [(None, None), (60, None), (3, None), (None, 0), (None, 75), (None, 500), (1, None)]:
        orm = list(
            paging._range(Message.objects.values_list(*FIELDS), chat, before=before, after=after, size=50)
        )
        with django_assert_num_queries(1):
            prepared = paging._value_rows(chat, FIELDS, before=before, after=after, size=50)
        assert prepared == orm, (before, after)
        if before is after is None:
            newest = prepared
    assert [row[0] for row in newest] == list(range(130, 79, -1))
    assert prepared == []  # before the first message
    prepared = newest
    # As the ORM converts them: aware datetimes and booleans, whatever the database stores.
    assert isinstance(prepared[0][FIELDS.index("created_at")], datetime)
    assert prepared[0][FIELDS.index("created_at")].tzinfo is not None
    assert prepared[0][FIELDS.index("hidden")] is False


def test_raw_rows_are_the_same_rows_without_the_orms_conversions(chat):
    converted = paging._value_rows(chat, FIELDS, before=None, after=None, size=50)
    raw = paging._value_rows(chat, FIELDS, before=None, after=None, size=50, raw=True)
    assert len(raw) == len(converted) == 51
    created, hidden = FIELDS.index("created_at"), FIELDS.index("hidden")
    for raw_row, row in zip(raw, converted, strict=True):
        assert raw_row[:hidden] == row[:hidden]  # seq, role, speaker, content: nothing to convert
        assert bool(raw_row[hidden]) is row[hidden]
        # The same instant; only the ORM's time zone (SQLite stores none) is missing or not.
        assert raw_row[created].replace(tzinfo=None) == row[created].replace(tzinfo=None)
    if connections["default"].vendor == "sqlite":
        assert raw[0][hidden] == 0 and raw[0][created].tzinfo is None


def test_the_sql_is_the_orms_and_is_compiled_once_per_connection(chat, owner):
    built = []

    def build(*, user, code):
        built.append((user, code))
        return ChatSession.objects.for_user(user).filter(code=code).values_list("pk", "code")[:1]

    query = PreparedQuery(ChatSession, build)
    assert query.rows(user=owner.pk, code=chat.code) == [(chat.pk, chat.code)]
    assert len(built) == 2  # compiled with two sets of example values, to find the placeholders
    assert query.rows(user=owner.pk, code=uuid.uuid4()) == []
    assert query.rows(user=owner.pk + 1, code=chat.code) == []  # another user's: nothing
    assert len(built) == 2
    orm_sql, _ = build(user=owner.pk, code=chat.code).query.get_compiler(using="default").as_sql()
    compiled = connections["default"].__dict__["_rpchat_prepared"][(query.key, ())]
    assert compiled.sql == orm_sql


def test_a_value_that_changes_the_sql_is_refused_when_first_compiled(chat, owner):
    sliced = PreparedQuery(Message, lambda *, size: Message.objects.values_list("seq")[:size])
    with pytest.raises(ImproperlyConfigured, match="changes the SQL"):
        sliced.rows(size=5)
    # A value the ORM writes otherwise than an id or a UUID column would (here, a UUID as text).
    as_text = PreparedQuery(
        ChatSession, lambda *, code: ChatSession.objects.filter(title=str(code)).values_list("pk")
    )
    with pytest.raises(ImproperlyConfigured, match="is not one of"):
        as_text.rows(code=chat.code)
    with pytest.raises(TypeError):
        PreparedQuery(
            ChatSession, lambda *, title: ChatSession.objects.filter(title=title).values_list("pk")
        ).rows(title="x")


def test_the_api_page_reads_the_users_chat_only(client, owner, other, chat):
    client.force_login(other)
    assert client.get(f"/api/chats/{chat.code}/messages/").status_code == 404
    client.force_login(owner)
    data = client.get(f"/api/chats/{chat.code}/messages/").json()
    assert [m["seq"] for m in data["messages"]] == list(range(130, 80, -1))
    assert data["messages"][0]["content"].startswith("Line 130:")


def test_a_cursor_beyond_a_64_bit_column_means_what_it_says(chat):
    """The driver refuses such a number outright (the fuzz walk found the 500); the ORM's answer is
    kept: before a huge seq is the newest page, after it is nothing."""
    huge = 10**25
    assert paging._value_rows(chat, ("seq",), before=huge, after=None, size=50) == [
        (seq,) for seq in range(130, 79, -1)
    ]
    assert paging._value_rows(chat, ("seq",), before=None, after=huge, size=50) == []
    assert paging._value_rows(chat, ("seq",), before=-huge, after=None, size=50) == []


def test_prepared_instances_are_the_orms_with_their_related_rows_and_deferrals(chat, owner, other):
    def build(*, user, code):
        return (
            ChatSession.objects.for_user(user)
            .with_character()
            .select_related("persona", "parent")
            .defer("parent__metadata", "persona__description")
            .filter(code=code)
        )

    query = PreparedQuery(ChatSession, build)
    (prepared,) = query.instances(user=owner.pk, code=chat.code)
    orm = build(user=owner.pk, code=chat.code).get()
    names = [f.attname for f in ChatSession._meta.concrete_fields]
    assert [getattr(prepared, n) for n in names] == [getattr(orm, n) for n in names]
    assert prepared.get_deferred_fields() == orm.get_deferred_fields()
    # The character came with it, its long fields deferred as with_character() defers them.
    assert ChatSession.character.is_cached(prepared) and prepared.character.name == "Ada"
    assert prepared.character.get_deferred_fields() == orm.character.get_deferred_fields()
    assert prepared.persona is None and prepared.parent is None  # joined, and empty
    assert prepared._state.db == "default" and not prepared._state.adding
    assert query.instances(user=other.pk, code=chat.code) == []  # another user's chat: none
    with pytest.raises(ImproperlyConfigured, match="prefetch_related"):
        PreparedQuery(
            ChatSession, lambda *, user: ChatSession.objects.filter(user=user).prefetch_related("members")
        ).instances(user=owner.pk)


def _edit_update():
    """An edit's UPDATE (the text replaced if still at its version and not streaming), new: its
    first run compiles it on this connection."""
    return PreparedUpdate(Message, services._EDIT.where, services._EDIT.changes)


def test_a_prepared_update_writes_what_the_orms_update_writes(chat):
    """The same stored values (a text, a count, a time with its zone, the version expression) as
    update(), on the rows its keys select, and only while they still match."""
    first, second = Message.objects.filter(session=chat).order_by("seq")[:2]
    when = timezone.now() - timedelta(days=3, microseconds=7)
    edit = _edit_update()
    assert (
        edit.run(
            keys={"pk": first.pk, "version": first.version},
            values={"content": "Prepared «text»", "token_count": 11, "updated_at": when},
        )
        == 1
    )
    Message.objects.filter(pk=second.pk, version=second.version).exclude(
        status=Message.Status.STREAMING
    ).update(content="Prepared «text»", token_count=11, version=F("version") + 1, updated_at=when)
    fields = ("content", "token_count", "version", "updated_at")
    prepared, orm = (Message.objects.values_list(*fields).get(pk=m.pk) for m in (first, second))
    assert prepared == orm == ("Prepared «text»", 11, first.version + 1, when)
    assert Message.objects.get(pk=second.pk).seq == second.seq  # nothing else touched
    # Its old version no longer matches: nothing written, as update() would.
    assert (
        edit.run(
            keys={"pk": first.pk, "version": first.version},
            values={"content": "late", "token_count": 1, "updated_at": when},
        )
        == 0
    )
    assert Message.objects.get(pk=first.pk).content == "Prepared «text»"


def test_a_prepared_update_is_compiled_once_per_connection(chat):
    built = []

    def where(*, pk):
        built.append(pk)
        return Message.objects.filter(pk=pk)

    hide = PreparedUpdate(Message, where, lambda *, hidden_note: {"error": hidden_note})
    messages = list(Message.objects.filter(session=chat).order_by("seq")[:3])
    for m in messages:
        assert hide.run(keys={"pk": m.pk}, values={"hidden_note": f"note {m.seq}"}) == 1
    assert len(built) == 2  # two sets of example values, once
    assert [m.error for m in Message.objects.filter(pk__in=[m.pk for m in messages]).order_by("seq")] == [
        f"note {m.seq}" for m in messages
    ]


def test_a_prepared_update_refuses_what_it_cannot_keep_right(chat, owner):
    message = Message.objects.filter(session=chat).first()
    # A value that is not a field's new value as it is (here, inside an expression).
    upper = PreparedUpdate(
        Message, lambda *, pk: Message.objects.filter(pk=pk), lambda *, text: {"content": Upper(Value(text))}
    )
    with pytest.raises(ImproperlyConfigured):
        upper.run(keys={"pk": message.pk}, values={"text": "x"})
    # A table cachalot caches: its cached results would outlive the UPDATE.
    character = make_character(owner=owner, name="Cached")
    renamed = PreparedUpdate(
        type(character), lambda *, pk: type(character).objects.filter(pk=pk), lambda *, name: {"name": name}
    )
    with pytest.raises(ImproperlyConfigured, match="cachalot"):
        renamed.run(keys={"pk": character.pk}, values={"name": "Renamed"})
    with pytest.raises(TypeError):
        _edit_update().run(
            keys={"pk": message.pk, "version": message.version},
            values={"content": ["not", "text"], "token_count": 1, "updated_at": timezone.now()},
        )


def test_a_number_inside_an_expression_is_a_parameter_too(chat):
    """A send reserves two sequence numbers at once, a regenerate one: `F(...) + n` for each."""
    take = PreparedUpdate(
        ChatSession,
        lambda *, pk: ChatSession.objects.filter(pk=pk),
        lambda *, n: {"last_seq": F("last_seq") + n, "message_count": F("message_count") + n},
    )
    before = ChatSession.objects.values_list("last_seq", "message_count").get(pk=chat.pk)
    assert take.run(keys={"pk": chat.pk}, values={"n": 2}) == 1
    assert take.run(keys={"pk": chat.pk}, values={"n": 1}) == 1
    after = ChatSession.objects.values_list("last_seq", "message_count").get(pk=chat.pk)
    assert after == (before[0] + 3, before[1] + 3)


def _pair(chat, first_seq: int, **reply_fields) -> list[Message]:
    """A send's two new messages, the user's and the reply's, not yet stored."""
    character = chat.character
    return [
        Message(session=chat, seq=first_seq, role=Message.Role.USER, speaker="Olivia", content="«Hi» there"),
        Message(
            session=chat,
            seq=first_seq + 1,
            role=Message.Role.ASSISTANT,
            speaker=character.name,
            character=character,
            status=Message.Status.ERROR,  # one reply streams at a time in a chat
            error="The engine is down.",
            meta={"note": "ünïcode", "n": [1, 2]},
            **reply_fields,
        ),
    ]


# Every column but the id, the seq and the two times, which differ between any two rows.
_COLUMNS = [
    f.attname
    for f in Message._meta.concrete_fields
    if f.attname not in ("id", "seq", "created_at", "updated_at")
]


def test_a_prepared_insert_writes_what_bulk_create_writes(chat, django_assert_num_queries):
    """Each column as bulk_create() stores it (a JSON value, a foreign key, defaults, the auto_now
    time set), every row given its id, and the instances marked as saved."""
    before = timezone.now()
    prepared, orm = _pair(chat, 1001), _pair(chat, 1003)
    new = PreparedInsert(Message)
    with django_assert_num_queries(1):
        assert new.create(prepared) is True
    Message.objects.bulk_create(orm)
    assert all(m.pk and not m._state.adding and m._state.db == "default" for m in prepared)
    assert prepared[1].pk != prepared[0].pk
    assert [m.seq for m in Message.objects.filter(pk__in=[m.pk for m in prepared]).order_by("pk")] == [
        1001,
        1002,
    ]
    mine, theirs = (
        [Message.objects.values_list(*_COLUMNS).get(pk=m.pk) for m in pair] for pair in (prepared, orm)
    )
    assert mine == theirs
    for m in prepared:
        stored = Message.objects.values_list("created_at", "updated_at").get(pk=m.pk)
        assert stored == (m.created_at, m.updated_at)  # the default kept, as the instance holds it
        assert m.updated_at >= before  # auto_now, set by the prepared INSERT as by the ORM's
    assert Message.objects.get(pk=prepared[1].pk).meta == {"note": "ünïcode", "n": [1, 2]}


def test_a_prepared_insert_is_compiled_once_per_connection_and_number_of_rows(chat, monkeypatch):
    new = PreparedInsert(Message)
    compiled = []
    compile_ = new._compile
    monkeypatch.setattr(
        new, "_compile", lambda objs, alias: compiled.append(len(objs)) or compile_(objs, alias)
    )
    for seq in (2001, 2003, 2005):
        assert new.create(_pair(chat, seq))
    assert new.create(_pair(chat, 2007)[:1])
    assert compiled == [2, 1]
    assert Message.objects.filter(session=chat, seq__gte=2001).count() == 7


def test_values_that_need_other_sql_are_compiled_again_for_that_insert(chat):
    """An expression among the values takes other placeholders than plain values: that INSERT is
    compiled for them, and the next plain one still uses the SQL compiled first."""
    new = PreparedInsert(Message)
    assert new.create(_pair(chat, 3001))
    shouted = _pair(chat, 3003, content=Upper(Value("shouted")))
    assert new.create(shouted)
    assert new.create(plain := _pair(chat, 3005))
    assert Message.objects.get(pk=shouted[1].pk).content == "SHOUTED"
    assert Message.objects.get(pk=plain[0].pk).content == "«Hi» there"


def test_a_prepared_insert_refuses_what_it_cannot_keep_right(chat, owner):
    stored = _pair(chat, 4001)
    Message.objects.bulk_create(stored)
    with pytest.raises(ValueError, match="new rows"):
        PreparedInsert(Message).create(stored)
    # A table cachalot caches: its cached results would outlive the INSERT.
    character = make_character(owner=owner, name="Cached")
    with pytest.raises(ImproperlyConfigured, match="cachalot"):
        PreparedInsert(type(character)).create([type(character)(owner=owner, name="New")])
    assert not type(character).objects.filter(name="New").exists()
