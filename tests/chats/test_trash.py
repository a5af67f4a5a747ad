"""Deleting asks first and keeps a way back; prune purges only what is past its grace period."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from characters.models import Character
from chats.models import ChatSession, Message, MessageAlternative
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db


def test_a_deleted_chat_can_be_restored_from_trash(owner_client, owner):
    chat = make_chat(user=owner, character=make_character(), messages=5)
    confirm = owner_client.get(reverse("chats:delete", args=[chat.code])).content.decode()
    assert "Delete the chat" in confirm and "5 messages" in confirm
    owner_client.post(reverse("chats:delete", args=[chat.code]))
    assert str(chat.code) not in owner_client.get(reverse("chats:list")).content.decode()
    trash = owner_client.get(reverse("chats:trash")).content.decode()
    assert str(chat.code) in trash
    owner_client.post(reverse("chats:restore", args=[chat.code]))
    assert owner_client.get(chat.get_absolute_url()).status_code == 200
    assert chat.messages.count() == 5


def test_an_owner_deletes_and_restores_their_character(owner_client, owner):
    mine = make_character(owner=owner, public=False, name="Mine")
    page = owner_client.get(mine.get_absolute_url()).content.decode()
    assert "Delete this character" in page
    owner_client.post(reverse("characters:delete", args=[mine.code]))
    assert owner_client.get(mine.get_absolute_url()).status_code == 404
    assert (
        '<span class="name">Mine</span>'
        not in owner_client.get(reverse("characters:gallery")).content.decode()
    )
    assert "Mine" in owner_client.get(reverse("chats:trash")).content.decode()
    owner_client.post(reverse("characters:restore", args=[mine.code]))
    assert owner_client.get(mine.get_absolute_url()).status_code == 200


def test_only_the_owner_can_delete_a_character(client, other):
    public = make_character(name="Everyone's")
    client.force_login(other)
    assert client.post(reverse("characters:delete", args=[public.code])).status_code == 404
    assert Character.objects.get(pk=public.pk).deleted_at is None


def test_prune_purges_only_what_is_past_the_grace_period(owner):
    old = make_chat(user=owner, character=make_character(), messages=7)
    recent = make_chat(user=owner, character=make_character(), messages=3)
    message = old.messages.first()
    MessageAlternative.objects.create(message=message, index=0, content="alt")
    ChatSession.objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(days=31))
    ChatSession.objects.filter(pk=recent.pk).update(deleted_at=timezone.now() - timedelta(days=2))
    out = StringIO()
    call_command("prune", stdout=out, stderr=StringIO())
    assert "Purged 1 chats (7 messages)" in out.getvalue()
    assert not ChatSession.objects.filter(pk=old.pk).exists()
    assert not Message.objects.filter(session_id=old.pk).exists()
    assert not MessageAlternative.objects.exists()
    assert ChatSession.objects.get(pk=recent.pk).messages.count() == 3


def test_prune_keeps_a_deleted_character_that_others_still_chat_with(owner, other):
    shared = make_character(owner=owner, name="Shared")
    alone = make_character(owner=owner, name="Alone")
    make_chat(user=other, character=shared, messages=2)
    Character.objects.filter(pk__in=[shared.pk, alone.pk]).update(
        deleted_at=timezone.now() - timedelta(days=40)
    )
    call_command("prune", stdout=StringIO(), stderr=StringIO())
    assert list(Character.objects.values_list("name", flat=True)) == ["Shared"]
    assert ChatSession.objects.filter(user=other).get().messages.count() == 2


def test_prune_dry_run_changes_nothing(owner):
    chat = make_chat(user=owner, character=make_character(), messages=1)
    ChatSession.objects.filter(pk=chat.pk).update(deleted_at=timezone.now() - timedelta(days=99))
    out = StringIO()
    call_command("prune", "--dry-run", stdout=out)
    assert "Would purge 1 chats" in out.getvalue()
    assert ChatSession.objects.filter(pk=chat.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_prune_purges_a_chat_whose_replies_the_model_wrote(owner_client, owner, tiny_builtin):
    from chats import generation
    from chats.models import PromptSnapshot

    def talk(chat, content):
        response = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": content})
        generation.wait_for(chat.messages.get(seq=response.json()["reply_seq"]).pk)

    old = make_chat(user=owner, character=make_character())
    kept = make_chat(user=owner, character=make_character())
    for chat in (old, kept):
        talk(chat, "Hello")
    owner_client.post(reverse("chats:message_regenerate", args=[old.code, 2]))
    generation.wait_for(old.messages.get(seq=2).pk)
    owner_client.post(reverse("chats:delete", args=[old.code]))
    ChatSession.objects.filter(pk=old.pk).update(deleted_at=timezone.now() - timedelta(days=31))

    out = StringIO()
    call_command("prune", stdout=out, stderr=StringIO())

    assert "Purged 1 chats (2 messages)" in out.getvalue()
    assert not ChatSession.objects.filter(pk=old.pk).exists()
    assert not MessageAlternative.objects.exists()
    assert list(PromptSnapshot.objects.values_list("message__session", flat=True)) == [kept.pk]
    assert kept.messages.count() == 2
