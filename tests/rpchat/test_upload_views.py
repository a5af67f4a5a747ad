"""Views that take files install their size limit before the body is read (core.uploads.limit_uploads)
and still refuse a POST without a CSRF token."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db


def upload_urls(owner) -> list[tuple[str, str]]:
    """(url, the file field it reads) of every view that takes files."""
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    return [
        (reverse("characters:new"), "avatar"),
        (reverse("characters:lorebooks"), "files"),
        (reverse("presets:list"), "files"),
        (reverse("personas:new"), "picture"),
        (reverse("chats:background", args=[chat.code]), "image"),
        (reverse("chats:import", args=[chat.character.code]), "file"),
    ]


def test_every_upload_view_refuses_a_post_without_a_csrf_token(owner):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    for url, field in upload_urls(owner):
        response = client.post(url, {field: SimpleUploadedFile("x.json", b"{}")})
        assert response.status_code == 403, url


LIMITS = (
    "MAX_AVATAR_BYTES",
    "MAX_CARD_BYTES",
    "MAX_CARD_JSON_BYTES",
    "MAX_BACKGROUND_BYTES",
    "MAX_CHAT_BYTES",
)


# The test client skips the CSRF check, which in a browser's request is what first parses the
# body; so each view must read its files itself before it asks the handler what it set aside.
@pytest.mark.parametrize("index", range(6))
def test_every_upload_view_skips_a_file_past_its_limit_and_says_so(client, owner, settings, index):
    settings.RPCHAT = {**settings.RPCHAT, **dict.fromkeys(LIMITS, 10)}
    client.force_login(owner)
    url, field = upload_urls(owner)[index]
    response = client.post(url, {field: SimpleUploadedFile("big.bin", b"x" * 5000)}, follow=True)
    assert response.status_code < 500, url
    assert "larger than" in response.content.decode(), url
