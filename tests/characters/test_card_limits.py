"""Card size limits: what a small file may make rpchat unpack, parse, store and list."""

from __future__ import annotations

import io
import json
import re
import zipfile
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from PIL import Image

from characters import cards
from characters.models import Character, Lorebook, Tag
from characters.services import card_import, lorebook_import
from tests import cardkit

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_limits(settings):
    settings.RPCHAT = {
        **settings.RPCHAT,
        "MAX_CARD_JSON_BYTES": 64 * 1024,
        "MAX_CARD_FIELD_CHARS": 1000,
        "MAX_CARD_TAGS": 3,
    }


def charx_of(card: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("card.json", json.dumps(card))
    return buffer.getvalue()


def with_description(text: str) -> dict:
    card = cardkit.v3_card("Bomb", book=False)
    card["data"]["description"] = text
    return card


@pytest.fixture
def inflated(monkeypatch):
    """How many bytes zip members were inflated to, in all."""
    counted = {"bytes": 0}
    original = zipfile.ZipExtFile.read

    def read(self, n=-1):
        data = original(self, n)
        counted["bytes"] += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    return counted


def test_a_small_charx_with_a_huge_card_json_is_refused_after_inflating_just_past_the_limit(
    owner, small_limits, inflated
):
    data = charx_of(with_description("a" * 20_000_000))  # 20 MB of JSON in about 20 KB
    assert len(data) < 50_000
    result = card_import(source=data, file_name="bomb.charx", owner=owner)
    assert result.status == "failed"
    assert result.reason == (
        "card.json in the CHARX archive unpacks to more than 65,536 bytes (RPCHAT_MAX_CARD_JSON_BYTES)"
    )
    assert inflated["bytes"] <= 65_537
    assert not Character.objects.exists()


def test_a_huge_icon_in_a_charx_is_refused_after_inflating_just_past_the_limit(owner, settings, inflated):
    settings.RPCHAT = {**settings.RPCHAT, "MAX_CARD_BYTES": 100_000}
    data = cardkit.charx(cardkit.v3_card("Big icon", book=False), icon=b"\0" * 5_000_000)
    result = card_import(source=data, file_name="icon.charx", owner=owner)
    assert result.status == "failed"
    assert "unpacks to more than 100,000 bytes (RPCHAT_MAX_CARD_BYTES)" in result.reason
    assert inflated["bytes"] < 110_000


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_an_avatar_over_the_pixel_limit_is_refused_before_it_is_decoded(owner):
    # 5,000 x 5,000 pixels: over 4096 x 4096, where Pillow itself would only warn.
    buffer = io.BytesIO()
    Image.new("1", (5000, 5000)).save(buffer, format="PNG")
    png = cards.png_with_card(buffer.getvalue(), v2=cardkit.v2_card(), v3=cardkit.v3_card())
    result = card_import(source=png, file_name="wide.png", owner=owner)
    assert result.status == "failed"
    assert result.reason == (
        "the avatar cannot be used: The image is too large to use as an avatar "
        "(5000 x 5000 pixels; at most 16,777,216 pixels)."
    )
    assert not Character.objects.exists()


def test_a_png_card_chunk_over_the_json_limit_is_refused_before_it_is_decoded(owner, small_limits):
    png = cardkit.png_card({"chara": cardkit.b64(with_description("b" * 100_000))})
    result = card_import(source=png, file_name="big.png", owner=owner)
    assert result.status == "failed"
    assert re.fullmatch(
        r"the chara chunk holds [\d,]+ bytes of card JSON; the limit is 65,536 \(RPCHAT_MAX_CARD_JSON_BYTES\)",
        result.reason,
    )


def test_a_json_card_over_the_json_limit_is_refused(owner, small_limits):
    result = card_import(
        source=json.dumps(with_description("c" * 100_000)).encode(), file_name="big.json", owner=owner
    )
    assert result.status == "failed"
    assert re.fullmatch(
        r"the file holds 10[\d,]{5} bytes of card JSON; the limit is 65,536 \(RPCHAT_MAX_CARD_JSON_BYTES\)",
        result.reason,
    )


def _long_greeting(card):
    card["data"]["alternate_greetings"] = ["Hi.", "x" * 1001]


def _long_entry(card):
    card["data"]["character_book"]["entries"][1]["content"] = "y" * 1001


def _long_key(card):
    card["data"]["character_book"]["entries"][0]["keys"].append("z" * 1001)


def _many_tags(card):
    card["data"]["tags"] = ["a", "b", "c", "d"]


@pytest.mark.parametrize(
    "change, reason",
    [
        (
            lambda card: card["data"].update(description="d" * 1001),
            "description is 1,001 characters long; the limit is 1,000 (RPCHAT_MAX_CARD_FIELD_CHARS)",
        ),
        (
            lambda card: card["data"].update(system_prompt="s" * 5000),
            "system_prompt is 5,000 characters long; the limit is 1,000 (RPCHAT_MAX_CARD_FIELD_CHARS)",
        ),
        (
            _long_greeting,
            "alternate_greetings[1] is 1,001 characters long; the limit is 1,000 (RPCHAT_MAX_CARD_FIELD_CHARS)",
        ),
        (
            _long_entry,
            "character_book.entries[1].content is 1,001 characters long; the limit is 1,000 "
            "(RPCHAT_MAX_CARD_FIELD_CHARS)",
        ),
        (
            _long_key,
            "character_book.entries[0].keys is 1,001 characters long; the limit is 1,000 "
            "(RPCHAT_MAX_CARD_FIELD_CHARS)",
        ),
        (_many_tags, "the card has 4 tags; the limit is 3 (RPCHAT_MAX_CARD_TAGS)"),
    ],
)
def test_a_card_with_a_field_over_its_limit_is_refused_naming_the_field(owner, small_limits, change, reason):
    card = cardkit.v3_card("Long")
    change(card)
    for data in (json.dumps(card).encode(), charx_of(card), cardkit.png_card({"ccv3": cardkit.b64(card)})):
        result = card_import(source=data, file_name="long", owner=owner)
        assert (result.status, result.reason) == ("failed", reason)
    assert not Character.objects.exists() and not Lorebook.objects.exists() and not Tag.objects.exists()


def test_a_card_at_the_limits_is_imported(owner, small_limits):
    card = cardkit.v3_card("Just fits")
    card["data"]["description"] = "d" * 1000
    card["data"]["tags"] = ["a", "b", "c"]
    result = card_import(source=json.dumps(card).encode(), file_name="fits.json", owner=owner)
    assert result.status == "imported"
    assert len(result.object.description) == 1000


def test_a_lorebook_with_an_entry_over_the_limit_is_refused(owner, small_limits):
    wi = cardkit.world_info()
    next(iter(wi["entries"].values()))["content"] = "w" * 1001
    result = lorebook_import(source=json.dumps(wi).encode(), file_name="world.json", owner=owner)
    assert result.status == "failed"
    assert result.reason.endswith(
        ".content is 1,001 characters long; the limit is 1,000 (RPCHAT_MAX_CARD_FIELD_CHARS)"
    )
    assert not Lorebook.objects.exists()


@pytest.mark.parametrize(
    "body, reason",
    [
        (b'{"name": "N", "description": "x", "extra": NaN}', "NaN is not a JSON number"),
        (b'{"name": "N", "description": "x", "extra": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"name": "N", "description": "x", "extra": 1e999}', "the number 1e999 is too large"),
        (b'{"name": "N", "extra": ' + b"9" * 5000 + b"}", "a number has too many digits"),
    ],
)
def test_json_numbers_no_database_stores_are_refused(owner, body, reason):
    result = card_import(source=body, file_name="n.json", owner=owner)
    assert (result.status, result.reason) == ("failed", f"the file cannot be imported: {reason}")


# --- every way in gives the same message ---------------------------------------------------------

REASON = "description is 1,001 characters long; the limit is 1,000 (RPCHAT_MAX_CARD_FIELD_CHARS)"


def long_card() -> bytes:
    return json.dumps(with_description("d" * 1001)).encode()


def test_the_import_page_names_the_field_over_the_limit(owner_client, small_limits):
    upload = SimpleUploadedFile("long.json", long_card(), content_type="application/json")
    response = owner_client.post(
        reverse("characters:import"), {"files": [upload]}, headers={"accept": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["results"][0]["reason"] == REASON
    upload = SimpleUploadedFile("long.json", long_card(), content_type="application/json")
    html = owner_client.post(reverse("characters:import"), {"files": [upload]}).content.decode()
    assert REASON in html


def test_the_admin_import_names_the_field_over_the_limit(client, admin_user, small_limits):
    client.force_login(admin_user)
    upload = SimpleUploadedFile("long.json", long_card())
    html = client.post("/admin/characters/character/import/", {"files": [upload]}).content.decode()
    assert REASON in html
    assert not Character.objects.exists()


def test_the_import_cards_command_names_the_field_over_the_limit(owner, small_limits, tmp_path):
    (tmp_path / "long.json").write_bytes(long_card())
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("import_cards", str(tmp_path), "--user", "olivia", stdout=out)
    assert f"long.json: failed ({REASON})" in out.getvalue()


# --- lists read a bounded prefix of the description ----------------------------------------------


def test_list_pages_read_only_the_start_of_a_long_description(owner_client, owner):
    card = with_description("Sails the *northern* sea. " + "Long story. " * 8000)  # 96 KB, within the limit
    character = card_import(source=json.dumps(card).encode(), file_name="long.json", owner=owner).object
    for url in (reverse("characters:gallery"), reverse("api:characters")):
        with CaptureQueriesContext(connection) as queries:
            response = owner_client.get(url)
        prefix = re.compile(r'SUBSTR(ING)?\("characters_character"\."description", 1, \d+\)')
        assert any(prefix.search(q["sql"]) for q in queries), url
        for query in queries:
            # The whole column is never selected, only a prefix of it.
            assert '"characters_character"."description"' not in prefix.sub("", query["sql"]), url
        assert len(response.content) < 20_000, url
    html = owner_client.get(reverse("characters:gallery")).content.decode()
    summary = re.search(r'<p class="summary">(.*?)</p>', html).group(1)
    assert summary.startswith("Sails the northern sea. Long story.") and summary.endswith("…")
    api = owner_client.get(reverse("api:characters")).json()["results"][0]
    assert api["summary"].startswith("Sails the *northern* sea.") and api["summary"].endswith("…")
    assert owner_client.get(character.get_absolute_url()).status_code == 200
