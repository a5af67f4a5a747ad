"""Message search: a user finds only their own messages, the index follows every change, the query
language cannot be abused, and the query plan uses the full-text index on either database."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.urls import reverse

from chats.models import ChatSession, Message
from chats.search import message_search_sql, search_messages
from core.search import parse_query
from tests.factories import add_messages, make_character, make_chat

pytestmark = pytest.mark.django_db


def found(user, query, **kwargs) -> list[tuple[str, int]]:
    return [(str(h.chat_code), h.seq) for h in search_messages(user=user, query=query, **kwargs).hits]


@pytest.fixture
def two_users_chats(owner, other):
    mira = make_character(name="Mira")
    mine = make_chat(user=owner, character=mira, messages=0)
    add_messages(mine, 1, text="The silver dragon sleeps under the mountain.")
    add_messages(mine, 1, text="A quiet evening at the inn.")
    theirs = make_chat(user=other, character=mira, messages=0)
    add_messages(theirs, 1, text="Another silver dragon, in someone else's chat.")
    return mine, theirs


def test_a_user_finds_only_their_own_messages(owner, other, two_users_chats):
    mine, theirs = two_users_chats
    assert found(owner, "dragon") == [(str(mine.code), 1)]
    assert found(other, "dragon") == [(str(theirs.code), 1)]
    assert found(owner, "someone") == []


def test_a_chat_the_user_does_not_own_cannot_be_searched_through_the_chat_scope(owner, two_users_chats):
    mine, theirs = two_users_chats
    # The chat filter narrows within the user's own messages; it never widens to another user's.
    assert found(owner, "dragon", session=theirs) == []
    assert found(owner, "dragon", session=mine) == [(str(mine.code), 1)]


def test_all_words_must_match_phrases_keep_their_order_and_a_star_matches_a_prefix(owner):
    chat = make_chat(user=owner, character=make_character(), messages=0)
    add_messages(chat, 1, text="The old lighthouse keeper waved.")
    add_messages(chat, 1, text="A keeper of old secrets.")
    assert [seq for _, seq in found(owner, "old keeper")] == [2, 1]
    assert [seq for _, seq in found(owner, '"old lighthouse"')] == [1]
    assert [seq for _, seq in found(owner, '"keeper old"')] == []
    assert [seq for _, seq in found(owner, "light*")] == [1]
    assert [seq for _, seq in found(owner, "l*")] == []  # one letter is a word, not a prefix
    assert [seq for _, seq in found(owner, "LIGHTHOUSE")] == [1]


def test_results_come_newest_first_in_pages_that_follow_each_other(owner):
    chat = make_chat(user=owner, character=make_character(), messages=45, text="Echo number {seq}")
    first = search_messages(user=owner, query="echo", limit=20)
    assert [h.seq for h in first.hits] == list(range(45, 25, -1))
    second = search_messages(user=owner, query="echo", limit=20, before=first.next_before)
    third = search_messages(user=owner, query="echo", limit=20, before=second.next_before)
    assert [h.seq for h in second.hits] == list(range(25, 5, -1))
    assert [h.seq for h in third.hits] == [5, 4, 3, 2, 1]
    assert third.next_before is None
    assert {h.chat_code for h in first.hits} == {chat.code}


def test_the_index_follows_edits_deletes_and_deleted_chats(owner):
    chat = make_chat(user=owner, character=make_character(), messages=0)
    add_messages(chat, 2, text="A lantern flickers ({seq}).")
    assert len(found(owner, "lantern")) == 2
    # An edit through the ORM's update(), as the services do.
    Message.objects.filter(session=chat, seq=1).update(content="A candle gutters.")
    assert found(owner, "lantern") == [(str(chat.code), 2)]
    assert found(owner, "candle") == [(str(chat.code), 1)]
    Message.objects.filter(session=chat, seq=2).delete()
    assert found(owner, "lantern") == []
    ChatSession.objects.filter(pk=chat.pk).update(deleted_at="2026-01-01T00:00:00Z")
    assert found(owner, "candle") == []


def test_a_chat_given_to_another_user_moves_its_messages_to_their_search(owner, other):
    chat = make_chat(user=owner, character=make_character(), messages=0)
    add_messages(chat, 1, text="A heirloom sword.")
    ChatSession.objects.filter(pk=chat.pk).update(user=other)
    assert found(owner, "heirloom") == []
    assert found(other, "heirloom") == [(str(chat.code), 1)]


def test_query_syntax_in_the_search_box_is_taken_as_text(owner, other, two_users_chats):
    # FTS5 operators, column filters and tsquery syntax must neither error nor widen the scope.
    for query in [
        'scope : "u1"',
        f"u{other.pk}",
        "dragon OR someone",
        "NEAR(dragon someone)",
        '"unbalanced',
        "dragon:*",
        "!dragon",
        "-dragon",
        "content : someone",
        "* ",
        "'",
        "scope s1",
        "&|!():*",
    ]:
        results = search_messages(user=owner, query=query)
        assert all(str(h.chat_code) == str(two_users_chats[0].code) for h in results.hits), query
    assert found(owner, "dragon OR someone") == []  # OR is a word that must also appear


def test_a_message_cannot_forge_another_users_scope(owner, other):
    chat = make_chat(user=other, character=make_character(), messages=0)
    mine = make_chat(user=owner, character=make_character(), messages=0)
    add_messages(chat, 1, text=f"u{owner.pk} s{mine.pk} scope u{owner.pk} 'scope s{mine.pk}' treasure")
    assert found(owner, "treasure") == []


def test_snippets_show_the_match_escaped_with_the_words_marked(owner):
    chat = make_chat(user=owner, character=make_character(), messages=0)
    add_messages(
        chat,
        1,
        text="x " * 200 + 'the <script>alert("dragon")</script> & the dragon <b>roars</b> ' + "y " * 200,
    )
    snippet = search_messages(user=owner, query="dragon").hits[0].snippet
    assert "<script>" not in snippet and "<b>" not in snippet
    assert "&lt;script&gt;" in snippet and "&amp;" in snippet
    assert snippet.count("<mark>dragon</mark>") == 2
    assert snippet.startswith("…") and snippet.endswith("…") and len(snippet) < 400


def test_an_empty_or_wordless_query_finds_nothing_without_querying(owner, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert search_messages(user=owner, query="").hits == []
        assert search_messages(user=owner, query="  !!! ** ").hits == []


def test_a_search_is_one_query_at_any_size(owner, django_assert_num_queries):
    chat = make_chat(user=owner, character=make_character(), messages=30, text="Wind over the moor {seq}")
    # the FTS match joined with the message, its chat and the chat's character
    with django_assert_num_queries(1):
        assert len(search_messages(user=owner, query="moor").hits) == 20
    add_messages(chat, 3000, text="Wind over the moor {seq}")
    with django_assert_num_queries(1):
        assert len(search_messages(user=owner, query="moor").hits) == 20


def _plan(sql: str, params: list) -> str:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())


def test_the_query_plan_is_driven_by_the_full_text_index(owner, other):
    # Enough rows, and fresh statistics, for PostgreSQL's planner to weigh its choices as it would
    # on a real instance: the searched words are rare, the user's messages are many.
    character = make_character()
    chats = [
        make_chat(user=owner, character=character, messages=1000, text="Sun on the hills {seq}")
        for _ in range(3)
    ]
    make_chat(user=other, character=character, messages=2000, text="Wind in the trees {seq}")
    add_messages(chats[1], 5, text="Rain on the roof again {seq}")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE chats_message_search, chats_message, chats_chatsession")
            # A few thousand rows fit in a handful of pages, where reading them all (straight, or
            # in key order) is the cheapest plan; forbid both for this test's transaction, as a
            # large table would, and see which index the planner turns to.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_indexscan = off")
    terms = parse_query("rain roof")
    for session in (None, chats[1]):
        sql, params = message_search_sql(terms, user_id=owner.pk, session=session, limit=21)
        plan = _plan(sql, params)
        if connection.vendor == "postgresql":
            assert "Bitmap Index Scan on message_search_document_idx" in plan, plan
            assert "Seq Scan on chats_message" not in plan, plan
        else:
            assert re.search(r"SCAN f VIRTUAL TABLE INDEX \d+:M", plan), plan
            # Every other table is reached by its primary key, never scanned; no sort of the matches.
            assert re.search(r"SEARCH m USING INTEGER PRIMARY KEY", plan), plan
            assert not re.search(r"SCAN (m|s|c)\b", plan), plan
            assert "TEMP B-TREE" not in plan, plan
        assert len(search_messages(user=owner, query="rain roof", session=session).hits) == 5


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite keeps the index in sync with triggers")
def test_triggers_dropped_by_a_table_rebuild_are_restored_and_the_index_caught_up(owner):
    from core.search import ensure_sqlite_triggers

    chat = make_chat(user=owner, character=make_character(), messages=0)
    with connection.cursor() as cursor:
        cursor.execute("DROP TRIGGER chats_message_fts_insert")
    add_messages(chat, 1, text="Written while the trigger was gone.")
    assert found(owner, "trigger") == []
    assert ensure_sqlite_triggers(connection, migration="0003_message_search", app_label="chats") == [
        "chats_message_fts_insert"
    ]
    assert found(owner, "trigger") == [(str(chat.code), 1)]
    add_messages(chat, 1, text="And another trigger test.")
    assert len(found(owner, "trigger")) == 2
    assert ensure_sqlite_triggers(connection, migration="0003_message_search", app_label="chats") == []


def test_the_search_page_links_each_result_to_the_chat_opened_at_that_message(
    owner_client, owner, other, two_users_chats
):
    mine, _ = two_users_chats
    html = owner_client.get(reverse("search"), {"q": "dragon"}).content.decode()
    assert f'href="/chats/{mine.code}/?at=1#m1"' in html
    assert "<mark>dragon</mark>" in html
    assert "someone else" not in html
    assert "Mira" in html  # the character, found by name in its card


def test_the_search_page_escapes_the_query_and_needs_a_login(client, owner_client):
    html = owner_client.get(reverse("search"), {"q": '<img src=x onerror=alert(1)> "x'}).content.decode()
    assert "<img src=x" not in html and "&lt;img src=x" in html
    client.logout()
    response = client.get(reverse("search"), {"q": "x"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_search_page_makes_the_same_queries_at_any_size(owner_client, owner, django_assert_num_queries):
    chat = make_chat(
        user=owner, character=make_character(name="Mira"), messages=30, text="Fog on the pier {seq}"
    )
    url = reverse("search")
    owner_client.get(url, {"q": "fog"})
    # the message search, the character search
    with django_assert_num_queries(2):
        owner_client.get(url, {"q": "fog"})
    add_messages(chat, 3000, text="Fog on the pier {seq}")
    for i in range(100):
        make_character(name=f"Fog spirit {i}")
    with django_assert_num_queries(2):
        html = owner_client.get(url, {"q": "fog"}).content.decode()
    assert html.count('class="snippet"') == 20 + 8


@pytest.mark.django_db(transaction=True)
def test_later_migrations_can_still_rebuild_the_tables_search_depends_on(owner):
    """Django rebuilds a SQLite table for most field changes, renaming the new table at the end;
    SQLite refuses while a trigger on another table names it. chats.apps lifts the search
    triggers around migrations of chats, and search works afterwards."""
    from django.apps import apps
    from django.db import models
    from django.db.models.signals import post_migrate, pre_migrate

    from characters.models import Character
    from characters.search import search_characters

    chat = make_chat(user=owner, character=make_character(name="Tamsin", description="A weaver."), messages=0)
    add_messages(chat, 1, text="Before the rebuild: a loom.")

    def widen(model, name, max_length):
        old = model._meta.get_field(name)
        new = models.CharField(max_length=max_length, blank=old.blank)
        new.set_attributes_from_name(name)
        new.model = model
        with connection.schema_editor() as editor:
            editor.alter_field(model, old, new)
        with connection.schema_editor() as editor:
            editor.alter_field(model, new, old)

    class FakeMigration:
        app_label = "chats"

    # What migrate sends around a plan with a migration of chats in it.
    chats_app = apps.get_app_config("chats")
    pre_migrate.send(sender=chats_app, app_config=chats_app, using="default", plan=[(FakeMigration(), False)])
    widen(Message, "speaker", 300)
    widen(ChatSession, "title", 300)
    add_messages(chat, 1, text="Written during the migration: a spindle and a loom.")
    widen(Character, "name", 300)
    post_migrate.send(sender=chats_app, app_config=chats_app, using="default", plan=[])
    from django.core.management import call_command

    call_command("migrate", "characters", verbosity=0)  # its post_migrate restores characters' triggers
    add_messages(chat, 1, text="After the rebuild: another loom.")
    assert [h.seq for h in search_messages(user=owner, query="loom").hits] == [3, 2, 1]
    assert [h.seq for h in search_messages(user=owner, query="spindle").hits] == [2]
    Message.objects.filter(session=chat, seq=1).delete()
    assert [h.seq for h in search_messages(user=owner, query="loom").hits] == [3, 2]
    assert [h.name for h in search_characters(user=owner, query="weaver")] == ["Tamsin"]
