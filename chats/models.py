import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Substr
from django.utils import timezone

from characters.models import LONG_FIELDS, Character
from core.urlcache import cached_reverse
from settings_app.models import ConnectionProfile, Persona


class ChatSessionQuerySet(models.QuerySet):
    def for_user(self, user) -> "ChatSessionQuerySet":
        """The user's own chats, excluding deleted ones."""
        return self.filter(user=user, deleted_at__isnull=True)

    def for_list(self, user, *, archived: bool = False) -> "ChatSessionQuerySet":
        """The chat list: the user's chats, most recent first, with character and preview."""
        return (
            self.for_user(user)
            .filter(archived_at__isnull=not archived)
            .with_character()
            .with_preview()
            .order_by("-last_message_at", "-id")
        )

    def with_preview(self) -> "ChatSessionQuerySet":
        """The start of each chat's newest message, as `preview` (a subquery on the seq index)."""
        newest = Message.objects.filter(session=models.OuterRef("pk")).order_by("-seq").values("content")[:1]
        return self.annotate(preview=Substr(models.Subquery(newest), 1, 160))

    def with_character(self) -> "ChatSessionQuerySet":
        """Join the character's list columns, for the chat list and the chat page header."""
        return self.select_related("character").defer(*(f"character__{f}" for f in LONG_FIELDS))


class ChatSession(models.Model):
    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # No index of its own: chat_user_recent_idx starts with user.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, db_index=False)
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="chats")
    # The character's `revision` when the chat began (empty for chats older than revisions), so
    # the chat page can say the character was edited since.
    character_revision = models.PositiveIntegerField(null=True, blank=True)
    persona = models.ForeignKey(Persona, null=True, blank=True, on_delete=models.SET_NULL)
    title = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_message_at = models.DateTimeField(auto_now_add=True)
    # Kept up to date by the services that add and remove messages, so no page counts rows.
    message_count = models.PositiveIntegerField(default=0)
    # The highest seq handed out; the next message takes last_seq + 1.
    last_seq = models.PositiveIntegerField(default=0)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="branches"
    )
    branch_seq = models.PositiveIntegerField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    # Author's note: inserted `author_note_depth` messages from the end, every `frequency` turns.
    author_note = models.TextField(blank=True)
    author_note_depth = models.PositiveSmallIntegerField(default=4)
    author_note_frequency = models.PositiveSmallIntegerField(
        default=1, help_text="Insert every N user messages; 0 never."
    )
    author_note_role = models.CharField(
        max_length=10,
        choices=[("system", "System"), ("user", "User"), ("assistant", "Character")],
        default="system",
    )
    # Group chats: who answers next.
    is_group = models.BooleanField(default=False)
    turn_strategy = models.CharField(
        max_length=10,
        choices=[
            ("mention", "Whoever is mentioned, else in turn"),
            ("natural", "Natural order: mentioned, else by talkativeness"),
            ("list", "In list order"),
            ("manual", "I choose"),
        ],
        default="mention",
    )
    # Global lorebooks attached to this chat only.
    lorebooks = models.ManyToManyField("characters.Lorebook", blank=True, related_name="chats")
    # Reasoning models: their thinking is kept with each reply; this only hides it on the page.
    show_reasoning = models.BooleanField(
        "Show the model's reasoning",
        default=True,
        help_text="Replies of models that think show their reasoning, collapsed, above the reply.",
    )
    # Imported chat metadata (SillyTavern's chat_metadata), kept so an export gives it back.
    metadata = models.JSONField(default=dict, blank=True)
    # SillyTavern presets this chat's prompts follow; empty: the instance's prompt and order.
    context_preset = models.ForeignKey(
        "settings_app.Preset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    instruct_preset = models.ForeignKey(
        "settings_app.Preset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sysprompt_preset = models.ForeignKey(
        "settings_app.Preset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sampler_preset = models.ForeignKey(
        "settings_app.Preset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    chat_preset = models.ForeignKey(
        "settings_app.Preset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A picture behind the messages, re-encoded on upload (chats.services.chat_set_background).
    background = models.ImageField(upload_to="backgrounds/", blank=True)
    # The connection profile this chat's replies use; empty: the defaults (chats.profiles).
    profile = models.ForeignKey(
        ConnectionProfile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ChatSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-last_message_at"]
        indexes = [
            # Chat list: a user's chats, most recent first.
            models.Index(fields=["user", "-last_message_at"], name="chat_user_recent_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(message_count__lte=models.F("last_seq")),
                name="chat_count_within_seq",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Chat {self.code}"

    def get_absolute_url(self) -> str:
        return cached_reverse("chats:detail", args=[self.code])


# The ChatSession columns naming a preset, and the kind of preset each takes.
PRESET_FIELDS = {
    "context_preset": "context",
    "instruct_preset": "instruct",
    "sysprompt_preset": "sysprompt",
    "sampler_preset": "textgen",
    "chat_preset": "openai",
}


class ChatMember(models.Model):
    """A character taking part in a group chat, in speaking order."""

    # No index of its own: chatmember_session_character_uniq starts with session.
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="members", db_index=False)
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveSmallIntegerField(default=0)
    muted = models.BooleanField(default=False)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "character"], name="chatmember_session_character_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.character_id} in {self.session_id}"


class CharacterModelDefault(models.Model):
    """The profile one user's chats with one character use unless the chat names its own.

    Per user, never on the character row (even its owner's): which profiles someone may use is
    theirs alone, so a choice stored on a shared character would name a profile others may not
    have, or let an owner steer other people's chats to a server of their choosing."""

    # No index of its own: charactermodeldefault_user_character_uniq starts with user.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, db_index=False, related_name="+"
    )
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="+")
    profile = models.ForeignKey(ConnectionProfile, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            # Also the index of the lookup when a reply is made (chats.profiles).
            models.UniqueConstraint(
                fields=["user", "character"], name="charactermodeldefault_user_character_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}/{self.character_id}: {self.profile_id}"


class MessageQuerySet(models.QuerySet):
    def for_page(self) -> "MessageQuerySet":
        """The columns a rendered message needs, with its speaker's short columns joined."""
        return self.select_related("character").defer(
            "meta", "client_token", *(f"character__{f}" for f in LONG_FIELDS)
        )

    def in_prompt(self) -> "MessageQuerySet":
        """Messages the model may see: not hidden, not failed."""
        return self.filter(hidden=False).exclude(status=Message.Status.ERROR)


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Character"
        SYSTEM = "system", "System"

    class Status(models.TextChoices):
        COMPLETE = "complete", "Complete"
        STREAMING = "streaming", "Streaming"
        ERROR = "error", "Error"
        INCOMPLETE = "incomplete", "Incomplete"

    # No index of its own: message_session_seq_uniq starts with session.
    session = models.ForeignKey(
        ChatSession, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    speaker = models.CharField(max_length=200, blank=True)
    # Who spoke, in group chats (the chat's character otherwise).
    character = models.ForeignKey(
        Character, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    content = models.TextField(blank=True)
    token_count = models.PositiveIntegerField(default=0)
    # A reasoning model's thinking before the reply (a <think> block or the server's
    # reasoning_content): shown apart, never sent back in a prompt. reasoning_ms is how long it
    # thought, from its first reasoning to its first word of reply.
    reasoning = models.TextField(blank=True)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    reasoning_ms = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True)
    # Bumped by every change; an edit names the version it started from (409 when stale).
    version = models.PositiveIntegerField(default=1)
    hidden = models.BooleanField(default=False, help_text="Kept in the chat, left out of prompts.")
    # Swipes: the active alternative's text is in `content`; all of them are MessageAlternative rows.
    alternative_index = models.PositiveSmallIntegerField(default=0)
    alternative_count = models.PositiveSmallIntegerField(default=0)
    client_token = models.CharField(max_length=64, blank=True)
    # stop, length, stopped (by the user): shown with the message, so not buried in meta.
    finish_reason = models.CharField(max_length=20, blank=True)
    # The model that wrote the active text, and its sampling, as the message's model line shows
    # them (meta has the details; pages do not read meta).
    model_label = models.CharField(max_length=300, blank=True)
    sampling_label = models.CharField(max_length=300, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    # A default, not auto_now_add: imported messages keep the dates they were written.
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]
        constraints = [
            # Also the index every message query uses: a chat's newest page (seq descending),
            # older pages (seq < before), prompt building (newest backwards).
            models.UniqueConstraint(fields=["session", "seq"], name="message_session_seq_uniq"),
            models.CheckConstraint(
                condition=models.Q(role__in=["user", "assistant", "system"]),
                name="message_role_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["complete", "streaming", "error", "incomplete"]),
                name="message_status_valid",
            ),
            # One generation per chat at a time, enforced by the database across workers.
            models.UniqueConstraint(
                fields=["session"],
                condition=models.Q(status="streaming"),
                name="message_one_streaming_per_chat",
            ),
            # A double-click sends one message: the page's idempotency key, once per chat.
            models.UniqueConstraint(
                fields=["session", "client_token"],
                condition=models.Q(client_token__gt=""),
                name="message_client_token_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.role}"

    @property
    def is_streaming(self) -> bool:
        return self.status == self.Status.STREAMING

    @property
    def reasoning_seconds(self) -> str:
        """How long the model thought, as the page says it ("4.2 s")."""
        return f"{(self.reasoning_ms or 0) / 1000:.1f} s"


class MessageAlternative(models.Model):
    """One swipe of a message. Read only when the user moves between swipes."""

    # No index of its own: alternative_message_idx_uniq starts with message.
    message = models.ForeignKey(
        Message, on_delete=models.CASCADE, related_name="alternatives", db_index=False
    )
    index = models.PositiveSmallIntegerField()
    content = models.TextField(blank=True)
    token_count = models.PositiveIntegerField(default=0)
    reasoning = models.TextField(blank=True)
    reasoning_tokens = models.PositiveIntegerField(default=0)
    reasoning_ms = models.PositiveIntegerField(null=True, blank=True)
    meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["index"]
        constraints = [
            # Also the index for "swipe to alternative N of this message".
            models.UniqueConstraint(fields=["message", "index"], name="alternative_message_idx_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.message} alt {self.index}"


class PromptSnapshot(models.Model):
    """Exactly what was sent to the engine for a reply, for the prompt inspector.

    Kept apart from the message so that no page that lists messages ever reads it.
    """

    message = models.OneToOneField(
        Message, on_delete=models.CASCADE, primary_key=True, related_name="prompt_snapshot"
    )
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"prompt of {self.message_id}"


class PersonaLock(models.Model):
    """A user's choice of persona for every new chat with one character (SillyTavern's persona lock);
    it wins over the default persona."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, db_index=False)
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="+")
    persona = models.ForeignKey(Persona, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [
            # One lock per user and character; also the index new chats look the lock up by.
            models.UniqueConstraint(fields=["user", "character"], name="persona_lock_user_character_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.persona} for {self.character}"


# --- long-term memory (chats/memory.py) ----------------------------------------------------------


class ChatMemory(models.Model):
    """A chat's memory settings and the summarizer's bookkeeping; made on first use."""

    session = models.OneToOneField(
        ChatSession, on_delete=models.CASCADE, primary_key=True, related_name="memory"
    )
    enabled = models.BooleanField(
        default=True, help_text="Put pinned facts and recalled memories in prompts."
    )
    share = models.PositiveSmallIntegerField(
        default=20,
        validators=[MinValueValidator(5), MaxValueValidator(60)],
        help_text="Percent of the prompt's budget the memory block may take.",
    )
    # Who writes the summaries: a connection profile (a cheaper model, say), else the chat's engine.
    profile = models.ForeignKey(
        "settings_app.ConnectionProfile", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The oldest message in the last prompt's window: stretches that end before it are summarized.
    window_start = models.PositiveIntegerField(default=0)
    # Stretches up to here have been handed to the queue (so each reply does not queue again).
    queued_through = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"memory of {self.session_id}"


class Memory(models.Model):
    """The summary of one stretch of a chat: messages start_seq..end_seq (a fixed-size block)."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be written"
        WRITTEN = "written", "Written"
        FAILED = "failed", "Failed (retried later)"

    # No index of its own: memory_session_start_uniq starts with session.
    session = models.ForeignKey(
        ChatSession, on_delete=models.CASCADE, related_name="memories", db_index=False
    )
    start_seq = models.PositiveIntegerField()
    end_seq = models.PositiveIntegerField()
    text = models.TextField(blank=True)
    token_count = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # A message it covers changed (edit, delete, hide, swipe) since it was written: left out of
    # prompts until the background rewrite lands.
    stale = models.BooleanField(default=False)
    # Fingerprint of the covered messages (count and versions) when the text was written.
    source_version = models.BigIntegerField(default=0)
    # Group chats: the characters that witnessed every message of the stretch (null: not a group).
    witnesses = models.JSONField(null=True, blank=True)
    edited = models.BooleanField(default=False, help_text="Corrected by hand.")
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["start_seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "start_seq"], name="memory_session_start_uniq"),
        ]

    def __str__(self) -> str:
        return f"memory #{self.start_seq}-{self.end_seq} of {self.session_id}"


class PinnedFact(models.Model):
    """A fact that goes into every prompt of its chat: written by hand or pinned from a message."""

    # No index of its own: pinnedfact_session_idx starts with session.
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="facts", db_index=False)
    text = models.TextField()
    token_count = models.PositiveIntegerField(default=0)
    # The message it was pinned from, by seq (null: written by hand).
    seq = models.PositiveIntegerField(null=True, blank=True)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["session", "id"], name="pinnedfact_session_idx")]

    def __str__(self) -> str:
        return f"fact {self.pk} of {self.session_id}"


class WitnessSpan(models.Model):
    """Group chats: a character saw the messages start_seq .. end_seq - 1 (member and not muted).

    Opened when a character joins or is unmuted, closed when it is muted or removed; what a
    character recalls from outside the context window is limited to its spans.
    """

    # No index of its own: witnessspan_session_idx starts with session.
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="+", db_index=False)
    character = models.ForeignKey(Character, on_delete=models.CASCADE, related_name="+")
    start_seq = models.PositiveIntegerField()
    end_seq = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["session", "character"], name="witnessspan_session_idx")]

    def __str__(self) -> str:
        return f"{self.character_id} saw {self.start_seq}..{self.end_seq or ''} of {self.session_id}"


class LoreEffect(models.Model):
    """A lorebook entry's timed effect (sticky, cooldown) or first match, begun in a chat by the reply
    whose prompt had `position` messages before it. Read with the entries (chats.lore), replaced
    when that reply is generated again."""

    # No index of its own: loreeffect_session_entry_pos_uniq starts with session.
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="+", db_index=False)
    entry = models.ForeignKey("characters.LorebookEntry", on_delete=models.CASCADE, related_name="+")
    # The reply that began it: deleting the reply (or everything after a message) ends it too.
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()

    class Meta:
        constraints = [
            # Also the index of the entries query's "latest effect before this reply" subquery, and
            # of the delete of a regenerated reply's effects.
            models.UniqueConstraint(
                fields=["session", "entry", "position"], name="loreeffect_session_entry_pos_uniq"
            ),
        ]
        indexes = [
            # Generating a reply again replaces what it began (position at or after its own).
            models.Index(fields=["session", "position"], name="loreeffect_session_pos_idx"),
        ]

    def __str__(self) -> str:
        return f"entry {self.entry_id} in chat {self.session_id} from message {self.position}"
