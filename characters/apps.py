from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate

SEARCH_MIGRATION = "0003_character_search"


def _drop_search_triggers(sender, using, plan=None, **kwargs):
    """Before a migration plan on SQLite, lift the search triggers; post_migrate puts them back."""
    from django.db import connections

    from core.search import drop_sqlite_triggers

    if plan:
        drop_sqlite_triggers(connections[using], migration=SEARCH_MIGRATION, app_label="characters")


def _ensure_search_triggers(sender, using, **kwargs):
    from django.db import connections

    from core.search import ensure_sqlite_triggers

    ensure_sqlite_triggers(connections[using], migration=SEARCH_MIGRATION, app_label="characters")


class CharactersConfig(AppConfig):
    name = "characters"

    def ready(self):
        from . import signals  # noqa: F401

        pre_migrate.connect(_drop_search_triggers, sender=self)
        post_migrate.connect(_ensure_search_triggers, sender=self)
