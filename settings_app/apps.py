from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class SettingsAppConfig(AppConfig):
    name = "settings_app"
    verbose_name = "Instance settings"

    def ready(self):
        from django.contrib.auth import get_user_model

        from .backends import preferences_changed, user_changed
        from .models import UserPreferences

        # The session's user is cached with their preferences (settings_app.backends): any saved
        # change to either drops it, a password change or a deactivation included.
        for name, signal in (("save", post_save), ("delete", post_delete)):
            signal.connect(user_changed, sender=get_user_model(), dispatch_uid=f"forget-user-on-{name}")
            signal.connect(
                preferences_changed, sender=UserPreferences, dispatch_uid=f"forget-prefs-on-{name}"
            )
