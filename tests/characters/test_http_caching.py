"""HTTP caching of character pages, the character JSON, pictures and card downloads: validators
that change exactly when what is shown changes, 304s, private Cache-Control and Vary."""

from __future__ import annotations

import io

import pytest
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import reverse
from PIL import Image

from characters.http import card_download_cache
from characters.models import Lorebook, LorebookEntry, Tag
from characters.services import character_set_avatar
from tests.factories import make_character

pytestmark = pytest.mark.django_db


def png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


def revalidate(client, url, response, **extra):
    return client.get(url, HTTP_IF_NONE_MATCH=response["ETag"], **extra)


def test_the_detail_page_is_304_until_the_card_or_its_tags_change(owner_client, django_assert_num_queries):
    character = make_character(name="Aria", tags=["fantasy"])
    url = character.get_absolute_url()
    # The first page sets the CSRF cookie its form's token comes from; the ETag includes it.
    owner_client.get(url)
    first = owner_client.get(url)
    assert first.status_code == 200 and first["ETag"] and first["Last-Modified"]
    assert first["Cache-Control"] == "private, no-cache"
    assert "Cookie" in first["Vary"]
    # the character by its code; the user and the settings come from the cache; no page is built
    with django_assert_num_queries(1):
        again = revalidate(owner_client, url, first)
    assert again.status_code == 304 and again.content == b""
    assert again["Cache-Control"] == "private, no-cache"

    character.description = "Now with a description."
    character.save()
    changed = revalidate(owner_client, url, first)
    assert changed.status_code == 200 and "Now with a description." in changed.content.decode()

    character.tags.add(Tag.objects.create(name="bard"))
    retagged = revalidate(owner_client, url, changed)
    assert retagged.status_code == 200 and "bard" in retagged.content.decode()
    assert revalidate(owner_client, url, retagged).status_code == 304


def test_the_detail_page_is_not_shared_between_users_or_across_a_new_csrf_token(client, owner, other):
    character = make_character()
    url = character.get_absolute_url()
    client.force_login(owner)
    mine = client.get(url)
    client.force_login(other)
    assert revalidate(client, url, mine).status_code == 200
    private = make_character(owner=owner, public=False)
    client.force_login(owner)
    owned = client.get(private.get_absolute_url())
    client.force_login(other)
    assert revalidate(client, private.get_absolute_url(), owned).status_code == 404


def test_the_character_json_is_304_until_it_changes_and_varies_on_credentials(owner_client):
    character = make_character(name="Aria")
    url = reverse("api:character", args=[character.code])
    first = owner_client.get(url)
    assert {"Cookie", "Authorization"} <= {v.strip() for v in first["Vary"].split(",")}
    assert first["Last-Modified"]
    not_modified = revalidate(owner_client, url, first)
    assert not_modified.status_code == 304
    assert {"Cookie", "Authorization"} <= {v.strip() for v in not_modified["Vary"].split(",")}
    # A client that only remembers the date gets a 304 too, until the next change.
    assert owner_client.get(url, HTTP_IF_MODIFIED_SINCE=first["Last-Modified"]).status_code == 304
    character.name = "Aria Vale"
    character.save()
    changed = owner_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200 and changed.json()["name"] == "Aria Vale"


def test_pictures_are_cached_privately_and_revalidated_by_file(owner_client, media):
    character = make_character()
    character_set_avatar(character=character, data=png("red"))
    url = reverse("characters:thumbnail", args=[character.code])
    first = owner_client.get(url)
    assert first.status_code == 200
    assert first["Cache-Control"] == "private, max-age=86400"
    assert first["ETag"] and first["Last-Modified"]
    again = revalidate(owner_client, url, first)
    assert again.status_code == 304 and again["Cache-Control"] == "private, max-age=86400"
    character.refresh_from_db()
    character_set_avatar(character=character, data=png("blue"))
    changed = revalidate(owner_client, url, first)
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    red, green, blue = (
        Image.open(io.BytesIO(b"".join(changed.streaming_content))).convert("RGB").getpixel((5, 5))
    )
    assert red < 20 and green < 20 and blue > 235  # WebP keeps blue blue, give or take
    avatar_url = reverse("characters:avatar", args=[character.code])
    assert revalidate(owner_client, avatar_url, owner_client.get(avatar_url)).status_code == 304


def test_card_downloads_are_304_until_the_card_or_its_lorebook_changes(owner, other):
    calls = []

    @card_download_cache
    def download(request, code, fmt):
        calls.append(fmt)
        return HttpResponse(b"card bytes", content_type="application/json")

    character = make_character(owner=owner, public=False)
    book = Lorebook.objects.create(character=character, name="Lore")
    entry = LorebookEntry.objects.create(lorebook=book, keys=["x"], content="First.")

    def get(user, etag=None, fmt="json"):
        headers = {"HTTP_IF_NONE_MATCH": etag} if etag else {}
        request = RequestFactory().get("/download", **headers)
        request.user = user
        return download(request, character.code, fmt)

    first = get(owner)
    assert first.status_code == 200 and first["Cache-Control"] == "private, no-cache"
    assert get(owner, first["ETag"]).status_code == 304
    assert get(owner, first["ETag"], fmt="png").status_code == 200
    assert calls == ["json", "png"]
    entry.content = "Second."
    entry.save()
    assert get(owner, first["ETag"]).status_code == 200
    from django.http import Http404

    with pytest.raises(Http404):
        get(other, first["ETag"])
