from django.apps import AppConfig


class CharactersConfig(AppConfig):
    name = "characters"

    def ready(self):
        from core.search import keep_triggers_across_migrations

        from . import signals  # noqa: F401

        keep_triggers_across_migrations(self, migration="0003_character_search")
