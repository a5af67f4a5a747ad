from django.apps import AppConfig


class ChatsConfig(AppConfig):
    name = "chats"

    def ready(self):
        from core.search import keep_triggers_across_migrations

        keep_triggers_across_migrations(self, migration="0003_message_search")
