"""Test data, made in bulk: a long chat is one INSERT per batch, not one per message."""

from __future__ import annotations

import itertools

from django.utils import timezone

from characters.models import Character, Tag
from chats.models import ChatSession, Message
from core.tokens import estimate_tokens

_names = itertools.count(1)


def make_character(
    *, owner=None, name: str | None = None, public: bool = True, tags=(), **fields
) -> Character:
    character = Character.objects.create(
        owner=owner,
        name=name or f"Character {next(_names)}",
        visibility=Character.Visibility.PUBLIC if public else Character.Visibility.PRIVATE,
        first_message=fields.pop("first_message", "Hello, {{user}}. I am {{char}}."),
        description=fields.pop("description", "A test character."),
        **fields,
    )
    for tag in tags:
        t = Tag.objects.filter(name__iexact=tag).first() or Tag.objects.create(name=tag)
        character.tags.add(t)
    return character


def make_chat(
    *, user, character, messages: int = 0, start_seq: int = 1, text: str = "Message {seq}"
) -> ChatSession:
    session = ChatSession.objects.create(user=user, character=character, title=f"Chat with {character.name}")
    add_messages(session, messages, start_seq=start_seq, text=text)
    return session


def add_messages(
    session: ChatSession, count: int, *, start_seq: int | None = None, text: str = "Message {seq}"
) -> None:
    if count <= 0:
        return
    first = start_seq if start_seq is not None else session.last_seq + 1
    now = timezone.now()
    batch = []
    for seq in range(first, first + count):
        content = text.replace("{seq}", str(seq))
        batch.append(
            Message(
                session=session,
                seq=seq,
                role=Message.Role.USER if seq % 2 else Message.Role.ASSISTANT,
                speaker="olivia" if seq % 2 else session.character.name,
                content=content,
                token_count=estimate_tokens(content),
                created_at=now,
                updated_at=now,
            )
        )
        if len(batch) == 5000:
            Message.objects.bulk_create(batch)
            batch = []
    Message.objects.bulk_create(batch)
    ChatSession.objects.filter(pk=session.pk).update(
        last_seq=first + count - 1, message_count=session.message_count + count, last_message_at=now
    )
    session.refresh_from_db()
