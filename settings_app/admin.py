import asyncio

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.http import HttpResponseRedirect
from django.urls import reverse

from .models import ApiToken, ConnectionProfile, InstructTemplate, ModelDefault, Persona, Preset, SiteSettings


class ConnectionProfileForm(forms.ModelForm):
    # Write-only: the stored key is never rendered back into the page.
    api_key = forms.CharField(
        label="API key",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored key. Tick 'clear key' to remove it.",
    )
    clear_api_key = forms.BooleanField(label="Clear key", required=False)

    class Meta:
        model = ConnectionProfile
        fields = "__all__"  # noqa: DJ007 - the admin edits every field of a profile

    def save(self, commit=True):
        profile = super().save(commit=False)
        new_key = self.cleaned_data.get("api_key")
        if self.cleaned_data.get("clear_api_key"):
            profile.api_key = ""
        elif new_key:
            profile.api_key = new_key
        # else: the stored (encrypted) key stays as it is.
        if commit:
            profile.save()
            self.save_m2m()
        return profile


@admin.register(ConnectionProfile)
class ConnectionProfileAdmin(admin.ModelAdmin):
    form = ConnectionProfileForm
    # Local model servers are usually plain http.
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}
    list_display = (
        "name",
        "mode",
        "base_url",
        "model",
        "has_key",
        "available_to_all",
        "owner",
        "context_size",
    )
    list_filter = ("available_to_all", ("owner", admin.EmptyFieldListFilter))
    list_select_related = ("owner",)
    search_fields = ("name", "base_url", "model", "owner__username")
    autocomplete_fields = ("owner", "users")
    filter_horizontal = ("groups",)
    actions = ["test_connection"]
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "name",
                    "mode",
                    "base_url",
                    "model",
                    "api_key",
                    "clear_api_key",
                    "instruct_template",
                )
            },
        ),
        (
            "Who may use it",
            {
                "description": "Everyone may use the site's active profile. A profile with an owner "
                "is that user's own (added on their Models page) and only theirs.",
                "fields": ("available_to_all", "users", "groups", "owner"),
            },
        ),
        (
            "Sampling",
            {
                "fields": (
                    "context_size",
                    "max_tokens",
                    "temperature",
                    "top_p",
                    "top_k",
                    "min_p",
                    "repetition_penalty",
                    "stop_strings",
                    "seed",
                )
            },
        ),
    )

    @admin.display(boolean=True, description="API key set")
    def has_key(self, obj):
        return obj.has_api_key

    @admin.action(description="Test connection (list the server's models)")
    def test_connection(self, request, queryset):
        for profile in queryset:
            self._report_connection(request, profile)

    def response_change(self, request, obj):
        if "_test_connection" in request.POST:
            self._report_connection(request, obj)
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    def _report_connection(self, request, profile: ConnectionProfile) -> None:
        # The engine client lives in chats; settings_app must not import it at module level.
        from .engines import EngineError, config_for_profile, list_models

        try:
            # A user's own profile is tested through the same guard its requests go through.
            config = config_for_profile(profile, SiteSettings.load())
            models = asyncio.run(list_models(config))
        except EngineError as exc:
            # Staff see the detail (the address, credentials masked).
            self.message_user(request, f"{profile.name}: {exc.detail}", messages.ERROR)
        else:
            names = ", ".join(models[:10]) or "no models listed"
            self.message_user(request, f"{profile.name}: connected. Models: {names}", messages.SUCCESS)


@admin.register(SiteSettings)
class SiteSettingsAdmin(admin.ModelAdmin):
    list_select_related = ("active_profile",)
    fieldsets = (
        (None, {"fields": ("instance_name", "allow_signup", "allow_external_media")}),
        ("Model", {"fields": ("active_profile",)}),
        (
            "Users' own model servers",
            {"fields": ("allow_user_profiles", "user_profile_hosts", "user_profiles_private_addresses")},
        ),
        ("Prompt", {"fields": ("system_prompt", "post_history_instructions", "default_user_name")}),
        (
            "Built-in demo model",
            {
                "fields": (
                    "builtin_n_threads",
                    "builtin_context_size",
                    "builtin_max_tokens",
                    "builtin_model_path",
                )
            },
        ),
    )

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "active_profile":
            # Everyone uses the active profile: a user's own one (their key) cannot be it.
            kwargs["queryset"] = ConnectionProfile.objects.filter(owner__isnull=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def changelist_view(self, request, extra_context=None):
        # One row: go straight to it.
        SiteSettings.load()
        return HttpResponseRedirect(reverse("admin:settings_app_sitesettings_change", args=[1]))


@admin.register(Persona)
class PersonaAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "is_default")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    search_fields = ("name", "user__username")


@admin.register(Preset)
class PresetAdmin(admin.ModelAdmin):
    """SillyTavern presets. Users import them on the Presets page; here staff see and fix any."""

    list_display = ("name", "kind", "owner", "updated_at")
    list_filter = ("kind",)
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    search_fields = ("name", "owner__username")
    readonly_fields = ("source_hash",)


@admin.register(InstructTemplate)
class InstructTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "system_as_user")
    search_fields = ("name",)
    fieldsets = (
        (None, {"fields": ("name", "prompt_prefix", "system_as_user", "stop_strings")}),
        ("System", {"fields": ("system_prefix", "system_suffix")}),
        ("User", {"fields": ("user_prefix", "user_suffix")}),
        ("Character", {"fields": ("assistant_prefix", "assistant_suffix")}),
    )


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made by their users; here they can be seen (never the token itself) and revoked."""

    list_display = ("name", "user", "prefix", "created_at", "last_used_at")
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("user", "name", "prefix", "token_hash", "created_at", "last_used_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ModelDefault)
class ModelDefaultAdmin(admin.ModelAdmin):
    list_display = ("user", "profile")
    list_select_related = ("user", "profile")
    autocomplete_fields = ("user", "profile")
    search_fields = ("user__username", "profile__name")
