from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _install_query_wrapper(sender, connection, **kwargs):
    from .metrics import query_wrapper

    # connection_created fires on every (re)connect of the same wrapper object: install once. First
    # in the list, because `connection.execute_wrapper()` pops the last one when its block ends and
    # a lazy connect may happen inside such a block.
    if query_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, query_wrapper)


class CoreConfig(AppConfig):
    """Helpers every app shares (HTTP, pagination, search, Markdown, rate limits, metrics); imports no app."""

    name = "core"
    verbose_name = "Core"

    def ready(self):
        connection_created.connect(_install_query_wrapper, dispatch_uid="core-query-metrics")
