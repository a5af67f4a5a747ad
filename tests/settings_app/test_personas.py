"""Personas: several per user, one default, {{user}} becomes the persona's name."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from chats.models import ChatSession
from settings_app.models import Persona
from tests.factories import make_character

pytestmark = pytest.mark.django_db


def create(client, name, default=False, description="", picture=None):
    data = {"name": name, "description": description}
    if picture is not None:
        data["picture"] = picture
    if default:
        data["is_default"] = "on"
    return client.post(reverse("personas:new"), data)


def test_a_user_keeps_several_personas_with_one_default(owner_client, owner):
    create(owner_client, "Ada", default=True)
    create(owner_client, "Bea", default=True)
    assert list(Persona.objects.filter(user=owner).values_list("name", "is_default")) == [
        ("Ada", False),
        ("Bea", True),
    ]
    html = owner_client.get(reverse("personas:list")).content.decode()
    assert "Ada" in html and "Bea" in html and "default" in html


def test_a_new_chat_uses_the_default_persona_for_user_macros(owner_client, owner):
    create(owner_client, "Captain Ada", default=True)
    character = make_character(first_message="Welcome aboard, {{user}}.")
    owner_client.post(reverse("chats:new", args=[character.code]))
    chat = ChatSession.objects.get(user=owner)
    assert chat.persona.name == "Captain Ada"
    assert chat.messages.get().content == "Welcome aboard, Captain Ada."


def test_personas_are_private_to_their_user(client, owner, other):
    theirs = Persona.objects.create(user=other, name="Hidden")
    client.force_login(owner)
    assert "Hidden" not in client.get(reverse("personas:list")).content.decode()
    assert client.get(reverse("personas:edit", args=[theirs.code])).status_code == 404
    assert client.post(reverse("personas:delete", args=[theirs.code])).status_code == 404
    assert Persona.objects.filter(pk=theirs.pk).exists()


def test_deleting_a_persona_keeps_its_chats(owner_client, owner):
    create(owner_client, "Temp", default=True)
    owner_client.post(reverse("chats:new", args=[make_character().code]))
    persona = Persona.objects.get(user=owner)
    owner_client.post(reverse("personas:delete", args=[persona.code]))
    chat = ChatSession.objects.get(user=owner)
    assert chat.persona is None and chat.messages.count() == 1


def picture(size=(300, 300), fmt="PNG") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, (30, 90, 160)).save(buffer, format=fmt)
    return SimpleUploadedFile(f"me.{fmt.lower()}", buffer.getvalue())


def test_a_persona_gets_a_picture_cropped_to_2_by_3_that_only_its_owner_sees(client, owner, other):
    client.force_login(owner)
    create(client, name="Vera", picture=picture((300, 300), "JPEG"))
    persona = Persona.objects.get(name="Vera")
    url = reverse("personas:picture", args=[persona.code])
    assert url in client.get(reverse("personas:list")).content.decode()
    response = client.get(url)
    assert response.status_code == 200 and "private" in response["Cache-Control"]
    image = Image.open(io.BytesIO(b"".join(response.streaming_content)))
    assert image.format == "PNG" and image.size == (200, 300)
    client.force_login(other)
    assert client.get(url).status_code == 404


def test_a_picture_that_is_not_an_image_is_refused_next_to_the_field_and_nothing_is_saved(owner_client):
    response = create(owner_client, name="Vera", picture=SimpleUploadedFile("me.png", b"not a picture"))
    assert response.status_code == 400
    assert "The image could not be read" in response.content.decode()
    assert not Persona.objects.filter(name="Vera").exists()


def test_a_picture_over_the_size_limit_is_refused(owner_client, settings):
    settings.RPCHAT = {**settings.RPCHAT, "MAX_AVATAR_BYTES": 1000}
    response = create(owner_client, name="Vera", picture=picture((600, 600)))
    assert response.status_code == 400 and "larger than the limit" in response.content.decode()
    assert not Persona.objects.filter(name="Vera").exists()


def test_removing_a_personas_picture_deletes_its_file(owner_client):
    create(owner_client, name="Vera", picture=picture())
    persona = Persona.objects.get(name="Vera")
    stored = persona.avatar.name
    assert persona.avatar.storage.exists(stored)
    edit = reverse("personas:edit", args=[persona.code])
    owner_client.post(edit, {"name": "Vera", "description": "", "remove_picture": "on"})
    persona.refresh_from_db()
    assert not persona.avatar and not persona.avatar.storage.exists(stored)
    assert owner_client.get(reverse("personas:picture", args=[persona.code])).status_code == 404
