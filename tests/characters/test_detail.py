"""The character page and its pictures: constant queries whatever the instance holds."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db


def test_the_character_page_makes_the_same_queries_with_many_characters_and_chats(
    owner_client, owner, django_assert_num_queries
):
    character = make_character(name="Mira", tags=["fantasy", "mystery"], description="**Bold** and kind.")
    owner_client.get(character.get_absolute_url())
    # the character (its tags come from cachalot once warm)
    with django_assert_num_queries(1):
        html = owner_client.get(character.get_absolute_url()).content.decode()
    assert "<strong>Bold</strong>" in html and "fantasy" in html and "mystery" in html
    for i in range(200):
        make_character(name=f"Other {i}", tags=["fantasy"])
    for _ in range(30):
        make_chat(user=owner, character=character, messages=3)
    owner_client.get(character.get_absolute_url())
    with django_assert_num_queries(1):
        owner_client.get(character.get_absolute_url())


def test_a_missing_picture_is_a_404_after_one_lookup(owner_client, django_assert_num_queries):
    character = make_character(name="Plain")
    url = reverse("characters:thumbnail", args=[character.code])
    owner_client.get(url)
    # the character's picture columns
    with django_assert_num_queries(1):
        assert owner_client.get(url).status_code == 404
