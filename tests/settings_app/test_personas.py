"""Personas: several per user, one default, {{user}} becomes the persona's name."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chats.models import ChatSession
from settings_app.models import Persona
from tests.factories import make_character

pytestmark = pytest.mark.django_db


def create(client, name, default=False, description=""):
    data = {"name": name, "description": description}
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
