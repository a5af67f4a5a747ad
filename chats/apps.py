from django.apps import AppConfig
from django.db.models.signals import m2m_changed, post_delete, post_save


class ChatsConfig(AppConfig):
    name = "chats"

    def ready(self):
        from django.contrib.auth import get_user_model

        from core.search import keep_triggers_across_migrations
        from settings_app.models import ConnectionProfile, ModelDefault

        from .models import CharacterModelDefault
        from .profiles import choices_changed

        keep_triggers_across_migrations(self, migration="0003_message_search")
        # What decides a chat's model (chats.profiles): its cached label goes on any change.
        for model in (ConnectionProfile, ModelDefault, CharacterModelDefault):
            for name, signal in (("save", post_save), ("delete", post_delete)):
                signal.connect(
                    choices_changed, sender=model, dispatch_uid=f"model-choice-{model.__name__}-{name}"
                )
        for through in (
            ConnectionProfile.users.through,
            ConnectionProfile.groups.through,
            get_user_model().groups.through,
        ):
            m2m_changed.connect(
                choices_changed, sender=through, dispatch_uid=f"model-choice-{through.__name__}"
            )
