from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_search_triggers(sender, using, **kwargs):
    from django.db import connections

    from rpchat.search import ensure_sqlite_triggers

    ensure_sqlite_triggers(
        connections[using], migration="0003_character_search", app_label="characters"
    )


class CharactersConfig(AppConfig):
    name = "characters"

    def ready(self):
        from . import signals  # noqa: F401

        post_migrate.connect(_ensure_search_triggers, sender=self)
