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
    assert "<strong>Harbor</strong>" in html and "2 entries" in html
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
    # the user, one page of lorebooks with their entry counts (no COUNT of the list)
    with django_assert_num_queries(2):
        owner_client.get(URL)
    Lorebook.objects.bulk_create(Lorebook(owner=owner, name=f"More {i}") for i in range(100))
    with django_assert_num_queries(2):
        html = owner_client.get(URL).content.decode()
    assert 'rel="next"' in html
