"""The character editor's form: every card field, with the importer's size limits and clear errors.

A field the user left alone keeps its stored value exactly (browsers send text areas back with
CRLF line ends and drop line breaks from one-line inputs), so an imported card, edited and
exported, differs from the original only where the user changed it.
"""

from __future__ import annotations

from django import forms
from django.conf import settings

from . import cards
from .models import Character

# The card's text fields, in the order the editor groups them, with their labels.
TEXT_FIELDS = {
    "description": "Description",
    "personality": "Personality",
    "scenario": "Scenario",
    "first_message": "First message",
    "example_dialogue": "Example dialogue",
    "system_prompt": "System prompt",
    "post_history_instructions": "Post-history instructions",
    "creator_notes": "Creator's notes",
}
LINE_FIELDS = {"name": 200, "nickname": 200, "creator": 200, "character_version": 100}
ROLES = [("system", "System"), ("user", "User"), ("assistant", "Character")]
DEPTH_DEFAULTS = {"prompt": "", "depth": 4, "role": "system"}
TALKATIVENESS_DEFAULT = 0.5
MAX_DEPTH = 10_000


def field_limit() -> int:
    return settings.RPCHAT["MAX_CARD_FIELD_CHARS"]


def _too_long(label: str, length: int, limit: int) -> str:
    return f"{label} is {length:,} characters long; the limit is {limit:,}. Nothing was saved."


def same_text(stored: str | None, sent: str, *, multiline: bool) -> bool:
    """Whether the text sent back is the stored text as a browser returns it unchanged."""
    stored = stored or ""
    if multiline:
        return _lf(stored) == _lf(sent)
    return stored.replace("\r", "").replace("\n", "") == sent


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def depth_prompt_of(extensions: dict) -> dict:
    """The character's note as the editor shows it (SillyTavern's defaults where unset)."""
    raw = extensions.get("depth_prompt") if isinstance(extensions, dict) else None
    raw = raw if isinstance(raw, dict) else {}
    prompt = raw.get("prompt")
    try:
        depth = int(raw.get("depth", DEPTH_DEFAULTS["depth"]))
    except (TypeError, ValueError):
        depth = DEPTH_DEFAULTS["depth"]
    role = raw.get("role") if raw.get("role") in dict(ROLES) else DEPTH_DEFAULTS["role"]
    return {"prompt": prompt if isinstance(prompt, str) else "", "depth": depth, "role": role}


def talkativeness_of(extensions: dict) -> float:
    raw = extensions.get("talkativeness") if isinstance(extensions, dict) else None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return TALKATIVENESS_DEFAULT
    return value if 0 <= value <= 1 else TALKATIVENESS_DEFAULT


def tags_text(names: list[str]) -> str:
    return ", ".join(names)


class CharacterForm(forms.Form):
    name = forms.CharField(max_length=None, strip=False, label="Name")
    nickname = forms.CharField(
        required=False, strip=False, label="Nickname", help_text="What {{char}} becomes in the text, if set."
    )
    description = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 8}))
    personality = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 3}))
    scenario = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 3}))
    first_message = forms.CharField(
        required=False, strip=False, label="First message", widget=forms.Textarea(attrs={"rows": 5})
    )
    example_dialogue = forms.CharField(
        required=False,
        strip=False,
        label="Example dialogue",
        help_text="Each example starts with <START>.",
        widget=forms.Textarea(attrs={"rows": 6}),
    )
    system_prompt = forms.CharField(
        required=False,
        strip=False,
        label="System prompt",
        help_text="Replaces the site's system prompt for this character; {{original}} keeps it.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    post_history_instructions = forms.CharField(
        required=False,
        strip=False,
        label="Post-history instructions",
        help_text="Sent after the chat history, just before the reply.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    creator_notes = forms.CharField(
        required=False,
        strip=False,
        label="Creator's notes",
        help_text="Shown on the character's page; never sent to the model.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    creator = forms.CharField(required=False, strip=False, label="Creator")
    character_version = forms.CharField(required=False, strip=False, label="Version")
    tags = forms.CharField(required=False, strip=False, label="Tags", help_text="Separated by commas.")
    depth_prompt_prompt = forms.CharField(
        required=False,
        strip=False,
        label="Character's note",
        help_text="Inserted into the chat history at the depth below, on every reply.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    depth_prompt_depth = forms.IntegerField(
        min_value=0,
        max_value=MAX_DEPTH,
        label="Depth",
        help_text="Messages from the end (0: after the last).",
    )
    depth_prompt_role = forms.ChoiceField(choices=ROLES, label="Role")
    talkativeness = forms.FloatField(
        min_value=0,
        max_value=1,
        label="Talkativeness",
        help_text="In group chats: how likely this character speaks up unasked (0 to 1).",
        widget=forms.NumberInput(attrs={"step": "0.05"}),
    )
    visibility = forms.ChoiceField(choices=Character.Visibility.choices, label="Who sees it")
    avatar = forms.FileField(
        required=False,
        label="Picture",
        help_text="PNG, JPEG or WebP. Cropped to the card's 2:3 frame.",
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
    )
    revision = forms.IntegerField(min_value=0, widget=forms.HiddenInput, required=False)

    def __init__(self, *args, greetings: list[str] | None = None, editing: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        # An edit must name the version it edited, or a stale page could not be told apart.
        self.fields["revision"].required = editing
        self.fields["revision"].error_messages["required"] = (
            "This form does not say which version it edited; reload the editor."
        )
        self.greetings = list(greetings or [])
        self.greeting_errors: dict[int, str] = {}

    @classmethod
    def initial_for(cls, character: Character, tag_names: list[str]) -> dict:
        ext = character.extensions if isinstance(character.extensions, dict) else {}
        note = depth_prompt_of(ext)
        return {
            **{name: getattr(character, name) for name in (*TEXT_FIELDS, *LINE_FIELDS)},
            "tags": tags_text(tag_names),
            "depth_prompt_prompt": note["prompt"],
            "depth_prompt_depth": note["depth"],
            "depth_prompt_role": note["role"],
            "talkativeness": talkativeness_of(ext),
            "visibility": character.visibility,
            "revision": character.revision,
        }

    def clean(self):
        data = super().clean()
        limit = field_limit()
        for name, label in TEXT_FIELDS.items():
            text = data.get(name) or ""
            if len(text) > limit:
                self.add_error(name, _too_long(label, len(text), limit))
        if len(data.get("depth_prompt_prompt") or "") > limit:
            self.add_error(
                "depth_prompt_prompt",
                _too_long("The character's note", len(data["depth_prompt_prompt"]), limit),
            )
        for name, most in LINE_FIELDS.items():
            text = data.get(name) or ""
            if len(text) > most:
                self.add_error(name, _too_long(self.fields[name].label, len(text), most))
        if "name" in data and not data["name"].strip():
            self.add_error("name", "A character needs a name.")
        tags = cards.clean_tags((data.get("tags") or "").split(","))
        if len(tags) > settings.RPCHAT["MAX_CARD_TAGS"]:
            self.add_error(
                "tags", f"{len(tags):,} tags; at most {settings.RPCHAT['MAX_CARD_TAGS']:,} fit on a card."
            )
        data["tag_list"] = tags
        for i, text in enumerate(self.greetings):
            if len(text) > limit:
                self.greeting_errors[i] = _too_long(f"Greeting {i + 1}", len(text), limit)
            if "\x00" in text:
                self.greeting_errors[i] = "Null characters are not allowed."
        if self.greeting_errors:
            raise forms.ValidationError("A greeting below needs fixing.")
        return data

    def changed_values(self, character: Character | None, tag_names: list[str]) -> dict:
        """The columns (and "tags") whose values the user changed; for a new character, all of them.

        Values the user did not touch are left out, so the stored value (and its exact form)
        stays: the extensions dict changes only in the keys the editor shows.
        """
        data = self.cleaned_data
        stored = character or Character()
        out: dict = {}
        for name in TEXT_FIELDS:
            if character is None or not same_text(getattr(stored, name), data[name], multiline=True):
                out[name] = _lf(data[name])
        for name in LINE_FIELDS:
            if character is None or not same_text(getattr(stored, name), data[name], multiline=False):
                out[name] = data[name]
        greetings = list(stored.alternate_greetings or []) if character is not None else []
        if len(greetings) != len(self.greetings) or not all(
            isinstance(old, str) and same_text(old, new, multiline=True)
            for old, new in zip(greetings, self.greetings, strict=False)
        ):
            out["alternate_greetings"] = [_lf(g) for g in self.greetings if g.strip()]
        if character is None or data["visibility"] != stored.visibility:
            out["visibility"] = data["visibility"]
        extensions = self._extensions(stored.extensions if character is not None else {})
        if extensions is not None:
            out["extensions"] = extensions
        # Tags are a set matched case-insensitively (the V2 spec): "a, b" and "B, a" are the same.
        if character is None or {t.lower() for t in data["tag_list"]} != {t.lower() for t in tag_names}:
            out["tags"] = data["tag_list"]
        return out

    def _extensions(self, extensions) -> dict | None:
        """The extensions with the character's note and talkativeness as edited, or None when
        the user changed neither (every other key is kept as it is)."""
        data = self.cleaned_data
        ext = dict(extensions) if isinstance(extensions, dict) else {}
        changed = False
        note = depth_prompt_of(ext)
        sent = {
            "prompt": data["depth_prompt_prompt"],
            "depth": data["depth_prompt_depth"],
            "role": data["depth_prompt_role"],
        }
        if not (
            same_text(note["prompt"], sent["prompt"], multiline=True)
            and note["depth"] == sent["depth"]
            and note["role"] == sent["role"]
        ):
            old = ext.get("depth_prompt") if isinstance(ext.get("depth_prompt"), dict) else {}
            ext["depth_prompt"] = {**old, **sent, "prompt": _lf(sent["prompt"])}
            changed = True
        if abs(talkativeness_of(ext) - data["talkativeness"]) > 1e-9:
            ext["talkativeness"] = round(data["talkativeness"], 4)
            changed = True
        return ext if changed else None
