"""Importing a SillyTavern chat from the character page, and the chat page's export links."""

from __future__ import annotations

import json
import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from chats.models import ChatSession, Message
from tests import cardkit
from tests.factories import make_character

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada(owner):
    return make_character(owner=owner, name="Ada", public=False)


def chat_file(n=120, name="Ada - 2024-10-18@20h52m17s.jsonl"):
    lines = [cardkit.st_header()] + [
        {
            "name": "Olivia" if i % 2 else "Ada",
            "is_user": bool(i % 2),
            "mes": f"Message {i + 1}",
            "send_date": 1729284737000 + i * 60000,
        }
        for i in range(n)
    ]
    return SimpleUploadedFile(name, cardkit.jsonl(lines), content_type="application/jsonl")


def test_the_character_page_has_the_import_form(owner_client, ada):
    html = owner_client.get(ada.get_absolute_url()).content.decode()
    assert "Import a SillyTavern chat" in html
    assert f'action="{reverse("chats:import", args=[ada.code])}" enctype="multipart/form-data"' in html


def test_an_imported_chat_opens_at_its_newest_50_messages(owner_client, ada):
    response = owner_client.post(reverse("chats:import", args=[ada.code]), {"file": chat_file()}, follow=True)
    session = ChatSession.objects.get()
    assert response.redirect_chain[-1][0] == session.get_absolute_url()
    html = response.content.decode()
    assert "Imported 120 messages from Ada - 2024-10-18@20h52m17s.jsonl." in html
    assert [int(s) for s in re.findall(r'data-seq="(\d+)"', html)] == list(range(71, 121))
    assert "Message 120" in html and "Message 70<" not in html
    assert f'href="{reverse("chats:export_jsonl", args=[session.code])}"' in html
    assert f'href="{reverse("chats:export_text", args=[session.code])}"' in html


def test_a_damaged_file_is_refused_with_its_broken_lines_and_can_be_imported_in_part(owner_client, ada):
    data = (
        cardkit.jsonl([cardkit.st_header(), {"name": "Ada", "mes": "one"}])
        + b"\n{broken\n"
        + json.dumps({"name": "Ada", "mes": "two"}).encode()
    )
    upload = lambda: SimpleUploadedFile("damaged.jsonl", data)  # noqa: E731
    html = owner_client.post(
        reverse("chats:import", args=[ada.code]), {"file": upload()}, follow=True
    ).content.decode()
    assert (
        "damaged.jsonl was not imported: 1 broken line(s), nothing was imported: line 3: invalid JSON" in html
    )
    assert ChatSession.objects.count() == 0
    html = owner_client.post(
        reverse("chats:import", args=[ada.code]), {"file": upload(), "skip_broken_lines": "1"}, follow=True
    ).content.decode()
    assert "skipped 1 broken line(s): line 3" in html
    assert list(Message.objects.values_list("content", flat=True).order_by("seq")) == ["one", "two"]


def test_the_same_file_twice_opens_the_chat_imported_the_first_time(owner_client, ada):
    owner_client.post(reverse("chats:import", args=[ada.code]), {"file": chat_file(4)})
    response = owner_client.post(
        reverse("chats:import", args=[ada.code]), {"file": chat_file(4)}, follow=True
    )
    assert "was imported before; here it is." in response.content.decode()
    assert ChatSession.objects.count() == 1


def test_a_file_over_the_limit_is_refused(owner_client, ada, settings):
    settings.RPCHAT = {**settings.RPCHAT, "MAX_CHAT_BYTES": 2000}
    html = owner_client.post(
        reverse("chats:import", args=[ada.code]), {"file": chat_file(200)}, follow=True
    ).content.decode()
    assert "the file is larger than 2.0 KB (RPCHAT_MAX_CHAT_BYTES)." in html
    assert ChatSession.objects.count() == 0


def test_a_chat_cannot_be_imported_for_someone_elses_private_character(client, other, ada):
    client.force_login(other)
    assert client.post(reverse("chats:import", args=[ada.code]), {"file": chat_file(2)}).status_code == 404
    assert ChatSession.objects.count() == 0


def test_the_import_needs_a_csrf_token(owner, ada):
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    assert client.post(reverse("chats:import", args=[ada.code]), {"file": chat_file(2)}).status_code == 403
    assert ChatSession.objects.count() == 0
