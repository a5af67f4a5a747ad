from django import forms
from django.contrib.auth.forms import UserCreationForm

from .models import Persona, UserPreferences


class PersonaForm(forms.ModelForm):
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
