"""Writes that span several rows: starting a chat, sending a message, moving between swipes."""

from __future__ import annotations

import math
import random
import re

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Max
from django.db.models.deletion import get_candidate_relations_to_delete
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from characters.models import Character
from core import ratelimit
from core.prepared import PreparedInsert, PreparedQuery, PreparedUpdate
from core.tokens import estimate_tokens
from settings_app.models import Persona, SiteSettings

from . import generation, lore, memory
from .macros import MacroContext, expand
from .models import (
    PRESET_FIELDS,
    ChatMember,
    ChatSession,
    Message,
    MessageAlternative,
    PersonaLock,
    PromptSnapshot,
)

_WORD = re.compile(r"\w+")


class ChatBusy(Exception):
    """The chat already has a reply being generated."""


class EditConflict(Exception):
    """The message changed since the page that sent the change was loaded."""


class TooManyReplies(Exception):
    """The user asked for more replies than RPCHAT_GENERATIONS_PER_MINUTE allows."""

    def __init__(self, wait: int):
        super().__init__(f"Try again in {wait} seconds.")
        self.wait = wait


def generation_wait(*, user) -> int | None:
    """Count one reply asked for by `user`; seconds to wait when over the per-minute limit."""
    return ratelimit.hit("generate", str(user.pk), limit=settings.RPCHAT["GENERATIONS_PER_MINUTE"], window=60)


def _refuse_nul(text: str, what: str) -> None:
    """ValueError if `text` holds a NUL character: PostgreSQL refuses it in any text column (a
    form field refuses it the same way, through Django's own validator)."""
    if "\x00" in text:
        raise ValueError(
            f"{what} contains a NUL character (\\0), which cannot be stored. Remove it and try again."
        )


def _user_name(user, persona: Persona | None) -> str:
    if persona is not None:
        return persona.name
    return user.get_username() or SiteSettings.load().default_user_name


# The chat's row, locked (on PostgreSQL; SQLite's transactions take the database's write lock) for
# its last seq; and whether a reply is being written in it. Compiled once (core/prepared.py): a send
# runs both on every message. Prepared queries go where the router sends reads, which for the chats
# app is always the primary (core/routers.py), as the lock must.
_LOCKED_LAST_SEQ = PreparedQuery(
    ChatSession, lambda *, pk: ChatSession.objects.select_for_update().filter(pk=pk).values_list("last_seq")
)
_STREAMING = PreparedQuery(
    Message,
    lambda *, session: Message.objects.filter(
        session_id=session, status=Message.Status.STREAMING
    ).values_list("pk")[:1],
)

_TAKE_SEQS = PreparedUpdate(
    ChatSession,
    lambda *, pk: ChatSession.objects.filter(pk=pk),
    lambda *, n, now: {
        "last_seq": F("last_seq") + n,
        "message_count": F("message_count") + n,
        "last_message_at": now,
    },
)


# A send's two new messages, the user's and the reply's, in one INSERT compiled once per connection.
_NEW_MESSAGES = PreparedInsert(Message)


def _take_seqs(session: ChatSession, n: int) -> int:
    """Reserve n sequence numbers in the chat; returns the first. Call inside a transaction."""
    if not connection.in_atomic_block:
        # The ORM says so when it compiles a SELECT ... FOR UPDATE; a prepared one is compiled once.
        raise TransactionManagementError("_take_seqs locks the chat: call it inside a transaction.")
    found = _LOCKED_LAST_SEQ.rows(pk=session.pk)
    if not found:
        raise ChatSession.DoesNotExist("The chat is gone.")
    first = found[0][0] + 1
    _TAKE_SEQS.run(keys={"pk": session.pk}, values={"n": n, "now": timezone.now()})
    return first


def _persona_for(user, character: Character) -> Persona | None:
    """The persona a new chat starts with: the one locked to this character, else the default."""
    lock = PersonaLock.objects.filter(user=user, character=character).select_related("persona").first()
    if lock is not None:
        return lock.persona
    return Persona.objects.filter(user=user, is_default=True).first()


def persona_lock_set(*, user, character: Character, persona: Persona | None, was: bool) -> None:
    """Lock `persona` to `character` for `user` (None: lift a lock the form showed as set)."""
    if persona is not None:
        PersonaLock.objects.update_or_create(user=user, character=character, defaults={"persona": persona})
    elif was:
        PersonaLock.objects.filter(user=user, character=character).delete()


def chat_start(*, user, character: Character, persona: Persona | None = None) -> ChatSession:
    """A new chat whose first message is the character's greeting, alternates as its swipes."""
    if persona is None:
        persona = _persona_for(user, character)
    ctx = MacroContext(char=character.display_name, user=_user_name(user, persona))
    greetings = [expand(g, ctx) for g in character.greetings()]
    with transaction.atomic():
        session = ChatSession.objects.create(
            user=user,
            character=character,
            character_revision=character.revision,
            persona=persona,
            title=chat_title([character.name]),
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


def _last_speaker_id(session: ChatSession) -> int | None:
    return (
        Message.objects.filter(session=session, role=Message.Role.ASSISTANT)
        .order_by("-seq")
        .values_list("character_id", flat=True)
        .first()
    )


def next_speaker(session: ChatSession, *, content: str = "", chosen: Character | None = None) -> Character:
    """Who answers next: in a group, by mention, in list order, or the user's choice."""
    if not session.is_group:
        return session.character
    members = [m for m in session.members.select_related("character") if not m.muted]
    if not members:
        raise ValueError("Every character in this chat is muted. Unmute one to get a reply.")
    characters = [m.character for m in members]
    if chosen is not None:
        if chosen.pk not in {c.pk for c in characters}:
            raise ValueError("That character is not taking part in this chat (or is muted).")
        return chosen
    if session.turn_strategy == "natural":
        return _natural_speaker(session, characters, content=content)
    if session.turn_strategy == "mention" and content:
        lowered = content.lower()
        mentioned = [
            (lowered.find(name.lower()), c)
            for c in characters
            for name in {c.display_name, c.name, c.name.split()[0]}
            if name and name.lower() in lowered
        ]
        if mentioned:
            return min(mentioned, key=lambda pair: pair[0])[1]
    last = _last_speaker_id(session)
    ids = [c.pk for c in characters]
    if last in ids:
        return characters[(ids.index(last) + 1) % len(characters)]
    return characters[0]


def message_send(
    *, session: ChatSession, user, content: str, client_token: str = "", speaker: Character | None = None
) -> tuple[Message, Message]:
    """Store the user's message and an empty streaming reply, then generate the reply.

    Both rows are committed before the model is called. A repeated `client_token` (a double click,
    a resend after a lost response) returns the pair the first request made instead of sending
    twice, and is not counted against the reply limit (TooManyReplies past it).
    """
    content = content.strip()
    if not content:
        raise ValueError("The message is empty.")
    limit = settings.RPCHAT["MAX_MESSAGE_CHARS"]
    if len(content) > limit:
        raise ValueError(f"The message is {len(content):,} characters long; the limit is {limit:,}.")
    _refuse_nul(content, "The message")
    _refuse_nul(client_token, "The message's client token")
    if client_token:
        existing = _sent_with_token(session, client_token)
        if existing:
            return existing
    if wait := generation_wait(user=user):
        raise TooManyReplies(wait)
    character = next_speaker(session, content=content, chosen=speaker)
    try:
        with transaction.atomic():
            first = _take_seqs(session, 2)
            if _STREAMING.rows(session=session.pk):
                raise ChatBusy
            user_message = Message(
                session=session,
                seq=first,
                role=Message.Role.USER,
                speaker=_user_name(user, session.persona),
                content=content,
                token_count=estimate_tokens(content),
                client_token=client_token[:64],
            )
            reply = Message(
                session=session,
                seq=first + 1,
                role=Message.Role.ASSISTANT,
                speaker=character.display_name,
                character=character,
                status=Message.Status.STREAMING,
            )
            # One INSERT of both rows, compiled once; their ids come back with them.
            if not _NEW_MESSAGES.create([user_message, reply]):
                # SQLite before 3.35 gives no ids back from a multi-row INSERT.
                user_message.save(force_insert=True)
                reply.save(force_insert=True)
            transaction.on_commit(lambda: generation.start_generation(reply.pk))
    except IntegrityError:
        # Another request took the same token or started a generation in between.
        if client_token and (existing := _sent_with_token(session, client_token)):
            return existing
        raise ChatBusy from None
    return user_message, reply


def _sent_with_token(session: ChatSession, token: str) -> tuple[Message, Message] | None:
    sent = Message.objects.for_page().filter(session=session, client_token=token[:64]).first()
    if sent is None:
        return None
    reply = Message.objects.for_page().filter(session=session, seq=sent.seq + 1).first()
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
            reasoning="",
            reasoning_tokens=0,
            reasoning_ms=None,
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
        model_label, sampling_label = generation.model_line(alternative.meta)
        updated = Message.objects.filter(pk=message.pk, version=version).update(
            # Each swipe names the model that wrote it (empty when unknown: imported, or older).
            model_label=model_label,
            sampling_label=sampling_label,
            content=alternative.content,
            token_count=alternative.token_count,
            reasoning=alternative.reasoning,
            reasoning_tokens=alternative.reasoning_tokens,
            reasoning_ms=alternative.reasoning_ms,
            alternative_index=index,
            version=F("version") + 1,
            updated_at=timezone.now(),
        )
        if not updated:
            raise EditConflict
        memory.mark_stale(message.session_id, message.seq, message.seq)
    message.refresh_from_db()
    return message


# SillyTavern's talkativeness when a card has none.
TALKATIVENESS_DEFAULT = 0.5


def talkativeness(character: Character) -> float:
    """How likely the character speaks up unprompted in a group (0 to 1, the card's extension)."""
    value = (
        (character.extensions or {}).get("talkativeness") if isinstance(character.extensions, dict) else None
    )
    try:
        number = float(value) if value is not None and not isinstance(value, bool) else TALKATIVENESS_DEFAULT
    except (TypeError, ValueError):
        return TALKATIVENESS_DEFAULT
    return min(max(number, 0.0), 1.0) if math.isfinite(number) else TALKATIVENESS_DEFAULT


def _natural_speaker(session: ChatSession, characters: list[Character], *, content: str) -> Character:
    """SillyTavern's natural order, for one reply: a character named in the message, else each in a
    shuffled order speaks up with its talkativeness, else one of the talkative ones at random. The
    rolls are seeded by the chat and its position, so the same moment picks the same speaker.
    Without a new message, the last speaker does not answer itself."""
    rng = random.Random(f"{session.code}:{session.last_seq}")
    last = None if content else _last_speaker_id(session)
    pool = [c for c in characters if c.pk != last] or characters
    if content:
        # The first word of the message that is a word of a character's name (SillyTavern's rule).
        names = [(c, set(_WORD.findall(f"{c.name} {c.display_name}".lower()))) for c in pool]
        for word in _WORD.findall(content.lower()):
            for character, name_words in names:
                if word in name_words:
                    return character
    shuffled = pool[:]
    rng.shuffle(shuffled)
    for character in shuffled:
        if talkativeness(character) >= rng.random():
            return character
    chatty = [c for c in pool if talkativeness(c) > 0] or pool
    return chatty[rng.randrange(len(chatty))]


def _ensure_idle(session: ChatSession) -> None:
    if Message.objects.filter(session=session, status=Message.Status.STREAMING).exists():
        raise ChatBusy


def reply_request(*, session: ChatSession, speaker: Character | None = None) -> Message:
    """A reply with no new user message: the next (or the chosen) character speaks."""
    character = next_speaker(session, chosen=speaker)
    try:
        with transaction.atomic():
            seq = _take_seqs(session, 1)
            _ensure_idle(session)
            reply = Message.objects.create(
                session=session,
                seq=seq,
                role=Message.Role.ASSISTANT,
                speaker=character.display_name,
                character=character,
                status=Message.Status.STREAMING,
            )
            transaction.on_commit(lambda: generation.start_generation(reply.pk))
    except IntegrityError:
        raise ChatBusy from None
    return reply


def _is_last(message: Message) -> bool:
    return not Message.objects.filter(session_id=message.session_id, seq__gt=message.seq).exists()


def reply_regenerate(*, message: Message) -> Message:
    """Write a new swipe for the chat's last reply; the earlier ones stay reachable."""
    if message.role != Message.Role.ASSISTANT or not _is_last(message):
        raise ValueError("Only the last reply can be regenerated.")
    try:
        with transaction.atomic():
            ChatSession.objects.select_for_update().only("id").get(pk=message.session_id)
            _ensure_idle(message.session)
            current = Message.objects.select_for_update().get(pk=message.pk)
            count = current.alternative_count
            if count == 0:
                MessageAlternative.objects.create(
                    message=current,
                    index=0,
                    content=current.content,
                    token_count=current.token_count,
                    reasoning=current.reasoning,
                    reasoning_tokens=current.reasoning_tokens,
                    reasoning_ms=current.reasoning_ms,
                    # Its model line, for when the user swipes back to it.
                    meta={"model_label": current.model_label, "sampling_label": current.sampling_label}
                    if current.model_label
                    else {},
                )
                count = 1
            MessageAlternative.objects.create(message=current, index=count)
            Message.objects.filter(pk=current.pk).update(
                status=Message.Status.STREAMING,
                content="",
                reasoning="",
                reasoning_tokens=0,
                reasoning_ms=None,
                error="",
                alternative_index=count,
                alternative_count=count + 1,
                version=F("version") + 1,
                updated_at=timezone.now(),
            )
            transaction.on_commit(lambda: generation.start_generation(current.pk, mode="regenerate"))
    except IntegrityError:
        raise ChatBusy from None
    message.refresh_from_db()
    return message


def reply_continue(*, message: Message) -> Message:
    """Have the model extend the chat's last reply."""
    if message.role != Message.Role.ASSISTANT or not _is_last(message):
        raise ValueError("Only the last reply can be continued.")
    if message.status == Message.Status.STREAMING:
        raise ChatBusy
    try:
        with transaction.atomic():
            _ensure_idle(message.session)
            Message.objects.filter(pk=message.pk).update(
                status=Message.Status.STREAMING, error="", version=F("version") + 1, updated_at=timezone.now()
            )
            transaction.on_commit(lambda: generation.start_generation(message.pk, mode="continue"))
    except IntegrityError:
        raise ChatBusy from None
    message.refresh_from_db()
    return message


# A message's text replaced, if it is still at `version` and not being written (compiled once per
# connection: core.prepared).
_EDIT = PreparedUpdate(
    Message,
    lambda *, pk, version: Message.objects.filter(pk=pk, version=version).exclude(
        status=Message.Status.STREAMING
    ),
    lambda *, content, token_count, updated_at: {
        "content": content,
        "token_count": token_count,
        "version": F("version") + 1,
        "updated_at": updated_at,
    },
)


def message_edit(*, message: Message, content: str, version: int) -> Message:
    """Replace a message's text, refused (EditConflict) when it changed since `version`."""
    content = content.strip()
    if not content:
        raise ValueError("A message cannot be empty; delete it instead.")
    if len(content) > settings.RPCHAT["MAX_MESSAGE_CHARS"]:
        raise ValueError("The message is longer than the limit.")
    _refuse_nul(content, "The message")
    tokens = estimate_tokens(content)
    now = timezone.now()
    with transaction.atomic():
        updated = _EDIT.run(
            keys={"pk": message.pk, "version": version},
            values={"content": content, "token_count": tokens, "updated_at": now},
        )
        if not updated:
            raise EditConflict
        if message.alternative_count:
            MessageAlternative.objects.filter(message=message, index=message.alternative_index).update(
                content=content, token_count=tokens
            )
        memory.mark_stale(message.session_id, message.seq, message.seq)
    if message.version != version:
        message.refresh_from_db()  # it changed between reading it and this edit
        return message
    # The row was what `message` holds (same version), changed only by this: no second read.
    message.content, message.token_count, message.version, message.updated_at = (
        content,
        tokens,
        version + 1,
        now,
    )
    return message


def message_set_hidden(*, message: Message, hidden: bool, version: int) -> Message:
    """Keep a message in the chat but out of (or back in) the prompt."""
    with transaction.atomic():
        updated = Message.objects.filter(pk=message.pk, version=version).update(
            hidden=hidden, version=F("version") + 1, updated_at=timezone.now()
        )
        if not updated:
            raise EditConflict
        memory.mark_stale(message.session_id, message.seq, message.seq)
    message.refresh_from_db()
    return message


def message_delete(*, message: Message, and_after: bool = False) -> int:
    """Delete a message, or it and everything after it. Returns how many were deleted."""
    with transaction.atomic():
        ChatSession.objects.select_for_update().only("id").get(pk=message.session_id)
        rows = Message.objects.filter(session_id=message.session_id)
        rows = rows.filter(seq__gte=message.seq) if and_after else rows.filter(pk=message.pk)
        if rows.filter(status=Message.Status.STREAMING).exists():
            raise ChatBusy
        deleted = messages_delete(rows=rows)
        ChatSession.objects.filter(pk=message.session_id).update(message_count=F("message_count") - deleted)
        memory.messages_deleted(message.session_id, message.seq, and_after=and_after)
    return deleted


def messages_delete(*, rows: models.QuerySet) -> int:
    """Delete the messages `rows` and every row that refers to them (swipes, prompt snapshots).

    Plain DELETEs with a subquery each: Django's collector would load every row into memory first.
    The referring tables are read from the models, so a table added later is deleted with its
    messages instead of failing the foreign key check at commit (deferred on SQLite and PostgreSQL).
    Returns how many messages were deleted.
    """
    with transaction.atomic(using=rows.db):
        return _delete_with_dependents(rows)


def _delete_with_dependents(rows: models.QuerySet) -> int:
    keys = rows.values("pk")
    for relation in get_candidate_relations_to_delete(rows.model._meta):
        field = relation.field
        dependents = relation.related_model._base_manager.using(rows.db).filter(**{f"{field.name}__in": keys})
        if relation.on_delete is models.CASCADE:
            _delete_with_dependents(dependents)
        elif relation.on_delete is models.SET_NULL:
            dependents.update(**{field.name: None})
        elif relation.on_delete is not models.DO_NOTHING:
            raise NotImplementedError(f"{relation.related_model.__name__}.{field.name}: {relation.on_delete}")
    return rows._raw_delete(rows.db)


def chat_branch(*, session: ChatSession, at_seq: int) -> ChatSession:
    """A new chat holding this one's history up to `at_seq`, copied in SQL, linked to its parent."""
    with transaction.atomic():
        branch = ChatSession.objects.create(
            user=session.user,
            character=session.character,
            character_revision=session.character_revision,
            persona=session.persona,
            title=f"{session.title or 'Chat'} (branch at #{at_seq})"[:200],
            parent=session,
            branch_seq=at_seq,
            author_note=session.author_note,
            author_note_depth=session.author_note_depth,
            author_note_frequency=session.author_note_frequency,
            author_note_role=session.author_note_role,
            is_group=session.is_group,
            turn_strategy=session.turn_strategy,
            show_reasoning=session.show_reasoning,
            **{f"{name}_id": getattr(session, f"{name}_id") for name in PRESET_FIELDS},
            profile_id=session.profile_id,
        )
        branch.lorebooks.set(session.lorebooks.all())
        ChatMember.objects.bulk_create(
            ChatMember(session=branch, character_id=m.character_id, position=m.position, muted=m.muted)
            for m in session.members.all()
        )
        copied = _copy_messages(source=session, target=branch, up_to_seq=at_seq)
        memory.copy_for_branch(source=session, target=branch, up_to_seq=at_seq)
        lore.effects_copy(source=session, target=branch, up_to_seq=at_seq)
        ChatSession.objects.filter(pk=branch.pk).update(
            message_count=copied, last_seq=at_seq if copied else 0, last_message_at=timezone.now()
        )
    branch.refresh_from_db()
    return branch


def _copy_messages(*, source: ChatSession, target: ChatSession, up_to_seq: int) -> int:
    """INSERT ... SELECT of messages, their swipes and prompts: no row passes through Python."""
    message = Message._meta.db_table
    alternative = MessageAlternative._meta.db_table
    snapshot = PromptSnapshot._meta.db_table
    kept = [f.column for f in PromptSnapshot._meta.concrete_fields if f.name != "message"]
    snapshot_cols = ", ".join(f'"{c}"' for c in kept)
    snapshot_select = ", ".join(f'snap."{c}"' for c in kept)
    # Every column but the key and the chat, from the model: a new field is copied too.
    columns = [f.column for f in Message._meta.concrete_fields if f.name not in ("id", "session")]
    # The branch's messages were not sent with the parent's idempotency keys.
    select = ", ".join("''" if c == "client_token" else f'"{c}"' for c in columns)
    cols = ", ".join(f'"{c}"' for c in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {message} (session_id, {cols}) "  # noqa: S608 - names from the models
            f"SELECT %s, {select} FROM {message} "
            "WHERE session_id = %s AND seq <= %s AND status <> 'streaming' ORDER BY seq",
            [target.pk, source.pk, up_to_seq],
        )
        copied = cursor.rowcount
        # Every column but the key and the message, from the model: a new field is copied too.
        alt_columns = [
            f.column for f in MessageAlternative._meta.concrete_fields if f.name not in ("id", "message")
        ]
        alt_cols = ", ".join(f'"{c}"' for c in alt_columns)
        alt_select = ", ".join(f'alt."{c}"' for c in alt_columns)
        cursor.execute(
            f"INSERT INTO {alternative} (message_id, {alt_cols}) "  # noqa: S608 - names from the models
            f"SELECT dst.id, {alt_select} "
            f"FROM {alternative} alt "
            f"JOIN {message} src ON src.id = alt.message_id "
            f"JOIN {message} dst ON dst.session_id = %s AND dst.seq = src.seq "
            "WHERE src.session_id = %s AND src.seq <= %s",
            [target.pk, source.pk, up_to_seq],
        )
        # The prompt inspector of a copied reply shows what was sent for it in the parent chat.
        cursor.execute(
            f"INSERT INTO {snapshot} (message_id, {snapshot_cols}) "  # noqa: S608 - names from the models
            f"SELECT dst.id, {snapshot_select} "
            f"FROM {snapshot} snap "
            f"JOIN {message} src ON src.id = snap.message_id "
            f"JOIN {message} dst ON dst.session_id = %s AND dst.seq = src.seq "
            "WHERE src.session_id = %s AND src.seq <= %s",
            [target.pk, source.pk, up_to_seq],
        )
    return copied


def chat_archive(*, session: ChatSession, archived: bool) -> None:
    ChatSession.objects.filter(pk=session.pk).update(archived_at=timezone.now() if archived else None)


def chat_delete(*, session: ChatSession) -> None:
    """Soft delete: the chat disappears at once and is purged by `manage.py prune` later."""
    ChatSession.objects.filter(pk=session.pk).update(deleted_at=timezone.now())


def chat_restore(*, session: ChatSession) -> None:
    ChatSession.objects.filter(pk=session.pk).update(deleted_at=None)


def chat_title(names: list[str]) -> str:
    """The title a chat gets by itself: "Chat with Mira", "Chat with Mira, Quince and Wren"."""
    if len(names) > 4:
        names = [*names[:3], f"{len(names) - 3} others"]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    return f"Chat with {listed}"[:200]


def _member_names(session: ChatSession) -> list[str]:
    return list(session.members.order_by("position", "id").values_list("character__name", flat=True))


def _retitle_group(session: ChatSession, before: list[str]) -> None:
    """Name the group in the title, unless the user wrote a title of their own."""
    if session.title not in ("", chat_title(before)):
        return
    session.title = chat_title(_member_names(session) or [session.character.name])
    ChatSession.objects.filter(pk=session.pk).update(title=session.title)


def member_add(*, session: ChatSession, character: Character) -> ChatMember:
    """Add a character to the chat, making it a group chat (its title then names the group)."""
    with transaction.atomic():
        before = _member_names(session) or [session.character.name]
        last_seq = ChatSession.objects.filter(pk=session.pk).values_list("last_seq", flat=True).first() or 0
        if not session.is_group:
            ChatMember.objects.get_or_create(
                session=session, character=session.character, defaults={"position": 0}
            )
            ChatSession.objects.filter(pk=session.pk).update(is_group=True)
            session.is_group = True
            # The chat's own character saw everything so far.
            memory.open_span(session, session.character_id, from_seq=1)
        position = (session.members.aggregate(m=Max("position"))["m"] or 0) + 1
        member, created = ChatMember.objects.get_or_create(
            session=session, character=character, defaults={"position": position}
        )
        _retitle_group(session, before)
        if created:
            # What a character witnesses starts with the next message.
            memory.open_span(session, character.pk, from_seq=last_seq + 1)
    return member


def member_set_muted(*, session: ChatSession, character_id: int, muted: bool) -> None:
    with transaction.atomic():
        changed = (
            ChatMember.objects.filter(session=session, character_id=character_id)
            .exclude(muted=muted)
            .update(muted=muted)
        )
        if changed:
            # A muted character does not witness what is said meanwhile.
            last_seq = (
                ChatSession.objects.filter(pk=session.pk).values_list("last_seq", flat=True).first() or 0
            )
            if muted:
                memory.close_span(session, character_id, at_seq=last_seq + 1)
            else:
                memory.open_span(session, character_id, from_seq=last_seq + 1)


def member_remove(*, session: ChatSession, character_id: int) -> None:
    if character_id == session.character_id:
        raise ValueError("The chat's main character cannot be removed; mute it instead.")
    with transaction.atomic():
        before = _member_names(session)
        ChatMember.objects.filter(session=session, character_id=character_id).delete()
        _retitle_group(session, before)
        last_seq = ChatSession.objects.filter(pk=session.pk).values_list("last_seq", flat=True).first() or 0
        memory.close_span(session, character_id, at_seq=last_seq + 1)
