from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_search_triggers(sender, using, **kwargs):
    from django.db import connections

    from rpchat.search import ensure_sqlite_triggers

    ensure_sqlite_triggers(connections[using], migration="0003_message_search", app_label="chats")


class ChatsConfig(AppConfig):
    name = "chats"

    def ready(self):
        post_migrate.connect(_ensure_search_triggers, sender=self)
