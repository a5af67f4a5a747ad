"""Character search: ranked full text over card text, visibility respected, kept in sync, the
gallery's q finding card text as well as names, and the plan using the full-text index."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from characters.models import Character
from characters.search import matching_ids, search_characters
from core.search import parse_query
from tests.factories import make_character

pytestmark = pytest.mark.django_db


def names(user, query) -> list[str]:
    return [hit.name for hit in search_characters(user=user, query=query)]


def test_a_match_in_the_name_ranks_above_one_in_the_card_text(owner):
    make_character(name="Aldric", description="A knight who guards the Ember gate.")
    make_character(name="Ember", description="A fire spirit.")
    make_character(name="Nobody", description="Unrelated.")
    assert names(owner, "ember") == ["Ember", "Aldric"]


def test_only_characters_the_user_may_see_are_found(owner, other):
    make_character(owner=owner, public=False, name="Hidden Sage", description="Keeper of runes.")
    make_character(name="Public Sage", description="Reader of runes.")
    make_character(name="Retired Sage", description="Runes.", is_active=False)
    make_character(name="Gone Sage", description="Runes.", deleted_at=timezone.now())
    assert names(other, "runes") == ["Public Sage"]
    assert sorted(names(owner, "runes")) == ["Hidden Sage", "Public Sage"]


def test_the_index_follows_edits_and_deletes(owner):
    character = make_character(name="Brann", scenario="A storm at sea.")
    assert names(owner, "storm") == ["Brann"]
    Character.objects.filter(pk=character.pk).update(scenario="A calm harbour.")
    assert names(owner, "storm") == []
    assert names(owner, "harbour") == ["Brann"]
    character.delete()
    assert names(owner, "harbour") == []


def test_snippets_are_escaped(owner):
    make_character(name="Imp", description='<img src=x onerror="alert(1)"> a mischievous imp')
    hit = search_characters(user=owner, query="mischievous")[0]
    assert "<img" not in hit.snippet and "&lt;img" in hit.snippet
    assert "<mark>mischievous</mark>" in hit.snippet


def test_the_gallery_q_finds_names_by_substring_and_card_text_by_word(owner_client):
    make_character(name="Bramwell", description="A baker.")
    make_character(name="Cassia", description="A pirate captain of the southern seas.")
    url = reverse("characters:gallery")
    html = owner_client.get(url, {"q": "bramw"}).content.decode()
    assert re.findall(r'<span class="name">([^<]+)</span>', html) == ["Bramwell"]
    html = owner_client.get(url, {"q": "pirate"}).content.decode()
    assert re.findall(r'<span class="name">([^<]+)</span>', html) == ["Cassia"]


def test_the_character_match_uses_the_full_text_index(owner):
    for i in range(50):
        make_character(name=f"Filler {i}", description="Plain text.")
    make_character(name="Target", description="An astronomer.")
    sql, params = Character.objects.filter(
        id__in=matching_ids(parse_query("astronomer"))
    ).query.sql_with_params()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + sql, params)
        else:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        plan = "\n".join(" ".join(str(c) for c in row) for row in cursor.fetchall())
    if connection.vendor == "postgresql":
        assert "character_text_fts_idx" in plan, plan
    else:
        assert re.search(r"characters_character_fts VIRTUAL TABLE INDEX \d+:M", plan), plan
    assert names(owner, "astronomer") == ["Target"]
