from django import forms

from characters.models import Character, Lorebook
from settings_app.forms import ProfileChoiceField
from settings_app.models import Persona, Preset

from . import profiles
from .models import PRESET_FIELDS, ChatSession, PersonaLock


class ChatSettingsForm(forms.ModelForm):
    class Meta:
        model = ChatSession
        fields = [
            "title",
            "persona",
            "author_note",
            "author_note_depth",
            "author_note_frequency",
            "author_note_role",
            "turn_strategy",
            "show_reasoning",
            *PRESET_FIELDS,
            "profile",
        ]
        widgets = {"author_note": forms.Textarea(attrs={"rows": 3})}
        labels = {
            "persona": "Persona (who you are in this chat)",
            "author_note_depth": "Insert the note this many messages from the end",
            "author_note_frequency": "Insert it every N of your messages (0: never)",
            "author_note_role": "Send the note as",
            "turn_strategy": "In a group, who answers next",
            "context_preset": "Context template (text completions)",
            "instruct_preset": "Instruct template (text completions)",
            "sysprompt_preset": "System prompt",
            "sampler_preset": "Sampler preset",
            "chat_preset": "Chat-completion preset (chat completions)",
        }
        # The label says it all; the model's help text would say it a second time.
        help_texts = {"author_note_frequency": ""}

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["persona"].queryset = Persona.objects.filter(user=user)
        self.fields["persona"].empty_label = "None (use my username)"
        visible = Preset.objects.visible_to(user).only("id", "code", "name", "kind").order_by("name")
        for name, kind in PRESET_FIELDS.items():
            field = self.fields[name]
            field.queryset = visible.filter(kind=kind)
            field.to_field_name = "code"
            field.empty_label = "None (the instance's default)"
        self.fields["chat_preset"].help_text = (
            "SillyTavern presets you imported on the Presets page (or the instance shares). A chat-completion "
            "preset's prompt order builds chat-completion prompts; context and instruct templates build "
            "text-completion ones."
        )
        self.fields["lorebooks"] = forms.ModelMultipleChoiceField(
            queryset=Lorebook.objects.filter(owner=user, character__isnull=True),
            # By code, as everywhere public: an integer key out of the database's range would
            # reach the pk__in query of the field's check and fail there.
            to_field_name="code",
            required=False,
            widget=forms.CheckboxSelectMultiple,
            label="Global lorebooks in this chat",
            initial=self.instance.lorebooks.all() if self.instance.pk else None,
        )
        character = self.instance.character
        self.fields["lock_persona"] = forms.BooleanField(
            required=False,
            label=f"Always use this persona in new chats with {character.name}",
            initial=bool(self.instance.persona_id)
            and PersonaLock.objects.filter(
                user=user, character=character, persona_id=self.instance.persona_id
            ).exists(),
        )
        self.order_fields(["title", "persona", "lock_persona"])
        self._add_model_fields(user)

    def _add_model_fields(self, user) -> None:
        """The chat's model and the user's default for its character, among their profiles."""
        session = self.instance
        character = session.character
        current = profiles.resolve_profile(user=user, character=character, chat_profile_id=None)
        self.fields["profile"] = ProfileChoiceField(
            user=user,
            label="Model for this chat",
            empty_label="Default: "
            + (current.profile.label if current.profile else "the built-in demo model")
            + f" ({current.source})",
        )
        # By code, as the choices are (the ModelForm's initial is the key).
        self.initial["profile"] = session.profile.code if session.profile_id else None
        default = profiles.character_default(user=user, character=character)
        self.initial["character_default"] = default.profile.code if default else None
        self.fields["character_default"] = ProfileChoiceField(
            user=user,
            label=f"Your default model for {character.name}",
            empty_label="No default for this character (use your own default)",
            help_text="For your new and existing chats with this character that have no model of their own. "
            "Only you see it.",
        )
        # The two model choices side by side.
        order = [name for name in self.fields if name != "character_default"]
        order.insert(order.index("profile") + 1, "character_default")
        self.order_fields(order)

    def save(self, commit=True):
        session = super().save(commit=commit)
        if commit:
            profiles.character_default_set(
                user=session.user, character=session.character, profile=self.cleaned_data["character_default"]
            )
        return session


class AddMemberForm(forms.Form):
    character = forms.ModelChoiceField(queryset=Character.objects.none(), label="Add a character")

    def __init__(self, *args, user, session, **kwargs):
        super().__init__(*args, **kwargs)
        present = [session.character_id, *session.members.values_list("character_id", flat=True)]
        self.fields["character"].queryset = (
            Character.objects.visible_to(user).exclude(pk__in=present).only("id", "name").order_by("name")
        )


class MemberActionForm(forms.Form):
    """Mute, unmute or remove one character of a group chat, named by its key."""

    action = forms.ChoiceField(choices=[("mute", "Mute"), ("unmute", "Unmute"), ("remove", "Remove")])
    # Bounded by what the database's keys hold: a larger number would fail in the query.
    character_id = forms.IntegerField(min_value=1, max_value=2**63 - 1)
