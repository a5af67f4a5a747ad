"""The gallery's results, cached until a character or tag changes (core.table_cache): a change made
through the app's own flows (the editor, a delete, an import) shows at once, to its owner and to
everyone else; what is unchanged is served without queries or rendering."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.test import Client
from django.urls import reverse

from characters import services
from characters.models import Character
from core import table_cache
from core.cache_backends import clear_environment
from tests import cardkit
from tests.characters.test_editor import editor_form, imported

# Transactions committed as in production: cachalot publishes its invalidations at commit, and the
# cache is bypassed inside a transaction (a test wrapped in one would never use it).
pytestmark = pytest.mark.django_db(transaction=True)
GALLERY = reverse("characters:gallery")


def _import(owner, name: str) -> Character:
    data = cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card(name))})
    result = services.card_import(source=data, file_name=f"{name}.png", owner=owner)
    assert result.status == "imported", result.reason
    return result.object


def _edit(client, character, **fields):
    form = editor_form(client, character)
    form.update({name: [value] for name, value in fields.items()})
    response = client.post(reverse("characters:edit", args=[character.code]), form)
    assert response.status_code == 302, response.content.decode()[:2000]


def card(name: str) -> str:
    return f'<span class="name">{name}</span>'


def _warm(client, url=GALLERY) -> str:
    client.get(url)  # the first request sets cachalot's table stamps; the second caches
    return client.get(url).content.decode()


def test_an_edit_through_the_editor_shows_at_once_in_the_owners_and_others_galleries(
    owner_client, owner, other
):
    ada = imported(owner)
    client = Client()
    client.force_login(other)
    assert card("Ada") not in _warm(client)  # private: only its owner sees it
    assert card("Ada") in _warm(owner_client)

    _edit(owner_client, ada, name="Ada Lovelace", tags="Mathematics", visibility="public")

    mine = owner_client.get(GALLERY).content.decode()
    assert card("Ada Lovelace") in mine and ">Mathematics<" in mine
    theirs = client.get(GALLERY).content.decode()
    assert card("Ada Lovelace") in theirs  # now public: the other user's cached gallery moved too
    assert '<option value="Mathematics"' in theirs  # and its tag filter


def test_a_deleted_character_leaves_every_gallery_at_once(owner_client, owner, other):
    bea = _import(owner, "Beatrix")
    _edit(owner_client, bea, visibility="public")
    client = Client()
    client.force_login(other)
    assert card("Beatrix") in _warm(client)
    response = owner_client.post(reverse("characters:delete", args=[bea.code]))
    assert response.status_code == 302
    assert card("Beatrix") not in client.get(GALLERY).content.decode()
    assert card("Beatrix") not in owner_client.get(GALLERY).content.decode()


def test_a_new_import_shows_on_the_next_page_view(owner_client, owner):
    _import(owner, "Cora")
    assert card("Cora") in _warm(owner_client)
    _import(owner, "Dora")
    page = owner_client.get(GALLERY).content.decode()
    assert card("Cora") in page and card("Dora") in page


def test_an_unchanged_gallery_is_served_without_queries_or_rendering_its_cards(
    owner_client, owner, django_assert_num_queries
):
    _import(owner, "Edda")
    _warm(owner_client)
    with django_assert_num_queries(0):
        response = owner_client.get(GALLERY)
    assert card("Edda") in response.content.decode()
    assert "characters/card.html" not in [t.name for t in response.templates]
    # The live-search partial is the same cached results.
    partial = owner_client.get(GALLERY, HTTP_X_PARTIAL="1")
    assert card("Edda") in partial.content.decode() and "<html" not in partial.content.decode()


def test_the_cache_is_bypassed_when_its_stamps_are_unknown_off_or_inside_a_transaction(owner, settings):
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    models = (Character,)
    # No stamp for the table yet. Only this worker's keys: a FLUSHDB (Django's clear() on Redis) would
    # empty the caches of the tests other workers are running at the same time.
    clear_environment("cachalot")
    assert table_cache.cached_by_tables("t", ("a",), models, compute) == 1
    assert table_cache.cached_by_tables("t", ("a",), models, compute) == 2
    list(Character.objects.all())  # cachalot caches a query on the table: its stamp is set
    assert table_cache.cached_by_tables("t", ("a",), models, compute) == 3
    assert table_cache.cached_by_tables("t", ("a",), models, compute) == 3  # cached
    assert table_cache.cached_by_tables("t", ("b",), models, compute) == 4  # other parts, other key
    _import(owner, "Fern")  # a write to the table
    assert table_cache.cached_by_tables("t", ("a",), models, compute) == 5
    with transaction.atomic():
        assert table_cache.cached_by_tables("t", ("a",), models, compute) == 6
    from cachalot.api import cachalot_disabled

    with cachalot_disabled():
        assert table_cache.cached_by_tables("t", ("a",), models, compute) == 7


def test_the_apis_character_list_is_cached_the_same_way(owner_client, owner, django_assert_num_queries):
    gwen = _import(owner, "Gwen")
    url = reverse("api:characters")
    owner_client.get(url)
    assert [c["name"] for c in owner_client.get(url).json()["results"]] == ["Gwen"]
    with django_assert_num_queries(0):
        assert [c["name"] for c in owner_client.get(url).json()["results"]] == ["Gwen"]
    _edit(owner_client, gwen, name="Gwendolyn", tags="Poets")
    (result,) = owner_client.get(url).json()["results"]
    assert (result["name"], result["tags"]) == ("Gwendolyn", ["Poets"])
