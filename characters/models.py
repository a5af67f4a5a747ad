import uuid

from django.conf import settings
from django.db import models
from django.db.models.expressions import Col
from django.db.models.functions import Lower, Substr
from django.db.models.lookups import Exact

from core.urlcache import cached_reverse

# Columns a gallery card shows; everything else (long card text) stays deferred on list pages.
# avatar too: a card without a thumbnail links to its picture when it has an avatar, and a deferred
# avatar would be read back one character at a time.
LIST_FIELDS = ("id", "code", "name", "label", "thumbnail", "avatar", "owner_id", "updated_at")
# How much of the description a list reads for a card's summary (the gallery shows 140 characters
# of it once Markdown is dropped): a bounded prefix, never the whole text.
SUMMARY_CHARS = 1000
# Card text no list or chat page shows; deferred when a character is joined to another query.
LONG_FIELDS = (
    "description",
    "personality",
    "scenario",
    "first_message",
    "alternate_greetings",
    "example_dialogue",
    "system_prompt",
    "post_history_instructions",
    "creator_notes",
    "extensions",
    "card_extra",
)


def _seen_by(user) -> models.Q:
    """Public, or owned by `user`, written so that cachalot caches the query (see below)."""
    seen = models.Q(visibility=Character.Visibility.PUBLIC)
    if user.is_authenticated:
        # The owner column itself: a filter through the relation (owner=, even owner_id=)
        # leaves auth_user among the query's tables, and cachalot caches no query reading it.
        owner = Col(Character._meta.db_table, Character._meta.get_field("owner"))
        seen |= models.Q(Exact(owner, user.pk))
    return seen


class TagQuerySet(models.QuerySet):
    def visible_to(self, user) -> "TagQuerySet":
        """Tags carried by a character `user` may see (the rule of CharacterQuerySet.visible_to:
        active, not deleted, public or their own), for the gallery's tag filter: another user's
        private characters and deleted ones add none."""
        characters = Character.objects.filter(_seen_by(user), is_active=True, deleted_at__isnull=True)
        # IN rather than EXISTS: cachalot caches the one and not the other.
        carried = Character.tags.through.objects.filter(character__in=characters).values("tag_id")
        return self.filter(pk__in=carried)


class Tag(models.Model):
    name = models.CharField(max_length=60)

    objects = TagQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            # Tags are matched case-insensitively (V2 spec), so "Fantasy" and "fantasy" are one.
            models.UniqueConstraint(Lower("name"), name="tag_name_ci_uniq"),
        ]

    def __str__(self) -> str:
        return self.name


class CharacterQuerySet(models.QuerySet):
    def visible_to(self, user) -> "CharacterQuerySet":
        """Active characters the user may see: public ones and their own."""
        qs = self.filter(is_active=True, deleted_at__isnull=True)
        if user.is_authenticated:
            return qs.filter(models.Q(visibility=Character.Visibility.PUBLIC) | models.Q(owner=user))
        return qs.filter(visibility=Character.Visibility.PUBLIC)

    def labels_visible_to(self, user, *, limit: int = 30):
        """The labels of the characters `user` may see, for the gallery's filter. Cached by cachalot
        (until a character changes): it reads every visible character's label."""
        return (
            self.filter(_seen_by(user), is_active=True, deleted_at__isnull=True)
            .exclude(label="")
            .order_by("label")
            .values_list("label", flat=True)
            .distinct()[:limit]
        )

    def for_list(self) -> "CharacterQuerySet":
        """Only the columns a gallery card needs, the description's first SUMMARY_CHARS characters
        as `description_start`, with tags in one extra query."""
        return (
            self.only(*LIST_FIELDS)
            .annotate(description_start=Substr("description", 1, SUMMARY_CHARS))
            .prefetch_related(models.Prefetch("tags", queryset=Tag.objects.only("id", "name")))
        )


class Character(models.Model):
    class Visibility(models.TextChoices):
        PUBLIC = "public", "Everyone on this instance"
        PRIVATE = "private", "Only the owner"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # No index of its own: character_owner_hash_idx starts with owner.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        db_index=False,
        help_text="Empty for characters the instance provides to everyone.",
    )
    visibility = models.CharField(max_length=10, choices=Visibility.choices, default=Visibility.PRIVATE)
    # The card's fields (V2 names in comments where ours differ).
    name = models.CharField(max_length=200)
    nickname = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    personality = models.TextField(blank=True)
    scenario = models.TextField(blank=True)
    first_message = models.TextField(blank=True)  # first_mes
    alternate_greetings = models.JSONField(default=list, blank=True)
    example_dialogue = models.TextField(blank=True)  # mes_example
    system_prompt = models.TextField(blank=True)
    post_history_instructions = models.TextField(blank=True)
    creator_notes = models.TextField(blank=True)
    creator = models.CharField(max_length=200, blank=True)
    character_version = models.CharField(max_length=100, blank=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="characters")
    # The strategy's examples: a free label to group characters by, and a switch to hide one.
    label = models.CharField(max_length=60, blank=True, db_default="", default="")
    is_active = models.BooleanField(default=True)
    # Kept verbatim so an exported card gives back what was imported.
    extensions = models.JSONField(default=dict, blank=True)
    card_extra = models.JSONField(default=dict, blank=True, help_text="Unknown card keys, kept for export.")
    avatar = models.ImageField(upload_to="avatars/", blank=True)
    # Made once when the avatar is set; list pages never touch the full image.
    thumbnail = models.ImageField(upload_to="thumbnails/", blank=True)
    source_hash = models.CharField(max_length=64, blank=True)
    # The version the editor last saved (characters.revisions): a save names the version it edited
    # and is refused when another save came first; a chat remembers the version it started with.
    revision = models.PositiveIntegerField(default=1, editable=False)
    # Global lorebooks this character always brings into its chats.
    lorebooks = models.ManyToManyField("Lorebook", blank=True, related_name="attached_characters")
    # Soft delete: hidden everywhere at once, purged by `manage.py prune` after a grace period.
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CharacterQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [
            # The strategy's composite: gallery filtered by label, ordered by name.
            models.Index(fields=["label", "name"], name="character_label_name_idx"),
            # Gallery default listing (visible_to(), ordered by name, id). Partial, because Django
            # writes filter(is_active=True) as a bare "is_active", which SQLite cannot match to an
            # index column; it does match the same condition on a partial index. Checked by
            # `manage.py explain_queries` ("gallery: first page").
            models.Index(
                fields=["name", "id"],
                name="character_gallery_name_idx",
                condition=models.Q(is_active=True, deleted_at__isnull=True),
            ),
            # The gallery's two branches (characters.search.GalleryQuery): public characters by
            # name, and one owner's by name, each read in order and cut at the page.
            models.Index(
                fields=["visibility", "name", "id"],
                name="character_public_name_idx",
                condition=models.Q(is_active=True, deleted_at__isnull=True),
            ),
            models.Index(
                fields=["owner", "name", "id"],
                name="character_owner_name_idx",
                condition=models.Q(is_active=True, deleted_at__isnull=True),
            ),
            # Card import skips a card already imported by this owner (content hash).
            models.Index(fields=["owner", "source_hash"], name="character_owner_hash_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(visibility__in=["public", "private"]),
                name="character_visibility_valid",
            ),
            models.CheckConstraint(condition=~models.Q(name=""), name="character_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return cached_reverse("characters:detail", args=[self.code])

    @property
    def display_name(self) -> str:
        """What {{char}} becomes: the V3 nickname when set."""
        return self.nickname or self.name

    def greetings(self) -> list[str]:
        """The first message and the alternate greetings, in swipe order, empty ones dropped."""
        greetings = [self.first_message] if self.first_message else []
        greetings += [g for g in self.alternate_greetings if isinstance(g, str) and g.strip()]
        return greetings


class Lorebook(models.Model):
    """A set of entries: a character's embedded book, or a global one a chat can attach."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    character = models.OneToOneField(
        Character, null=True, blank=True, on_delete=models.CASCADE, related_name="lorebook"
    )
    name = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    scan_depth = models.PositiveIntegerField(default=4)
    token_budget = models.PositiveIntegerField(default=512)
    recursive_scanning = models.BooleanField(default=False)
    extensions = models.JSONField(default=dict, blank=True)
    # Personas that bring this book into every chat they are used in.
    personas = models.ManyToManyField("settings_app.Persona", blank=True, related_name="lorebooks")
    # Bumped by every save in the editor; a form made from an older version is refused (two tabs).
    version = models.PositiveIntegerField(default=1)
    # The imported file's format, its keys without a column here, and which keys it left out, so
    # an export gives the file back (characters/cards.py); also the import's content hash.
    book_extra = models.JSONField(
        default=dict, blank=True, help_text="Unknown keys of the imported book, kept for export."
    )
    # The version the last recorded save made (characters.revisions), for stale-save checks.
    revision = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name or (f"{self.character} (lorebook)" if self.character_id else "Lorebook")


class LorebookEntry(models.Model):
    class Position(models.TextChoices):
        BEFORE_CHAR = "before_char", "Before the character"
        AFTER_CHAR = "after_char", "After the character"

    class Logic(models.IntegerChoices):
        # SillyTavern's selectiveLogic numbering.
        AND_ANY = 0, "Primary and any secondary key"
        NOT_ALL = 1, "Primary and not all secondary keys"
        NOT_ANY = 2, "Primary and no secondary key"
        AND_ALL = 3, "Primary and all secondary keys"

    # No index of its own: lore_book_enabled_order_idx starts with lorebook.
    lorebook = models.ForeignKey(Lorebook, on_delete=models.CASCADE, related_name="entries", db_index=False)
    uid = models.CharField(max_length=100, blank=True, help_text="The entry's id in its source.")
    name = models.CharField(max_length=200, blank=True)
    comment = models.TextField(blank=True)
    keys = models.JSONField(default=list, blank=True)
    secondary_keys = models.JSONField(default=list, blank=True)
    content = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    constant = models.BooleanField(default=False)
    selective = models.BooleanField(default=False)
    selective_logic = models.PositiveSmallIntegerField(choices=Logic.choices, default=Logic.AND_ANY)
    case_sensitive = models.BooleanField(default=False)
    use_regex = models.BooleanField(default=False)
    insertion_order = models.IntegerField(default=100)
    priority = models.IntegerField(default=10)
    position = models.CharField(max_length=20, choices=Position.choices, default=Position.BEFORE_CHAR)
    extensions = models.JSONField(default=dict, blank=True)
    # Bumped by every save in the editor; a form made from an older version is refused (two tabs).
    version = models.PositiveIntegerField(default=1)
    entry_extra = models.JSONField(
        default=dict, blank=True, help_text="Unknown keys of the imported entry, kept for export."
    )

    class Meta:
        verbose_name_plural = "lorebook entries"
        ordering = ["insertion_order", "id"]
        indexes = [
            # Prompt building reads a book's enabled entries in insertion order.
            models.Index(
                fields=["lorebook", "enabled", "insertion_order"], name="lore_book_enabled_order_idx"
            ),
        ]

    def __str__(self) -> str:
        # SillyTavern shows the comment as an entry's title.
        return self.name or self.comment or ", ".join(self.keys[:3]) or f"entry {self.pk}"


class Revision(models.Model):
    """One recorded save of a character or a lorebook: who, when, and only what changed.

    `changes` holds, for a character, {"fields": {name: [old, new]}}; for a lorebook also
    {"entries": {"added": {id: values}, "removed": {id: values}, "changed": {id: {name: [old, new]}}}}.
    Written and read by characters.revisions, which documents the format.
    """

    character = models.ForeignKey(
        Character, null=True, blank=True, on_delete=models.CASCADE, related_name="revisions", db_index=False
    )
    lorebook = models.ForeignKey(
        Lorebook, null=True, blank=True, on_delete=models.CASCADE, related_name="revisions", db_index=False
    )
    # The object's `revision` after this save.
    number = models.PositiveIntegerField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # What the History list shows without reading `changes` ("description, 2 greetings").
    summary = models.CharField(max_length=300, blank=True)
    # Set when this save brought back an earlier version.
    restored_from = models.PositiveIntegerField(null=True, blank=True)
    changes = models.JSONField(default=dict)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(character__isnull=True, lorebook__isnull=False)
                | models.Q(character__isnull=False, lorebook__isnull=True),
                name="revision_one_object",
            ),
            # Also the index of History pages and restores (an object's revisions by number).
            models.UniqueConstraint(fields=["character", "number"], name="revision_character_number_uniq"),
            models.UniqueConstraint(fields=["lorebook", "number"], name="revision_lorebook_number_uniq"),
        ]

    def __str__(self) -> str:
        return f"version {self.number}"
