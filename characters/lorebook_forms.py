"""Forms of the lorebook editor: a book's settings and one entry, with its keys as lists."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator

from . import lorekeys
from .lorebook_edit import POSITIONS, ROLES
from .models import Lorebook, LorebookEntry

MAX_KEYS = 100
MAX_KEY_CHARS = 10_000


class KeyListField(forms.CharField):
    """Keys typed one per line (the page turns the box into a tag input); a list once cleaned."""

    widget = forms.Textarea(attrs={"rows": 2, "data-tag-input": "", "spellcheck": "false"})

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", False)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(str(v) for v in value)
        return value

    def to_python(self, value) -> list[str]:
        text = super().to_python(value) or ""
        keys = [line.strip() for line in text.splitlines()]
        return [key for key in keys if key]

    def validate(self, value: list[str]) -> None:
        super().validate(value)
        if len(value) > MAX_KEYS:
            raise forms.ValidationError(f"At most {MAX_KEYS} keys; this list has {len(value)}.")
        for key in value:
            if len(key) > MAX_KEY_CHARS:
                raise forms.ValidationError(f"A key may be at most {MAX_KEY_CHARS:,} characters long.")


def _field_limit() -> int:
    return settings.RPCHAT["MAX_CARD_FIELD_CHARS"]


def limit_length(field: forms.CharField, limit: int) -> None:
    """A length limit set after the field was made (from settings read at request time)."""
    field.max_length = limit
    field.validators.append(MaxLengthValidator(limit))
    field.widget.attrs["maxlength"] = str(limit)


def limit_range(field: forms.IntegerField, low: int, high: int) -> None:
    """Bounds for a model field's form field (the database's own range is wider than sense)."""
    field.validators += [MinValueValidator(low), MaxValueValidator(high)]
    field.widget.attrs.update(min=str(low), max=str(high))


class LorebookForm(forms.ModelForm):
    version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = Lorebook
        fields = ["name", "description", "scan_depth", "token_budget", "recursive_scanning"]
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}
        labels = {
            "scan_depth": "Scan depth (messages)",
            "token_budget": "Token budget",
            "recursive_scanning": "Entries can trigger other entries",
        }
        help_texts = {
            "scan_depth": "How many of the newest messages are searched for keys.",
            "token_budget": "The most tokens this book's entries may take in one prompt.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["name"].required = True
        limit_length(self.fields["description"], _field_limit())
        limit_range(self.fields["scan_depth"], 0, 1000)
        limit_range(self.fields["token_budget"], 0, 1_000_000)
        if not self.is_bound:
            self.initial["version"] = self.instance.version


class EntryForm(forms.ModelForm):
    """One entry; the settings SillyTavern keeps outside the V2 fields go to `extensions`."""

    keys = KeyListField(label="Keys", help_text="One per line. /pattern/flags for a regular expression.")
    secondary_keys = KeyListField(label="Secondary keys", help_text="Used with the logic below.")
    st_position = forms.TypedChoiceField(label="Position", choices=POSITIONS, coerce=int, initial=0)
    depth = forms.IntegerField(label="Depth", min_value=0, max_value=10_000, initial=4, required=False)
    role = forms.TypedChoiceField(label="Role at depth", choices=ROLES, coerce=int, initial=0)
    probability = forms.IntegerField(label="Probability (%)", min_value=0, max_value=100, initial=100)
    group = forms.CharField(label="Inclusion group", max_length=200, required=False)
    group_weight = forms.IntegerField(label="Group weight", min_value=1, max_value=10_000, initial=100)
    group_override = forms.BooleanField(label="Prioritize in its group", required=False)
    sticky = forms.IntegerField(label="Sticky (messages)", min_value=0, max_value=10_000, required=False)
    cooldown = forms.IntegerField(label="Cooldown (messages)", min_value=0, max_value=10_000, required=False)
    delay = forms.IntegerField(label="Delay (messages)", min_value=0, max_value=10_000, required=False)
    scan_depth = forms.IntegerField(
        label="Scan depth", min_value=0, max_value=1000, required=False, help_text="Empty: the book's."
    )
    match_whole_words = forms.BooleanField(label="Whole words only", required=False)
    disabled = forms.BooleanField(label="Disabled", required=False)
    version = forms.IntegerField(widget=forms.HiddenInput, required=False)

    # Form field -> extensions key (SillyTavern's character_book names).
    EXTENSION_FIELDS = {
        "st_position": "position",
        "depth": "depth",
        "role": "role",
        "probability": "probability",
        "group": "group",
        "group_weight": "group_weight",
        "group_override": "group_override",
        "sticky": "sticky",
        "cooldown": "cooldown",
        "delay": "delay",
        "scan_depth": "scan_depth",
        "match_whole_words": "match_whole_words",
    }

    # What an entry without the key behaves as.
    EXTENSION_DEFAULTS = {
        "depth": 4,
        "role": 0,
        "probability": 100,
        "group": "",
        "group_weight": 100,
        "group_override": False,
        "sticky": None,
        "cooldown": None,
        "delay": None,
        "scan_depth": None,
        "match_whole_words": False,
    }

    class Meta:
        model = LorebookEntry
        fields = [
            "comment",
            "keys",
            "secondary_keys",
            "selective_logic",
            "content",
            "constant",
            "case_sensitive",
            "use_regex",
            "insertion_order",
        ]
        labels = {
            "comment": "Title",
            "selective_logic": "Secondary key logic",
            "constant": "Always on (no keys needed)",
            "case_sensitive": "Case-sensitive keys",
            "use_regex": "Keys are regular expressions",
            "insertion_order": "Order",
        }
        help_texts = {"insertion_order": "Higher numbers go nearer the end of the prompt."}
        widgets = {
            "comment": forms.TextInput(),
            "content": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("prefix", f"entry-{kwargs['instance'].pk or 'new'}")
        super().__init__(*args, **kwargs)
        limit_length(self.fields["content"], _field_limit())
        limit_length(self.fields["comment"], 10_000)
        limit_range(self.fields["insertion_order"], -1_000_000, 1_000_000)
        if not self.is_bound:
            ext = self.instance.extensions or {}
            for name, key in self.EXTENSION_FIELDS.items():
                if ext.get(key) is not None:
                    self.initial[name] = ext[key]
            if "position" not in ext:
                self.initial["st_position"] = 0 if self.instance.position == "before_char" else 1
            if "probability" not in ext:
                self.initial["probability"] = 100
            self.initial["disabled"] = not self.instance.enabled
            self.initial["version"] = self.instance.version

    def clean(self):
        cleaned = super().clean()
        keys = cleaned.get("keys") or []
        if not cleaned.get("constant") and not keys and "keys" not in self.errors:
            self.add_error("keys", "Give at least one key, or make the entry always on.")
        if cleaned.get("use_regex") and "keys" not in self.errors:
            probe = LorebookEntry(
                keys=keys,
                secondary_keys=cleaned.get("secondary_keys") or [],
                selective=bool(cleaned.get("secondary_keys")),
                use_regex=True,
                case_sensitive=bool(cleaned.get("case_sensitive")),
            )
            for key, why in lorekeys.problems(probe):
                field = "keys" if key in keys else "secondary_keys"
                self.add_error(field, f"The regular expression {key} cannot be used: {why}.")
        return cleaned

    def save(self, commit: bool = True) -> LorebookEntry:
        entry = super().save(commit=False)
        cleaned = self.cleaned_data
        entry.enabled = not cleaned["disabled"]
        entry.selective = bool(cleaned["secondary_keys"])
        entry.position = "before_char" if cleaned["st_position"] == 0 else "after_char"
        ext = dict(entry.extensions or {})
        defaults = {**self.EXTENSION_DEFAULTS, "position": 0 if entry.position == "before_char" else 1}
        for name, key in self.EXTENSION_FIELDS.items():
            value = cleaned.get(name)
            if value == "" and defaults.get(key) is None:
                value = None
            # A setting the book never had stays out of it while it has its default, so an
            # exported book changes only where the user changed it.
            if key in ext and ext[key] is None and value in (None, False):
                continue  # SillyTavern's "use the global setting" stays as it was
            if key in ext or value != defaults.get(key):
                ext[key] = value
        if cleaned["probability"] < 100:
            ext["useProbability"] = True
        # Columns SillyTavern also keeps in extensions: one truth, in both places.
        for key, value in (
            ("selectiveLogic", entry.selective_logic),
            ("case_sensitive", entry.case_sensitive),
        ):
            if (key in ext and ext[key] is not None) or value:
                ext[key] = value
        entry.extensions = ext
        if commit:
            entry.save()
        return entry
