"""The character gallery: search, tag and label filters, pages, constant queries, visibility."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.factories import make_character

pytestmark = pytest.mark.django_db


def names(html: str) -> list[str]:
    return re.findall(r'<span class="name">([^<]+)</span>', html)


def test_search_tag_and_label_filters(owner_client):
    make_character(name="Aria Vale", tags=["fantasy"], label="main")
    make_character(name="Bram Thorne", tags=["Sci-Fi"], label="main")
    make_character(name="Cassia Rook", tags=["fantasy"], label="side")
    url = reverse("characters:gallery")
    assert names(owner_client.get(url, {"q": "bram"}).content.decode()) == ["Bram Thorne"]
    assert names(owner_client.get(url, {"tag": "FANTASY"}).content.decode()) == ["Aria Vale", "Cassia Rook"]
    assert names(owner_client.get(url, {"label": "main"}).content.decode()) == ["Aria Vale", "Bram Thorne"]
    assert names(owner_client.get(url, {"tag": "fantasy", "label": "side"}).content.decode()) == [
        "Cassia Rook"
    ]
    assert "No characters match" in owner_client.get(url, {"q": "nobody"}).content.decode()


def test_the_gallery_is_paginated_with_the_same_queries_at_any_size(
    owner_client, django_assert_num_queries, settings
):
    for i in range(30):
        make_character(name=f"C{i:03d}", tags=["t"])
    url = reverse("characters:gallery")
    owner_client.get(url)
    # one page of characters (no COUNT), its tags, the label and tag filter lists come
    # from cachalot once warm (until a character changes)
    with django_assert_num_queries(0):
        first = owner_client.get(url).content.decode()
    assert names(first) == [f"C{i:03d}" for i in range(24)]
    assert 'rel="next"' in first
    assert names(owner_client.get(url, {"page": 2}).content.decode()) == [f"C{i:03d}" for i in range(24, 30)]
    for i in range(30, 300):
        make_character(name=f"C{i:03d}", tags=["t"])
    owner_client.get(url)
    with django_assert_num_queries(0):
        owner_client.get(url)


def test_private_characters_are_seen_only_by_their_owner(client, owner, other):
    mine = make_character(owner=owner, public=False, name="Secret Sam")
    client.force_login(other)
    assert "Secret Sam" not in client.get(reverse("characters:gallery")).content.decode()
    assert client.get(mine.get_absolute_url()).status_code == 404
    client.force_login(owner)
    assert "Secret Sam" in client.get(reverse("characters:gallery")).content.decode()
    assert client.get(mine.get_absolute_url()).status_code == 200


def test_card_text_is_sanitized_on_the_detail_page(owner_client):
    character = make_character(description="<script>alert(1)</script>[x](javascript:alert(1)) **bold**")
    html = owner_client.get(character.get_absolute_url()).content.decode()
    assert "<strong>bold</strong>" in html
    assert "<script>alert(1)" not in html and 'href="javascript:' not in html


def test_the_demo_characters_have_thumbnails_made_at_seed_time(owner_client):
    from io import StringIO

    from django.core.management import call_command

    from characters.models import Character

    call_command("seed_demo", stdout=StringIO())
    character = Character.objects.filter(owner=None).first()
    response = owner_client.get(reverse("characters:thumbnail", args=[character.code]))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert response["Content-Type"] == "image/webp"
    import io

    from PIL import Image

    # The card's 2:3 frame, small enough for a phone's gallery page.
    assert Image.open(io.BytesIO(body)).size == (300, 450) and len(body) < 60_000


def test_gallery_summaries_are_plain_text(owner_client):
    make_character(
        name="Mira",
        description="Captain of the *Lantern's Wake*, see [the log](https://x.example) & <b>more</b>",
    )
    html = owner_client.get(reverse("characters:gallery")).content.decode()
    summary = re.search(r'<p class="summary">(.*?)</p>', html).group(1)
    assert summary == "Captain of the Lantern&#x27;s Wake, see the log &amp; &lt;b&gt;more&lt;/b&gt;"


def test_the_tag_filter_lists_only_tags_of_characters_the_viewer_can_see(client, owner, other):
    make_character(name="Public Pia", tags=["seafaring"])
    make_character(owner=owner, public=False, name="Secret Sam", tags=["olivias-secret"])
    make_character(owner=other, public=False, name="Mallory's Own", tags=["mallorys-own"])
    make_character(name="Hidden Hal", tags=["switched-off"], is_active=False)
    deleted = make_character(owner=owner, name="Gone Gus", tags=["deleted-only"])
    client.force_login(owner)
    assert client.post(reverse("characters:delete", args=[deleted.code])).status_code == 302

    def tag_options(html: str) -> list[str]:
        select = re.search(r'<select id="tag".*?</select>', html, re.S).group(0)
        return re.findall(r'<option value="([^"]+)"', select)

    client.force_login(other)
    assert tag_options(client.get(reverse("characters:gallery")).content.decode()) == [
        "mallorys-own",
        "seafaring",
    ]
    client.force_login(owner)
    assert tag_options(client.get(reverse("characters:gallery")).content.decode()) == [
        "olivias-secret",
        "seafaring",
    ]


def test_a_page_past_the_end_says_so_and_links_to_the_last_page(owner_client, settings):
    settings.RPCHAT = {**settings.RPCHAT, "GALLERY_PAGE_SIZE": 4}
    for i in range(10):
        make_character(name=f"P{i:02d}")
    url = reverse("characters:gallery")
    html = owner_client.get(url, {"page": 99}).content.decode()
    assert "Page 99 does not exist" in html and "No characters match" not in html
    assert "page=3" in html and "last page (page 3)" in html
    assert names(owner_client.get(url, {"page": 3}).content.decode()) == ["P08", "P09"]
    # With a filter that matches nothing, the filters are what to change.
    html = owner_client.get(url, {"q": "nobody", "page": 2}).content.decode()
    assert "Page 2 does not exist" in html and "last page (page 1)" in html
    assert "Clear the filters" in owner_client.get(url, {"q": "nobody"}).content.decode()


def test_the_gallery_links_to_the_trash(owner_client):
    html = owner_client.get(reverse("characters:gallery")).content.decode()
    assert f'href="{reverse("chats:trash")}">Trash</a>' in html


def test_public_and_own_characters_interleave_by_name_page_after_page(owner_client, owner, other, settings):
    # Two index-served branches (public; mine and not public) merged by name: each character once,
    # another user's private one never, and pages that follow on.
    settings.RPCHAT = {**settings.RPCHAT, "GALLERY_PAGE_SIZE": 2}
    make_character(owner=other, name="Anna")
    make_character(owner=other, name="Aaron", public=False)
    make_character(owner=owner, name="Bea", public=False)
    make_character(owner=other, name="Cleo")
    make_character(owner=owner, name="Dora", public=False)
    make_character(owner=owner, name="Eve")
    for i in range(40):
        make_character(owner=other, name=f"B{i:02d} hidden", public=False)
    url = reverse("characters:gallery")
    pages = [names(owner_client.get(url, {"page": n}).content.decode()) for n in (1, 2, 3)]
    assert pages == [["Anna", "Bea"], ["Cleo", "Dora"], ["Eve"]]
    api = owner_client.get(reverse("api:characters")).json()
    assert [c["name"] for c in api["results"]] == ["Anna", "Bea", "Cleo", "Dora", "Eve"]


@pytest.mark.django_db(transaction=True)
def test_a_tag_given_to_a_character_shows_in_the_tag_filter_at_once(owner_client, owner):
    # The page is cached by cachalot; a tag added through the tags table alone must drop it.
    from characters.models import Tag

    make_character(owner=owner, name="Ada", tags=["quiet"])
    bram = make_character(owner=owner, name="Bram")
    url = reverse("characters:gallery")
    assert names(owner_client.get(url, {"tag": "quiet"}).content.decode()) == ["Ada"]
    assert names(owner_client.get(url, {"tag": "quiet"}).content.decode()) == ["Ada"]
    bram.tags.add(Tag.objects.get(name="quiet"))
    assert names(owner_client.get(url, {"tag": "quiet"}).content.decode()) == ["Ada", "Bram"]
