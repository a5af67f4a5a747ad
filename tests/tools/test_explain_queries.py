"""`manage.py explain_queries`: every hot query is served by an index on a large data set, a query
that needs a missing index fails the check, and the registered queries are the ones pages run."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse

from core import hot_queries
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def large_data_set(django_db_setup, django_db_blocker):
    """A chat of 20,000 messages, 3,000 characters of one owner and 2,000 chats, with fresh planner
    statistics: big enough that PostgreSQL prefers its indexes. Made once for the module."""
    from tools import load_data

    with django_db_blocker.unblock():
        load_data.generate(chat_sizes=[20_000], character_sets=[10, 3000])
        load_data.analyze()
        yield
        load_data.reset()
        from characters.models import Tag

        Tag.objects.all().delete()


@pytest.fixture
def extra_query():
    """Register hot queries for one test only."""
    added = []

    def register(name, build, **options):
        hot_queries.hot_query(name, **options)(build)
        added.append(name)

    yield register
    for name in added:
        hot_queries._registry.pop(name, None)


def test_every_hot_query_is_served_by_an_index_on_a_large_data_set(large_data_set):
    out = StringIO()
    call_command("explain_queries", stdout=out)
    text = out.getvalue()
    for name in (
        "gallery: first page",
        "gallery: filter by label",
        "gallery: filter by tag",
        "chat list",
        "chat page: newest messages",
        "chat page: an older page from the middle",
        "prompt: history read",
        "lorebook: a book's enabled entries",
        "admin: characters list",
        "admin: chats list",
        "admin: messages list",
    ):
        assert name in text
    assert "skipped" not in text
    assert re.search(r"\d+ hot queries checked: no full scan or sort of a big table", text)
    assert "character_public_name_idx" in text and "character_owner_name_idx" in text
    assert "message_session_seq_uniq" in text.replace(
        "sqlite_autoindex_chats_message_1", "message_session_seq_uniq"
    )


def test_a_query_the_indexes_do_not_serve_fails_the_check(large_data_set, extra_query):
    from chats.models import ChatSession, Message

    def by_token_count():
        session = ChatSession.objects.order_by("-message_count").first()
        return Message.objects.filter(session=session).order_by("-token_count")[:50]

    def by_speaker():
        return Message.objects.filter(speaker="nobody")[:50]

    extra_query("test: messages by token count", by_token_count)
    extra_query("test: messages by speaker", by_speaker)
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("explain_queries", "--only", "test:", stdout=out)
    message = str(failure.value)
    assert message.startswith("2 of 2 hot queries scan or sort a big table")
    assert re.search(r"test: messages by token count: [^;]*(temporary sort|Sort node)", message)
    assert re.search(r"test: messages by speaker: [^;]*full scan of chats_message", message)
    assert out.getvalue().count("problem:") >= 2


def test_an_allowed_scan_passes_with_its_reason(large_data_set, extra_query):
    from chats.models import Message

    extra_query(
        "test: allowed",
        lambda: Message.objects.filter(speaker="nobody").order_by()[:50],
        allow_scan="a test says so",
    )
    out = StringIO()
    call_command("explain_queries", "--only", "test: allowed", stdout=out)
    assert "(allowed: a test says so)" in out.getvalue()


def test_postgresql_plans_are_judged_by_seq_scans_and_big_sorts():
    big = {"chats_message"}
    sql = 'SELECT ... FROM "chats_message" ...'
    plan = (
        "Limit  (cost=1..2 rows=50 width=8)\n  ->  Seq Scan on chats_message  (cost=0..9 rows=20000 width=8)"
    )
    assert hot_queries.judge(plan, "postgresql", big=big, sql=sql)[0] == [
        "full scan of chats_message (Seq Scan)"
    ]
    plan = (
        "Limit\n  ->  Sort  (cost=5..6 rows=20000 width=8)\n        ->  Index Scan using x on chats_message"
    )
    assert hot_queries.judge(plan, "postgresql", big=big, sql=sql)[0] == [
        "a Sort node over an estimated 20,000 rows"
    ]
    plan = "Limit\n  ->  Sort  (cost=5..6 rows=12 width=8)\n        ->  Index Scan using x on chats_message"
    assert hot_queries.judge(plan, "postgresql", big=big, sql=sql)[0] == []
    plan = "Limit\n  ->  Incremental Sort  (cost=5..6 rows=2000 width=8)\n        ->  Index Scan using x on chats_message"
    problems, notes = hot_queries.judge(plan, "postgresql", big=big, sql=sql)
    assert problems == [] and "incremental sort" in notes[0]


def _normalized(sql: str) -> str:
    return re.sub(r"\s+(LIMIT|OFFSET)\s+\d+", "", sql)


def _page_sql(client, url, data=None) -> set[str]:
    seen: set[str] = set()

    def capture(execute, sql, params, many, context):
        seen.add(_normalized(sql))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        assert client.get(url, data or {}).status_code == 200
    return seen


def _registered_sql(name: str) -> str:
    query = next(q for q in hot_queries.registered() if q.name == name)
    return _normalized(query.build().query.sql_with_params()[0])


def test_the_registered_queries_are_the_ones_the_pages_run(client, owner, admin_user):
    character = make_character(owner=owner, name="Mira", tags=["fantasy"], label="main", public=False)
    chat = make_chat(user=owner, character=character, messages=200)
    client.force_login(owner)
    gallery = _page_sql(client, reverse("characters:gallery"))
    assert _registered_sql("gallery: first page") in gallery
    assert _registered_sql("gallery: filter by label") in _page_sql(
        client, reverse("characters:gallery"), {"label": "main"}
    )
    assert _registered_sql("gallery: filter by tag") in _page_sql(
        client, reverse("characters:gallery"), {"tag": "fantasy"}
    )
    assert _registered_sql("gallery: search by name") in _page_sql(
        client, reverse("characters:gallery"), {"q": "ar"}
    )
    assert _registered_sql("chat list") in _page_sql(client, reverse("chats:list"))
    assert _registered_sql("chat page: newest messages") in _page_sql(client, chat.get_absolute_url())
    older = _page_sql(client, reverse("chats:older", args=[chat.code]), {"before": 100})
    assert _registered_sql("chat page: an older page from the middle") in older

    from chats.prompt import build_prompt
    from settings_app.models import SiteSettings

    seen: set[str] = set()

    def capture(execute, sql, params, many, context):
        seen.add(_normalized(sql))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        build_prompt(
            session=chat,
            character=character,
            user_name="olivia",
            persona_description="",
            site=SiteSettings.load(),
            context_size=2048,
            reply_tokens=0,
            before_seq=chat.last_seq + 1,
        )
    assert _registered_sql("prompt: history read") in seen

    client.force_login(admin_user)
    from characters.models import Character
    from chats.models import ChatSession, Message

    for model, name in (
        (Character, "admin: characters list"),
        (ChatSession, "admin: chats list"),
        (Message, "admin: messages list"),
    ):
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert _registered_sql(name) in _page_sql(client, url), name
