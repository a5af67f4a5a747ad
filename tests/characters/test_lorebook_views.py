"""The lorebook page: a user's own global lorebooks, imported and downloaded there."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from characters.models import Lorebook
from tests import cardkit

pytestmark = pytest.mark.django_db
URL = "/characters/lorebooks/"


def wi_upload(name="Harbor.json"):
    return SimpleUploadedFile(
        name, json.dumps(cardkit.world_info()).encode(), content_type="application/json"
    )


def test_a_user_imports_a_world_info_file_and_sees_it_listed(owner_client, owner):
    response = owner_client.post(
        URL, {"files": [wi_upload(), SimpleUploadedFile("x.json", b"[]")]}, follow=True
    )
    html = response.content.decode()
    assert "Harbor.json: imported" in html
    assert "x.json: failed (the file must hold a JSON object, not a list)" in html
    assert ">Harbor</a></strong>" in html and "2 entries" in html
    assert Lorebook.objects.get().owner == owner


def test_a_lorebook_downloads_as_world_info_and_lorebook_v3(owner_client):
    owner_client.post(URL, {"files": wi_upload()})
    book = Lorebook.objects.get()
    wi = owner_client.get(reverse("characters:lorebook_world_info", args=[book.code]))
    assert wi["Content-Disposition"] == 'attachment; filename="Harbor.json"'
    assert wi.json() == cardkit.world_info()
    assert (
        owner_client.get(reverse("characters:lorebook_v3", args=[book.code])).json()["spec"] == "lorebook_v3"
    )


def test_other_users_neither_see_nor_download_a_lorebook(client, owner, other):
    client.force_login(owner)
    client.post(URL, {"files": wi_upload()}, follow=True)
    book = Lorebook.objects.get()
    client.force_login(other)
    assert "Harbor" not in client.get(URL).content.decode()
    assert client.get(reverse("characters:lorebook_world_info", args=[book.code])).status_code == 404
    assert client.get(reverse("characters:lorebook_v3", args=[book.code])).status_code == 404


def test_the_list_makes_the_same_queries_with_more_lorebooks(owner_client, owner, django_assert_num_queries):
    for i in range(3):
        Lorebook.objects.create(owner=owner, name=f"Book {i}")
    owner_client.get(URL)
    # one page of lorebooks with their entry counts (no COUNT of the list)
    with django_assert_num_queries(1):
        owner_client.get(URL)
    Lorebook.objects.bulk_create(Lorebook(owner=owner, name=f"More {i}") for i in range(100))
    with django_assert_num_queries(1):
        html = owner_client.get(URL).content.decode()
    assert 'rel="next"' in html


def v3_upload(name: str, *keys: str) -> SimpleUploadedFile:
    """A lorebook_v3 file whose entries each have one regex key."""
    book = {
        "name": name,
        "entries": [
            {
                "id": i,
                "name": f"Entry {i}",
                "keys": [key],
                "content": "Lore.",
                "use_regex": True,
                "enabled": True,
            }
            for i, key in enumerate(keys)
        ],
    }
    body = json.dumps({"spec": "lorebook_v3", "data": book}).encode()
    return SimpleUploadedFile(f"{name}.json", body, content_type="application/json")


def test_the_owner_sees_which_regex_keys_replies_skip_and_why(owner_client):
    owner_client.post(URL, {"files": v3_upload("Woods", "/fores?t/i", r"(a)\1", "(?<!dark )wood", "[oak")})
    html = owner_client.get(URL).content.decode()
    assert ">Woods</a></strong>" in html and "4 entries" in html
    assert (
        "<li>Entry “Entry 1”: the regex key <code>(a)\\1</code> is skipped: backreferences are not "
        "supported (RE2: invalid escape sequence: \\1).</li>"
    ) in html
    assert "<li>Entry “Entry 2”: the regex key <code>(?&lt;!dark )wood</code> is skipped: lookahead" in html
    assert "<li>Entry “Entry 3”: the regex key <code>[oak</code> is skipped: not a valid regular" in html
    assert "fores?t" not in html  # a key that runs is no news


def test_the_list_with_regex_keys_makes_the_same_queries_with_more_lorebooks(
    owner_client, settings, django_assert_num_queries
):
    settings.CACHALOT_ENABLED = False  # count the queries themselves, not cachalot's hits
    owner_client.post(URL, {"files": [v3_upload(f"Book {i}", r"(a)\1", "/ok/") for i in range(3)]})
    # one page of lorebooks with their entry counts, the regex entries of that page
    with django_assert_num_queries(2):
        owner_client.get(URL)
    owner_client.post(URL, {"files": [v3_upload(f"More {i}", r"(b)\1") for i in range(30)]})
    with django_assert_num_queries(2):
        html = owner_client.get(URL).content.decode()
    assert 'rel="next"' in html and html.count('class="key-problems"') == 24
