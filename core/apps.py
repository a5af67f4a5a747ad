import os
import stat

from django.apps import AppConfig
from django.db.backends.signals import connection_created


def _install_query_wrapper(sender, connection, **kwargs):
    from .metrics import query_wrapper

    # connection_created fires on every (re)connect of the same wrapper object: install once. First
    # in the list, because `connection.execute_wrapper()` pops the last one when its block ends and
    # a lazy connect may happen inside such a block.
    if query_wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, query_wrapper)


def _private_sqlite_files(sender, connection, **kwargs):
    """The SQLite file holds password hashes and API keys: readable by this account only. SQLite
    makes its -wal and -shm files with the database file's mode, so they follow; files made before
    (an older version, a copy) are tightened here too."""
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or "mode=memory" in name:
        return
    for path in (name, f"{name}-wal", f"{name}-shm", f"{name}-journal"):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                os.chmod(path, mode & 0o700)
        except (FileNotFoundError, PermissionError):
            pass


class CoreConfig(AppConfig):
    """Helpers every app shares (HTTP, pagination, search, Markdown, rate limits, metrics); imports no app."""

    name = "core"
    verbose_name = "Core"

    def ready(self):
        connection_created.connect(_install_query_wrapper, dispatch_uid="core-query-metrics")
        connection_created.connect(_private_sqlite_files, dispatch_uid="core-private-sqlite")
