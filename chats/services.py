"""Writes that span several rows: starting a chat, sending a message, moving between swipes."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from characters.models import Character
from settings_app.models import Persona, SiteSettings

from . import generation
from .macros import MacroContext, expand
from .models import ChatSession, Message, MessageAlternative
from .prompt import estimate_tokens


class ChatBusy(Exception):
    """The chat already has a reply being generated."""


class EditConflict(Exception):
    """The message changed since the page that sent the change was loaded."""


def _user_name(user, persona: Persona | None) -> str:
    if persona is not None:
        return persona.name
    return user.get_username() or SiteSettings.load().default_user_name


def _take_seqs(session: ChatSession, n: int) -> int:
    """Reserve n sequence numbers in the chat; returns the first. Call inside a transaction."""
    locked = ChatSession.objects.select_for_update().only("last_seq").get(pk=session.pk)
    first = locked.last_seq + 1
    ChatSession.objects.filter(pk=session.pk).update(
        last_seq=F("last_seq") + n,
        message_count=F("message_count") + n,
        last_message_at=timezone.now(),
    )
    return first


def chat_start(*, user, character: Character, persona: Persona | None = None) -> ChatSession:
    """A new chat whose first message is the character's greeting, alternates as its swipes."""
    if persona is None:
        persona = Persona.objects.filter(user=user, is_default=True).first()
    ctx = MacroContext(char=character.display_name, user=_user_name(user, persona))
    greetings = [expand(g, ctx) for g in character.greetings()]
    with transaction.atomic():
        session = ChatSession.objects.create(
            user=user,
            character=character,
            persona=persona,
            title=f"Chat with {character.name}",
        )
        if greetings:
            seq = _take_seqs(session, 1)
            message = Message.objects.create(
                session=session,
                seq=seq,
                role=Message.Role.ASSISTANT,
                speaker=character.display_name,
                content=greetings[0],
                token_count=estimate_tokens(greetings[0]),
                alternative_count=len(greetings) if len(greetings) > 1 else 0,
            )
            if len(greetings) > 1:
                MessageAlternative.objects.bulk_create(
                    MessageAlternative(
                        message=message, index=i, content=text, token_count=estimate_tokens(text)
                    )
                    for i, text in enumerate(greetings)
                )
    return session


def message_send(
    *, session: ChatSession, user, content: str, client_token: str = ""
) -> tuple[Message, Message]:
    """Store the user's message and an empty streaming reply, then generate the reply.

    Both rows are committed before the model is called. A repeated `client_token` (a double click)
    returns the pair the first request made instead of sending twice.
    """
    content = content.strip()
    if not content:
        raise ValueError("The message is empty.")
    limit = settings.RPCHAT["MAX_MESSAGE_CHARS"]
    if len(content) > limit:
        raise ValueError(f"The message is {len(content):,} characters long; the limit is {limit:,}.")
    if client_token:
        existing = _sent_with_token(session, client_token)
        if existing:
            return existing
    character = session.character
    try:
        with transaction.atomic():
            first = _take_seqs(session, 2)
            if Message.objects.filter(session=session, status=Message.Status.STREAMING).exists():
                raise ChatBusy
            user_message = Message.objects.create(
                session=session,
                seq=first,
                role=Message.Role.USER,
                speaker=_user_name(user, session.persona),
                content=content,
                token_count=estimate_tokens(content),
                client_token=client_token[:64],
            )
            reply = Message.objects.create(
                session=session,
                seq=first + 1,
                role=Message.Role.ASSISTANT,
                speaker=character.display_name,
                status=Message.Status.STREAMING,
            )
            transaction.on_commit(lambda: generation.start_generation(reply.pk))
    except IntegrityError:
        # Another request took the same token or started a generation in between.
        if client_token and (existing := _sent_with_token(session, client_token)):
            return existing
        raise ChatBusy from None
    return user_message, reply


def _sent_with_token(session: ChatSession, token: str) -> tuple[Message, Message] | None:
    sent = Message.objects.filter(session=session, client_token=token[:64]).first()
    if sent is None:
        return None
    reply = Message.objects.filter(session=session, seq=sent.seq + 1).first()
    return sent, reply


def reply_retry(*, message: Message) -> Message:
    """Generate a failed or incomplete reply again, in place."""
    with transaction.atomic():
        if Message.objects.filter(session_id=message.session_id, status=Message.Status.STREAMING).exists():
            raise ChatBusy
        updated = Message.objects.filter(
            pk=message.pk, status__in=[Message.Status.ERROR, Message.Status.INCOMPLETE]
        ).update(
            status=Message.Status.STREAMING,
            content="",
            error="",
            version=F("version") + 1,
            updated_at=timezone.now(),
        )
        if updated:
            transaction.on_commit(lambda: generation.start_generation(message.pk))
    message.refresh_from_db()
    return message


def message_select_alternative(*, message: Message, index: int, version: int) -> Message:
    """Make swipe `index` the message's active text."""
    if not 0 <= index < message.alternative_count:
        raise ValueError("There is no such alternative.")
    with transaction.atomic():
        alternative = MessageAlternative.objects.get(message=message, index=index)
        updated = Message.objects.filter(pk=message.pk, version=version).update(
            content=alternative.content,
            token_count=alternative.token_count,
            alternative_index=index,
            version=F("version") + 1,
            updated_at=timezone.now(),
        )
        if not updated:
            raise EditConflict
    message.refresh_from_db()
    return message
