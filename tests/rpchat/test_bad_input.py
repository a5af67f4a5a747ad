"""Bad input a user or a file can send: each answered with a 4xx and a clear message, or done."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from characters.services import lorebook_import
from chats.models import ChatMember, ChatSession, Message
from chats.search import search_messages
from settings_app.models import ApiToken, Persona
from tests import cardkit
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Wren"), messages=3, text="lantern {seq}")


# --- numbers out of the database's range ---------------------------------------------------------


@pytest.mark.parametrize("before", ["9" * 25, "9223372036854775808"])
def test_a_search_before_past_every_message_id_finds_everything(owner_client, owner, chat, before):
    page = owner_client.get(reverse("search"), {"q": "lantern", "before": before})
    assert page.status_code == 200
    assert page.content.decode().count('class="snippet"') == 3
    assert len(search_messages(user=owner, query="lantern", before=int(before)).hits) == 3
    # The API's cursor is typed: out of its range is a 400 naming the parameter.
    api = owner_client.get(reverse("api:search_messages"), {"q": "lantern", "before": before})
    assert api.status_code == 400 and api.json()["error"].startswith("before:")


@pytest.mark.parametrize("before", ["-" + "9" * 25, "-9223372036854775809", "0"])
def test_a_search_before_below_every_message_id_finds_nothing(owner_client, owner, chat, before):
    page = owner_client.get(reverse("search"), {"q": "lantern", "before": before})
    assert page.status_code == 200 and 'class="snippet"' not in page.content.decode()
    assert search_messages(user=owner, query="lantern", before=int(before)).hits == []


@pytest.mark.parametrize("character_id", ["9" * 25, "-" + "9" * 25, "0", "Wren", ""])
def test_a_member_action_on_no_such_character_is_refused_with_a_message(owner_client, chat, character_id):
    mira = make_character(name="Mira")
    owner_client.post(reverse("chats:members", args=[chat.code]), {"action": "add", "character": mira.pk})
    response = owner_client.post(
        reverse("chats:members", args=[chat.code]),
        {"action": "mute", "character_id": character_id},
        follow=True,
    )
    assert response.status_code == 200
    assert (
        "Choose a character of this chat and whether to mute, unmute or remove it."
        in response.content.decode()
    )
    assert not ChatMember.objects.filter(session=chat, muted=True).exists()
    # A real member still mutes.
    owner_client.post(reverse("chats:members", args=[chat.code]), {"action": "mute", "character_id": mira.pk})
    assert ChatMember.objects.get(session=chat, character=mira).muted


def test_chat_settings_name_global_lorebooks_by_code(owner_client, owner, chat):
    book = lorebook_import(
        source=json.dumps(cardkit.world_info()).encode(), file_name="Harbor.json", owner=owner
    ).object
    url = reverse("chats:settings", args=[chat.code])
    form = {"title": "Renamed", "author_note_depth": 4, "author_note_frequency": 1}
    form |= {"author_note_role": "system", "turn_strategy": "mention"}
    refused = owner_client.post(url, {**form, "lorebooks": "9" * 25})
    assert refused.status_code == 200
    assert "is not a valid UUID" in refused.content.decode()
    assert owner_client.post(url, {**form, "lorebooks": str(book.code)}).status_code == 302
    assert list(ChatSession.objects.get(pk=chat.pk).lorebooks.all()) == [book]


# --- NUL, which PostgreSQL refuses in any text ---------------------------------------------------


def test_a_message_with_a_nul_is_refused_on_send_and_on_edit(owner_client, chat):
    sent = owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "a\x00b"})
    assert sent.status_code == 400
    assert sent.json()["error"].startswith("The message contains a NUL character")
    token = owner_client.post(
        reverse("chats:send", args=[chat.code]), {"content": "fine", "client_token": "t\x00"}
    )
    assert token.status_code == 400
    message = chat.messages.get(seq=3)
    edited = owner_client.post(
        reverse("chats:message_edit", args=[chat.code, 3]), {"content": "x\x00y", "version": message.version}
    )
    assert edited.status_code == 400
    assert edited.json()["error"].startswith("The message contains a NUL character")
    assert Message.objects.filter(session=chat).count() == 3
    assert chat.messages.get(seq=3).content == "lantern 3"


@pytest.mark.parametrize(
    "url, params",
    [
        ("characters:gallery", {"label": "a\x00b"}),
        ("characters:gallery", {"q": "\x00"}),
        ("chats:list", {"q": "a\x00"}),
        ("search", {"q": "lantern\x00"}),
    ],
)
def test_a_nul_in_a_query_string_is_refused_with_400(owner_client, chat, url, params):
    response = owner_client.get(reverse(url), params)
    assert response.status_code == 400
    assert "NUL character" in response.content.decode()


def test_a_nul_in_an_api_query_string_is_refused_with_a_json_error(owner_client, chat):
    response = owner_client.get(reverse("api:characters"), {"tag": "\x00"})
    assert response.status_code == 400
    assert "NUL character" in response.json()["error"]


def test_forms_refuse_a_nul_with_their_own_message(owner_client, owner):
    response = owner_client.post(reverse("personas:new"), {"name": "Ve\x00ra", "description": "x"})
    assert "Null characters are not allowed." in response.content.decode()
    assert not Persona.objects.exists()
    response = owner_client.post(reverse("settings_app:api_tokens"), {"name": "script\x00"})
    assert "The name contains a NUL character" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_a_search_query_with_a_nul_is_read_as_a_space(owner, chat):
    assert len(search_messages(user=owner, query="lantern\x00", limit=10).hits) == 3


def test_a_sillytavern_persona_with_a_nul_is_refused_and_the_others_imported(tmp_path, owner):
    user = tmp_path / "data" / "default-user"
    (user / "characters").mkdir(parents=True)
    (user / "settings.json").write_text(
        json.dumps(
            {
                "power_user": {
                    "personas": {"a.png": "Olivia", "b.png": "Bad\x00name"},
                    "persona_descriptions": {"a.png": {"description": "Fine."}},
                }
            }
        )
    )
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("import_sillytavern", str(tmp_path / "data"), "--user", "olivia", stdout=out)
    assert "it contains a NUL character" in out.getvalue()
    assert list(Persona.objects.values_list("name", flat=True)) == ["Olivia"]
