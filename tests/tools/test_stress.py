"""manage.py stress: many clients over real HTTP against a real uvicorn process, then the checks."""

from __future__ import annotations

import re
import threading
from io import StringIO

import pytest
from django.core.management import call_command

from chats.models import ChatSession, Message
from tests.factories import make_character, make_chat
from tools.stress import Results, Send, verify
from tools.tiny_model import TINY_REPLY


def _figure(output: str, label: str) -> int:
    return int(re.search(rf"{label}:\s+(\d+)", output).group(1))


def test_a_short_run_of_four_clients_ends_with_no_errors_and_every_message_stored_once(django_db_blocker):
    out = StringIO()
    failure: list[BaseException] = []

    def run() -> None:
        # The run uses its own server and SQLite file, not the test database.
        with django_db_blocker.unblock():
            try:
                call_command("stress", clients=4, seconds=3, shared_chats=1, stdout=out)
            except BaseException as exc:
                failure.append(exc)

    # In a thread of its own, as from a shell: after the browser tests, Playwright's event loop is
    # still registered as running in this thread, and Django refuses database calls under it.
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(300)
    if failure:
        raise failure[0]
    output = out.getvalue()
    assert _figure(output, "errors") == 0
    sent = _figure(output, "messages sent")
    assert sent > 4  # every client got at least one message through
    assert _figure(output, "replies completed") == sent
    assert "No errors; every message and reply is stored once, in order." in output


# --- the checks on their own, against chats in a known state -----------------------------------


checks = pytest.mark.django_db


def _chat_with_turns(owner, turns: int) -> tuple[ChatSession, list[Send]]:
    """A chat as a stress run leaves it: a greeting, then user messages each followed by the reply."""
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    Message.objects.create(session=chat, seq=1, role="assistant", content="Hello! Shall we begin?")
    sends = []
    for n in range(turns):
        seq = 2 + 2 * n
        token = f"token-{n}"
        Message.objects.create(session=chat, seq=seq, role="user", content=f"Message {n}", client_token=token)
        Message.objects.create(session=chat, seq=seq + 1, role="assistant", content=TINY_REPLY)
        sends.append(Send(0, str(chat.code), token, False, status="accepted", reply_seq=seq + 1))
    last = 1 + 2 * turns
    ChatSession.objects.filter(pk=chat.pk).update(message_count=last, last_seq=last)
    return chat, sends


def _results(chat: ChatSession, sends: list[Send]) -> Results:
    return Results(sends=sends, chats={str(chat.code)})


def _problems(chat, sends) -> list[str]:
    return verify(using="default", results=_results(chat, sends), expected_reply=TINY_REPLY)


@checks
def test_a_consistent_chat_passes_the_checks(owner):
    chat, sends = _chat_with_turns(owner, 3)
    assert _problems(chat, sends) == []


@checks
def test_a_wrong_message_count_or_last_seq_is_reported(owner):
    chat, sends = _chat_with_turns(owner, 3)
    ChatSession.objects.filter(pk=chat.pk).update(message_count=6, last_seq=9)
    problems = _problems(chat, sends)
    assert any("message_count is 6, it has 7" in p for p in problems)
    assert any("last_seq is 9, the highest seq is 7" in p for p in problems)


@checks
def test_a_message_without_its_reply_or_with_another_text_is_reported(owner):
    chat, sends = _chat_with_turns(owner, 3)
    Message.objects.filter(session=chat, seq=5).update(content="Something else")
    Message.objects.filter(session=chat, seq=7).delete()
    ChatSession.objects.filter(pk=chat.pk).update(message_count=6)
    problems = _problems(chat, sends)
    assert any("reply #5 reads 'Something else'" in p for p in problems)
    assert any("user message #6 has no reply after it" in p for p in problems)


@checks
def test_a_gap_in_seqs_and_an_unfinished_reply_are_reported(owner):
    chat, sends = _chat_with_turns(owner, 2)
    Message.objects.filter(session=chat, seq=5).update(seq=6, status="streaming")
    ChatSession.objects.filter(pk=chat.pk).update(last_seq=6)
    sends[-1].reply_seq = 6
    problems = _problems(chat, sends)
    assert any("seqs are not 1..5 in order: 1, 2, 3, 4, 6" in p for p in problems)
    assert any("#6 is streaming" in p for p in problems)


@checks
def test_a_lost_message_and_a_refused_one_that_was_stored_are_reported(owner):
    chat, sends = _chat_with_turns(owner, 2)
    lost = Send(1, str(chat.code), "never-stored", False, status="accepted", reply_seq=7)
    sends[0].status = "abandoned"  # the client gave up after 409s, yet the row is there
    problems = _problems(chat, [*sends, lost])
    assert any("never-stored (client 1) stored 0 times, not once" in p for p in problems)
    assert any("token-0 was refused (409) but stored anyway" in p for p in problems)
