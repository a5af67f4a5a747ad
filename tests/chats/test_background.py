"""A chat's background picture: uploaded within a size limit, stored re-encoded, shown only to the
chat's owner, removed on request."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image

from chats.models import ChatSession
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db


def picture(size=(3000, 2000), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (40, 90, 160)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Wren"), messages=2)


def upload(client, chat, data: bytes, name="sky.png"):
    return client.post(
        reverse("chats:background", args=[chat.code]),
        {"image": SimpleUploadedFile(name, data, content_type="image/png")},
        follow=True,
    )


def test_an_uploaded_background_is_re_encoded_and_shown_behind_the_chat(owner_client, chat):
    response = upload(owner_client, chat, picture())
    assert "Background set." in response.content.decode()
    chat.refresh_from_db()
    stored = Image.open(chat.background.open("rb"))
    assert stored.format == "WEBP" and stored.size == (1920, 1280)
    url = reverse("chats:background_image", args=[chat.code])
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert f'<img class="chat-backdrop" src="{url}" alt=""' in html and "data-has-backdrop" in html
    image = owner_client.get(url)
    assert image.status_code == 200 and image["Content-Type"] == "image/webp"
    assert image["Cache-Control"] == "private, max-age=86400" and image["ETag"]
    assert owner_client.get(url, HTTP_IF_NONE_MATCH=image["ETag"]).status_code == 304


def test_only_the_chats_owner_sees_or_changes_its_background(owner_client, chat, other):
    upload(owner_client, chat, picture((200, 100)))
    intruder = Client()
    intruder.force_login(other)
    assert intruder.get(reverse("chats:background_image", args=[chat.code])).status_code == 404
    assert upload(intruder, chat, picture((200, 100))).status_code == 404
    assert intruder.post(reverse("chats:background", args=[chat.code]), {"remove": "1"}).status_code == 404
    chat.refresh_from_db()
    assert chat.background


def test_a_file_that_is_not_a_picture_or_too_large_is_refused_with_the_reason(owner_client, chat, settings):
    html = upload(owner_client, chat, b"not a picture at all", name="notes.txt").content.decode()
    # Next to the upload field, not at the top of the page.
    field = html.index('id="background-image"')
    reason = html.index("notes.txt: The image could not be read")
    assert field < reason < html.index("Upload</button>") and html.count("could not be read") == 1
    settings.RPCHAT = {**settings.RPCHAT, "MAX_BACKGROUND_BYTES": 10_000}
    html = upload(owner_client, chat, picture((1500, 1500), fmt="BMP"), name="huge.bmp").content.decode()
    assert "larger than 9.8 KB" in html
    assert not ChatSession.objects.get(pk=chat.pk).background


def test_removing_the_background_deletes_its_file(owner_client, chat):
    upload(owner_client, chat, picture((300, 200)))
    chat.refresh_from_db()
    storage, name = chat.background.storage, chat.background.name
    assert storage.exists(name)
    response = owner_client.post(reverse("chats:background", args=[chat.code]), {"remove": "1"}, follow=True)
    assert "Background removed." in response.content.decode()
    assert not storage.exists(name)
    assert "chat-backdrop" not in owner_client.get(chat.get_absolute_url()).content.decode()
