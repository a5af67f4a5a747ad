from urllib.parse import urlsplit

from django import forms
from django.contrib.auth.forms import UserCreationForm

from .egress import is_public, literal_address
from .models import ConnectionProfile, Persona, SiteSettings, UserPreferences

NOT_AVAILABLE = "That model is not available to you. Pick one from the list."
# Own profiles one user may have: enough for every service they use, bounded like every user input.
MAX_OWN_PROFILES = 20


class PersonaForm(forms.ModelForm):
    picture = forms.FileField(
        required=False,
        label="Picture",
        help_text="PNG, JPEG or WebP; cropped to the card's 2:3 frame.",
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
    )
    remove_picture = forms.BooleanField(required=False, label="Remove the picture")

    class Meta:
        model = Persona
        fields = ["name", "description", "is_default"]
        widgets = {"description": forms.Textarea(attrs={"rows": 4})}
        labels = {"is_default": "Use this persona for new chats"}
        help_texts = {
            "name": "What {{user}} becomes in prompts and cards.",
            "description": "What the model knows about you (sent with every prompt).",
        }


class SignupForm(UserCreationForm):
    username = forms.CharField(max_length=150, help_text="Letters, digits and @/./+/-/_ only.")


class ThemeForm(forms.ModelForm):
    class Meta:
        model = UserPreferences
        fields = ["theme"]
        widgets = {"theme": forms.RadioSelect}
        labels = {"theme": "Theme"}


class ProfileChoiceField(forms.ModelChoiceField):
    """A connection profile among those available to `user`, by its public code; anything else
    (another user's profile, one staff do not offer them, a made-up code) is refused plainly."""

    def __init__(self, *, user, **kwargs):
        super().__init__(
            queryset=ConnectionProfile.objects.available_to(user).for_choice(),
            to_field_name="code",
            required=False,
            error_messages={"invalid_choice": NOT_AVAILABLE},
            **kwargs,
        )

    def label_from_instance(self, obj) -> str:
        return obj.label + (" · your own" if obj.owner_id else "")

    def to_python(self, value):
        try:
            return super().to_python(value)
        except forms.ValidationError:  # not a UUID at all
            raise forms.ValidationError(NOT_AVAILABLE, code="invalid_choice") from None


class ModelDefaultForm(forms.Form):
    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"] = ProfileChoiceField(
            user=user,
            label="Your default model",
            empty_label="The site's default",
            help_text="For your chats that name no model of their own and whose character has no default of yours.",
        )


class OwnProfileForm(forms.ModelForm):
    """A user's own connection profile: their server (on a host staff allow) and their key."""

    # Write-only: the stored key is never rendered back.
    api_key = forms.CharField(
        label="API key",
        required=False,
        max_length=500,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Stored encrypted and never shown again. Leave empty to keep the stored key.",
    )
    clear_api_key = forms.BooleanField(label="Remove the stored key", required=False)
    base_url = forms.URLField(
        label="Base URL",
        max_length=500,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"placeholder": "https://api.example.com/v1"}),
        help_text="The server's OpenAI-compatible root (…/v1), on a host this instance allows.",
    )

    class Meta:
        model = ConnectionProfile
        fields = [
            "name",
            "mode",
            "base_url",
            "model",
            "context_size",
            "max_tokens",
            "temperature",
            "top_p",
            "min_p",
            "top_k",
            "repetition_penalty",
        ]

    def __init__(self, *args, owner, site: SiteSettings, **kwargs):
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.site = site

    def clean(self):
        cleaned = super().clean()
        if (
            self.instance.pk is None
            and ConnectionProfile.objects.filter(owner=self.owner).count() >= MAX_OWN_PROFILES
        ):
            raise forms.ValidationError(
                f"You have {MAX_OWN_PROFILES} model servers, the most one person may have. Delete one first."
            )
        return cleaned

    def clean_name(self):
        name = self.cleaned_data["name"]
        taken = ConnectionProfile.objects.filter(owner=self.owner, name=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError("You already have a profile with this name.")
        return name

    def clean_base_url(self):
        url = self.cleaned_data["base_url"]
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise forms.ValidationError("Use an http:// or https:// address.")
        if parts.username is not None or parts.password is not None:
            raise forms.ValidationError("Put no user name or password in the address; use the API key field.")
        if parts.query or parts.fragment:
            raise forms.ValidationError("Give the address without ?query or #fragment.")
        host = (parts.hostname or "").lower()
        if not self.site.user_host_allowed(host):
            allowed = ", ".join(
                line.strip() for line in self.site.user_profile_hosts.splitlines() if line.strip()
            )
            raise forms.ValidationError(
                f"{host or 'This host'} is not on the list of hosts this instance allows"
                + (f" ({allowed})." if allowed else " (staff have allowed none yet).")
            )
        address = literal_address(host)
        if address is not None and not is_public(address) and not self.site.user_profiles_private_addresses:
            raise forms.ValidationError(
                "This is a loopback, private or link-local address; this instance does not allow those."
            )
        return url

    def save(self, commit=True):
        profile = super().save(commit=False)
        profile.owner = self.owner
        if self.cleaned_data.get("clear_api_key"):
            profile.api_key = ""
        elif self.cleaned_data.get("api_key"):
            profile.api_key = self.cleaned_data["api_key"]
        if commit:
            profile.save()
        return profile
