"""What a new user trips over on the chat pages: the group's title, Retry (not Continue) on a failed
empty reply, one name for Trash, and each hint said once."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from chats import generation
from chats.models import ChatSession
from chats.services import chat_title
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db


def test_a_group_chat_is_titled_after_its_members_until_the_user_names_it(owner, owner_client):
    mira, quince, wren = (make_character(name=n) for n in ("Mira", "Quince", "Wren"))
    owner_client.post(reverse("chats:new", args=[mira.code]))
    chat = ChatSession.objects.get(user=owner)
    members = reverse("chats:members", args=[chat.code])
    assert chat.title == "Chat with Mira"
    owner_client.post(members, {"action": "add", "character": quince.pk})
    chat.refresh_from_db()
    assert chat.title == "Chat with Mira and Quince"
    owner_client.post(members, {"action": "add", "character": wren.pk})
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert re.search(r"<h1>Chat with Mira, Quince and Wren</h1>", html)
    assert "<title>Chat with Mira, Quince and Wren" in html
    owner_client.post(members, {"action": "remove", "character_id": quince.pk})
    chat.refresh_from_db()
    assert chat.title == "Chat with Mira and Wren"
    # A title the user wrote is theirs: adding someone leaves it alone.
    ChatSession.objects.filter(pk=chat.pk).update(title="The heist")
    owner_client.post(members, {"action": "add", "character": quince.pk})
    chat.refresh_from_db()
    assert chat.title == "The heist"


def test_a_long_group_title_names_three_and_counts_the_rest():
    assert chat_title(["A", "B", "C", "D", "E", "F"]) == "Chat with A, B, C and 3 others"


@pytest.mark.django_db(transaction=True)
def test_a_failed_empty_reply_offers_retry_and_not_continue(
    owner, owner_client, make_profile, scripted_server
):
    scripted_server.mode = "http503"
    make_profile(scripted_server.url)
    chat = make_chat(user=owner, character=make_character(name="Wren"), messages=2)
    sent = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Hello?"}).json()
    reply = chat.messages.get(seq=sent["reply_seq"])
    generation.wait_for(reply.pk, timeout=30)
    reply.refresh_from_db()
    assert (reply.status, reply.content) == ("error", "")
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    failed = html.split(f'id="m{reply.seq}"')[1]
    assert 'data-action="retry">Retry</button>' in failed
    assert 'data-action="continue"' not in failed
    # A complete reply with text still offers Continue.
    assert 'data-action="continue"' in html.split(f'id="m{reply.seq - 2}"')[1].split('id="m')[0]


def test_deleting_a_chat_points_to_the_trash_by_that_name(owner, owner_client):
    chat = make_chat(user=owner, character=make_character(name="Wren"), messages=1)
    html = owner_client.get(reverse("chats:delete", args=[chat.code])).content.decode()
    trash = reverse("chats:trash")
    assert f'<a href="{trash}">Trash</a>' in html and "Deleted chats" not in html
    assert f'<a href="{trash}">Trash</a>' in owner_client.get(reverse("chats:list")).content.decode()
    character = make_character(owner=owner, name="Mine")
    html = owner_client.get(reverse("characters:delete", args=[character.code])).content.decode()
    assert f'<a href="{trash}">Trash</a>' in html


def test_the_authors_note_frequency_is_explained_once(owner, owner_client):
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    html = owner_client.get(reverse("chats:settings", args=[chat.code])).content.decode()
    assert len(re.findall(r"every N", html, re.IGNORECASE)) == 1


def test_the_chat_page_is_never_kept_by_the_browser(owner, owner_client):
    chat = make_chat(user=owner, character=make_character(name="Wren"), messages=2)
    response = owner_client.get(chat.get_absolute_url())
    assert "no-store" in response["Cache-Control"]
