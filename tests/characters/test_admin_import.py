"""Admin: import pages linked from the Character and Lorebook lists, lorebook export actions."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from characters.models import Character, Lorebook
from tests import cardkit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def card_file(name="Ada"):
    return SimpleUploadedFile(f"{name}.png", cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card(name))}))


def results(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<tr class="result-(\w+)"><td>([^<]+)</td>', html)


def test_the_character_list_links_to_the_import_page(admin_client):
    html = admin_client.get("/admin/characters/character/").content.decode()
    assert 'href="import/"' in html
    assert 'name="files" multiple' in admin_client.get("/admin/characters/character/import/").content.decode()


def test_an_admin_imports_cards_for_a_user_or_for_everyone(admin_client, owner):
    html = admin_client.post(
        "/admin/characters/character/import/",
        {"files": [card_file("Ada"), SimpleUploadedFile("x.json", b"{}")], "owner": "olivia"},
    ).content.decode()
    assert results(html) == [("imported", "Ada.png"), ("failed", "x.json")]
    assert "not a character card: no spec and no name" in html
    admin_client.post("/admin/characters/character/import/", {"files": [card_file("Bea")]})
    assert set(Character.objects.values_list("name", "owner__username", "visibility")) == {
        ("Ada", "olivia", "private"),
        ("Bea", None, "public"),
    }


def test_an_unknown_owner_imports_nothing(admin_client):
    html = admin_client.post(
        "/admin/characters/character/import/", {"files": [card_file()], "owner": "nobody"}
    ).content.decode()
    assert "There is no user named &#x27;nobody&#x27;." in html
    assert Character.objects.count() == 0


def test_only_staff_reach_the_import_page(client, owner):
    client.force_login(owner)
    response = client.post("/admin/characters/character/import/", {"files": [card_file()]})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Character.objects.count() == 0


def test_lorebooks_import_and_export_in_admin(admin_client, owner):
    html = admin_client.post(
        "/admin/characters/lorebook/import/",
        {
            "files": [SimpleUploadedFile("Harbor.json", json.dumps(cardkit.world_info()).encode())],
            "owner": "olivia",
        },
    ).content.decode()
    assert results(html) == [("imported", "Harbor.json")]
    Lorebook.objects.create(owner=owner, name="Empty")
    books = list(Lorebook.objects.order_by("name"))
    one = admin_client.post(
        "/admin/characters/lorebook/", {"action": "export_world_info", "_selected_action": [books[1].pk]}
    )
    assert one["Content-Type"] == "application/json" and one.json() == cardkit.world_info()
    both = admin_client.post(
        "/admin/characters/lorebook/",
        {"action": "export_lorebook_v3", "_selected_action": [b.pk for b in books]},
    )
    names = zipfile.ZipFile(io.BytesIO(both.content)).namelist()
    assert len(names) == 2 and all(n.endswith(".lorebook.json") for n in names)
