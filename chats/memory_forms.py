"""Forms of the memory page (chats/views/memory.py)."""

from django import forms

from settings_app.models import ConnectionProfile

from .memory import MAX_FACT_CHARS, MAX_SUMMARY_CHARS
from .models import ChatMemory


class MemorySettingsForm(forms.ModelForm):
    class Meta:
        model = ChatMemory
        fields = ["enabled", "share", "profile"]
        labels = {
            "enabled": "Memory on in this chat",
            "share": "Share of the prompt for memory (percent)",
            "profile": "Summaries are written by",
        }

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        # Only the models this user may use: never another user's own server (and its key).
        self.fields["profile"].queryset = (
            ConnectionProfile.objects.available_to(user).order_by("name").only("id", "name")
        )
        self.fields["profile"].empty_label = "The chat's own model (or the built-in one)"


class FactForm(forms.Form):
    text = forms.CharField(
        max_length=MAX_FACT_CHARS, strip=True, widget=forms.Textarea(attrs={"rows": 2}), label="Fact"
    )
    version = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1, widget=forms.HiddenInput)


class SummaryForm(forms.Form):
    text = forms.CharField(
        max_length=MAX_SUMMARY_CHARS, strip=True, widget=forms.Textarea(attrs={"rows": 3}), label="Summary"
    )
    version = forms.IntegerField(min_value=1, max_value=2**31 - 1, widget=forms.HiddenInput)
