"""cachalot's key for a query (core/cachalot_keys.py): a query of a table cachalot never caches is
refused before its SQL is compiled for a key; the cached tables stay cached."""

from __future__ import annotations

from unittest import mock

import pytest
from cachalot.utils import UncachableQuery
from django.db import connection
from django.test.utils import CaptureQueriesContext

from characters.models import Character
from chats.models import Message
from core.cachalot_keys import query_key
from tests.factories import make_character, make_chat


@pytest.mark.django_db
def test_a_query_of_messages_is_refused_without_compiling_its_sql(owner):
    chat = make_chat(user=owner, character=make_character(), messages=3)
    compiler = Message.objects.filter(session=chat).order_by("-seq")[:50].query.get_compiler("default")
    with (
        mock.patch.object(compiler, "as_sql", side_effect=AssertionError("compiled")),
        pytest.raises(UncachableQuery),
    ):
        query_key(compiler)


@pytest.mark.django_db
def test_a_query_of_characters_gets_cachalots_own_key(owner):
    make_character(name="Ada", owner=owner)
    compiler = Character.objects.filter(name="Ada").query.get_compiler("default")
    key = query_key(compiler)
    assert key and isinstance(key, str)


# Outside a test transaction: inside one, cachalot keeps results in a per-transaction dict.
@pytest.mark.django_db(transaction=True)
def test_characters_are_still_read_from_cachalot_and_messages_from_the_database(owner):
    chat = make_chat(user=owner, character=make_character(name="Ada", owner=owner), messages=3)
    list(Character.objects.filter(name="Ada"))
    list(Message.objects.filter(session=chat))
    with CaptureQueriesContext(connection) as queries:
        assert [c.name for c in Character.objects.filter(name="Ada")] == ["Ada"]
        assert len(list(Message.objects.filter(session=chat))) == 3
    assert len(queries) == 1 and "chats_message" in queries[0]["sql"]
