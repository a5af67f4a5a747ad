"""The admin lists of the big tables: the same queries with 60 rows and with thousands, no COUNT(*)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.urls import reverse

from characters.models import Character
from chats.models import ChatSession, Message
from tests.factories import add_messages, make_character, make_chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def _changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


@pytest.mark.parametrize("model", [Character, ChatSession, Message], ids=lambda m: m.__name__)
def test_an_admin_list_makes_the_same_queries_with_many_more_rows(
    staff, owner, model, django_assert_num_queries
):
    for i in range(60):
        chat = make_chat(user=owner, character=make_character(owner=owner, name=f"C{i:03d}"), messages=1)
    if connection.vendor == "postgresql":
        # The estimate reads pg_class.reltuples, which autovacuum keeps filled in a live database;
        # before any ANALYZE it falls back to one more query (MAX(id)).
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    url = _changelist(model)
    staff.get(url)
    # the table's size estimated from its largest id (no COUNT(*)); one page of rows
    # joined with what the columns show (owner; user and character; chat)
    with django_assert_num_queries(2):
        first = staff.get(url).content.decode()
    assert first.count('class="action-select"') == 50
    for i in range(200):
        chat = make_chat(user=owner, character=make_character(owner=owner, name=f"D{i:03d}"), messages=1)
    add_messages(chat, 3000)
    staff.get(url)
    with django_assert_num_queries(2):
        html = staff.get(url).content.decode()
    assert html.count('class="action-select"') == 50


def test_the_admin_lists_show_the_newest_rows_first(staff, owner):
    first = make_chat(user=owner, character=make_character(name="Older one"), messages=1)
    last = make_chat(user=owner, character=make_character(name="Newer one"), messages=1)
    html = staff.get(_changelist(Character)).content.decode()
    assert html.index("Newer one") < html.index("Older one")
    html = staff.get(_changelist(ChatSession)).content.decode()
    assert html.index(f"{last.title}<") < html.index(f"{first.title}<")
