from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate

SEARCH_MIGRATION = "0003_message_search"


def _drop_search_triggers(sender, using, plan=None, **kwargs):
    """Before migrating chats on SQLite, lift the search triggers (see core.search)."""
    from django.db import connections

    from core.search import drop_sqlite_triggers

    if plan:  # any table rebuild in the plan may be refused while they exist
        drop_sqlite_triggers(connections[using], migration=SEARCH_MIGRATION, app_label="chats")


def _ensure_search_triggers(sender, using, **kwargs):
    from django.db import connections

    from core.search import ensure_sqlite_triggers

    ensure_sqlite_triggers(connections[using], migration=SEARCH_MIGRATION, app_label="chats")


class ChatsConfig(AppConfig):
    name = "chats"

    def ready(self):
        pre_migrate.connect(_drop_search_triggers, sender=self)
        post_migrate.connect(_ensure_search_triggers, sender=self)
