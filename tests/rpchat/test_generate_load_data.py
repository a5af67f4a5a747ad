"""`manage.py generate_load_data`: the benchmark's data set, made again after the benchmark used it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from chats import generation
from chats.models import ChatSession, Message, PromptSnapshot

pytestmark = pytest.mark.django_db(transaction=True)


def _generate(*args: str) -> str:
    out = StringIO()
    call_command("generate_load_data", "--chat-sizes", "10", "--characters", "3", *args, stdout=out)
    return out.getvalue()


def test_reset_removes_chats_the_benchmark_sent_messages_into(client):
    _generate("--offline-engine")
    chat = ChatSession.objects.get(title="Bench chat 10")
    # What the benchmark does: send through the page; the offline engine fails the reply, which
    # keeps the prompt it was sent with.
    client.force_login(get_user_model().objects.get(username="bench"))
    response = client.post(reverse("chats:send", args=[chat.code]), {"content": "A benchmark send"})
    reply = Message.objects.get(session=chat, seq=response.json()["reply_seq"])
    generation.wait_for(reply.pk)
    assert PromptSnapshot.objects.filter(message=reply).exists()

    out = _generate("--reset", "--offline-engine")

    assert "Removed the previous bench data." in out
    rebuilt = ChatSession.objects.get(title="Bench chat 10")
    assert rebuilt.pk != chat.pk and rebuilt.messages.count() == 10
    assert not PromptSnapshot.objects.exists()
