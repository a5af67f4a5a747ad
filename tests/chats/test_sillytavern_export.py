"""Chat export as SillyTavern JSONL and as text: what comes out, streamed a page at a time, owner only."""

from __future__ import annotations

import io
import json
import warnings

import pytest
from django.urls import reverse

from chats import services, sillytavern
from chats.models import Message, MessageAlternative
from chats.sillytavern import chat_import_sillytavern
from tests import cardkit
from tests.factories import add_messages, make_character, make_chat

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(owner):
    ada = make_character(owner=owner, name="Ada")
    data = cardkit.jsonl([cardkit.st_header(), *cardkit.st_messages()])
    return chat_import_sillytavern(
        source=io.BytesIO(data), file_name="Ada - chat.jsonl", user=owner, character=ada
    ).object


def body(response) -> str:
    assert response.streaming
    return b"".join(response.streaming_content).decode("utf-8")


def export_lines(client, session) -> list[dict]:
    response = client.get(reverse("chats:export_jsonl", args=[session.code]))
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="Ada - chat.jsonl"'
    return [json.loads(line) for line in body(response).split("\n")]


def test_an_imported_chat_exports_as_the_sillytavern_file_it_came_from(owner_client, imported):
    header, *messages = export_lines(owner_client, imported)
    original = cardkit.st_header()
    assert header == original
    for written, original_message in zip(messages, cardkit.st_messages(), strict=True):
        source = dict(original_message)
        source.setdefault("is_system", False)
        # SillyTavern's own date format is written for every message.
        source["send_date"] = sillytavern.format_send_date(sillytavern.parse_send_date(source["send_date"]))
        assert written == source


def test_the_exported_file_imports_again_to_the_same_chat(owner_client, owner, imported):
    data = body(owner_client.get(reverse("chats:export_jsonl", args=[imported.code]))).encode()
    again = chat_import_sillytavern(
        source=io.BytesIO(data), file_name="again.jsonl", user=owner, character=imported.character
    ).object
    fields = ("seq", "role", "speaker", "content", "hidden", "alternative_index", "alternative_count")
    assert list(Message.objects.filter(session=again).order_by("seq").values_list(*fields)) == list(
        Message.objects.filter(session=imported).order_by("seq").values_list(*fields)
    )
    assert again.metadata["integrity"] == imported.metadata["integrity"]
    assert again.author_note == imported.author_note


def test_changes_made_in_rpchat_are_in_the_export(owner_client, imported):
    third = Message.objects.get(session=imported, seq=3)
    services.message_select_alternative(message=third, index=2, version=third.version)
    imported.author_note = "Ada is wide awake."
    imported.save()
    header, *messages = export_lines(owner_client, imported)
    assert header["chat_metadata"]["note_prompt"] == "Ada is wide awake."
    assert (messages[2]["mes"], messages[2]["swipe_id"]) == ("The third answer.", 2)
    assert messages[2]["swipes"][2] == "The third answer."


def test_a_chat_started_in_rpchat_exports_as_sillytavern_writes_chats(owner_client, owner):
    character = make_character(owner=owner, name="Wren", alternate_greetings=["Another hello."])
    session = services.chat_start(user=owner, character=character)
    session.refresh_from_db()
    add_messages(session, 2)
    header, greeting, *rest = [
        json.loads(line)
        for line in body(owner_client.get(reverse("chats:export_jsonl", args=[session.code]))).split("\n")
    ]
    assert header["user_name"] == "olivia" and header["character_name"] == "Wren"
    assert set(header) == {"user_name", "character_name", "create_date", "chat_metadata"}
    assert greeting["name"] == "Wren" and greeting["is_user"] is False and greeting["is_system"] is False
    assert greeting["swipes"] == ["Hello, olivia. I am Wren.", "Another hello."] and greeting["swipe_id"] == 0
    assert len(greeting["swipe_info"]) == 2
    assert sillytavern.parse_send_date(greeting["send_date"]) is not None
    assert [m["is_user"] for m in rest] == [False, True]


def test_the_text_export_has_each_visible_message_once(owner_client, imported):
    response = owner_client.get(reverse("chats:export_text", args=[imported.code]))
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert body(response) == (
        "Ada: *Gears whir.* Welcome.\n\n"
        "Olivia: Hello! What is this place?\n\n"
        "Ada: The second answer.\n\n"
        "Ada: One swipe only.\n\n"
    )


def test_another_user_cannot_export_a_chat(client, other, imported):
    client.force_login(other)
    assert client.get(reverse("chats:export_jsonl", args=[imported.code])).status_code == 404
    assert client.get(reverse("chats:export_text", args=[imported.code])).status_code == 404


def test_the_export_reads_the_chat_a_page_at_a_time(
    owner_client, owner, monkeypatch, django_assert_num_queries
):
    monkeypatch.setattr(sillytavern, "EXPORT_PAGE_SIZE", 10)
    session = make_chat(user=owner, character=make_character(), messages=35)
    url = reverse("chats:export_jsonl", args=[session.code])
    owner_client.get(reverse("chats:list"))  # the session's user is cached from here on
    # the chat with its character, the chat's user (the header's user_name), then one
    # keyset page of messages per 10 (no swipes, so no alternatives query): 4 pages
    with django_assert_num_queries(2 + 4):
        lines = body(owner_client.get(url)).split("\n")
    assert len(lines) == 36
    add_messages(session, 100)
    with django_assert_num_queries(2 + 14):
        assert len(body(owner_client.get(url)).split("\n")) == 136


def test_swipes_are_read_once_per_page(owner_client, owner, monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(sillytavern, "EXPORT_PAGE_SIZE", 10)
    session = make_chat(user=owner, character=make_character(), messages=20)
    for message in Message.objects.filter(session=session):
        MessageAlternative.objects.bulk_create(
            MessageAlternative(message=message, index=i, content=f"{message.content} v{i}") for i in range(2)
        )
    Message.objects.filter(session=session).update(alternative_count=2)
    # the user, the chat, its user; per page of 10: messages, then their alternatives; the third
    # page read is empty
    with django_assert_num_queries(3 + 2 * 2 + 1):
        lines = [
            json.loads(line)
            for line in body(owner_client.get(reverse("chats:export_jsonl", args=[session.code]))).split("\n")
        ]
    assert lines[5]["swipes"] == ["Message 5 v0", "Message 5 v1"]


def test_under_asgi_the_export_is_streamed_from_an_async_iterator(owner, imported):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    client = AsyncClient()
    client.force_login(owner)

    async def fetch():
        response = await client.get(reverse("chats:export_jsonl", args=[imported.code]))
        assert hasattr(response.streaming_content, "__aiter__")
        return [chunk async for chunk in response.streaming_content]

    with warnings.catch_warnings():
        # Given a sync iterator under ASGI, Django warns and then reads all of it into a list.
        warnings.simplefilter("error")
        chunks = async_to_sync(fetch)()
    assert len(chunks) == 2  # the header, then one page of messages
    lines = b"".join(chunks).decode().split("\n")
    assert len(lines) == 6 and json.loads(lines[3])["mes"] == "The second answer."
