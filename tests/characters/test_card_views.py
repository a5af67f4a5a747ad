"""The card import page and the card downloads, as a browser uses them."""

from __future__ import annotations

import base64
import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from characters import cards
from characters.models import Character
from tests import cardkit
from tests.factories import make_character

pytestmark = pytest.mark.django_db
URL = "/characters/import/"


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


def upload(name: str, data: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type="application/octet-stream")


def png_of(card: dict) -> bytes:
    return cardkit.png_card({"chara": cardkit.b64(card)})


def test_the_import_page_has_a_multiple_file_input_a_drop_zone_and_its_script(owner_client):
    html = owner_client.get(URL).content.decode()
    assert re.search(r'<input type="file" id="card-files" name="files" multiple', html)
    assert 'id="drop-zone"' in html
    assert '<script src="/static/js/card-import.js" defer></script>' in html
    assert "<script>" not in html  # no inline script
    assert reverse("characters:import") in owner_client.get(reverse("characters:gallery")).content.decode()


def test_the_page_script_reports_each_file_as_json(owner_client, owner):
    response = owner_client.post(
        URL, {"files": upload("ada.png", png_of(cardkit.v2_card()))}, HTTP_ACCEPT="application/json"
    )
    [row] = response.json()["results"]
    character = Character.objects.get()
    assert row == {
        "file": "ada.png",
        "status": "imported",
        "reason": "",
        "warnings": [],
        "url": character.get_absolute_url(),
    }
    assert (character.owner, character.visibility) == (owner, "private")
    again = owner_client.post(
        URL, {"files": upload("ada.png", png_of(cardkit.v2_card()))}, HTTP_ACCEPT="application/json"
    )
    assert again.json()["results"][0]["status"] == "skipped"
    assert again.json()["results"][0]["reason"] == "already imported as Ada"


def test_a_bad_file_is_reported_with_its_reason(owner_client):
    response = owner_client.post(
        URL, {"files": upload("cat.png", cardkit.image_png())}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 400
    assert response.json()["results"][0] == {
        "file": "cat.png",
        "status": "failed",
        "reason": "the PNG holds no character card (no 'chara' or 'ccv3' text chunk)",
        "warnings": [],
        "url": "",
    }
    assert Character.objects.count() == 0


def test_without_script_the_form_imports_every_file_and_lists_them(owner_client):
    files = [
        upload("ada.png", png_of(cardkit.v2_card("Ada"))),
        upload("bea.json", json.dumps(cardkit.v3_card("Bea")).encode()),
        upload("broken.json", b"{nope"),
    ]
    html = owner_client.post(URL, {"files": files, "public": "1"}).content.decode()
    statuses = re.findall(r'<li data-status="(\w+)">', html)
    assert statuses == ["imported", "imported", "failed"]
    assert "the file is not valid JSON" in html
    assert set(Character.objects.values_list("name", "visibility")) == {("Ada", "public"), ("Bea", "public")}


def test_a_file_over_the_limit_is_refused_before_it_is_read(owner_client, settings):
    settings.RPCHAT = {**settings.RPCHAT, "MAX_CARD_BYTES": 1000}
    big = upload("big.png", png_of(cardkit.v2_card()) + b"\0" * 200_000)
    response = owner_client.post(URL, {"files": big}, HTTP_ACCEPT="application/json")
    assert response.status_code == 413
    assert response.json()["results"][0]["reason"].startswith("the file is 197.")
    assert response.json()["results"][0]["reason"].endswith(
        "the limit is 1,000 bytes (RPCHAT_MAX_CARD_BYTES)"
    )
    assert Character.objects.count() == 0


def test_a_form_with_one_file_over_the_limit_imports_the_others(owner_client, settings):
    settings.RPCHAT = {**settings.RPCHAT, "MAX_CARD_BYTES": 20_000}
    files = [
        upload("big.png", b"\x89PNG" + b"\0" * 30_000),
        upload("ada.json", json.dumps(cardkit.v2_card()).encode()),
    ]
    html = owner_client.post(URL, {"files": files}).content.decode()
    assert re.findall(r'<li data-status="(\w+)">', html) == ["failed", "imported"]
    assert "big.png" in html and "larger than 19.5 KB (RPCHAT_MAX_CARD_BYTES)" in html
    assert list(Character.objects.values_list("name", flat=True)) == ["Ada"]


def test_the_import_needs_a_csrf_token_and_a_login(owner):
    client = Client(enforce_csrf_checks=True)
    assert client.post(URL, {"files": upload("a.json", b"{}")}).status_code == 302  # to the login page
    client.force_login(owner)
    assert (
        client.post(URL, {"files": upload("a.json", json.dumps(cardkit.v2_card()).encode())}).status_code
        == 403
    )
    assert Character.objects.count() == 0


def chunks_of(png: bytes) -> dict:
    out = {}
    for ctype, _, _, body in cards.png_chunks(png):
        if ctype == b"tEXt":
            key, _, value = body.partition(b"\x00")
            out[key.decode()] = json.loads(base64.b64decode(value))
    return out


def test_the_detail_page_offers_png_and_json_downloads_of_the_card(owner_client, owner):
    owner_client.post(URL, {"files": upload("ada.png", png_of(cardkit.v2_card()))})
    character = Character.objects.get()
    html = owner_client.get(character.get_absolute_url()).content.decode()
    png_url = reverse("characters:card_png", args=[character.code])
    json_url = reverse("characters:card_json", args=[character.code])
    assert f'href="{png_url}"' in html and f'href="{json_url}"' in html
    png = owner_client.get(png_url)
    assert png["Content-Type"] == "image/png"
    assert png["Content-Disposition"] == 'attachment; filename="Ada.png"'
    assert chunks_of(png.content)["chara"]["data"] == cardkit.v2_card()["data"]
    card = owner_client.get(json_url).json()
    assert card["data"] == cardkit.v2_card()["data"]


def test_cards_download_for_whoever_may_see_the_character(client, owner, other):
    private = make_character(owner=owner, public=False, name="Mine")
    public = make_character(owner=owner, public=True, name="Ours")
    client.force_login(other)
    assert client.get(reverse("characters:card_png", args=[private.code])).status_code == 404
    assert client.get(reverse("characters:card_json", args=[private.code])).status_code == 404
    assert client.get(reverse("characters:card_json", args=[public.code])).json()["data"]["name"] == "Ours"
    client.logout()
    assert client.get(reverse("characters:card_json", args=[public.code])).status_code == 302


def test_a_card_named_with_odd_characters_still_downloads(owner_client, owner):
    character = make_character(owner=owner, name="Line\nbreak / slash")
    response = owner_client.get(reverse("characters:card_png", args=[character.code]))
    assert response["Content-Disposition"] == 'attachment; filename="Line-break - slash.png"'


def test_a_card_download_is_304_until_the_card_changes(owner_client, owner, django_assert_num_queries):
    owner_client.post(URL, {"files": upload("ada.png", png_of(cardkit.v2_card()))})
    character = Character.objects.get()
    for name in ("card_png", "card_json"):
        url = reverse(f"characters:{name}", args=[character.code])
        first = owner_client.get(url)
        assert first.status_code == 200 and first["ETag"] and first["Last-Modified"]
        assert first["Cache-Control"] == "private, no-cache"
        # the character's and its lorebook's updated_at, in one query
        with django_assert_num_queries(1):
            again = owner_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
        assert again.status_code == 304 and not again.content
        character.refresh_from_db()
        character.description = f"Changed for {name}."
        character.save()
        changed = owner_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
        assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
        if name == "card_json":
            assert changed.json()["data"]["description"] == "Changed for card_json."
