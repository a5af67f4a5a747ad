from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from core.cache_backends import clear_environment
from tools import backup


class Command(BaseCommand):
    help = "Replace the SQLite database's contents with a backup_db backup (stop the server first)."

    def add_arguments(self, parser):
        parser.add_argument("path", help="A backup written by backup_db.")
        parser.add_argument(
            "--no-input", action="store_false", dest="interactive", help="Do not ask for confirmation."
        )

    def handle(self, *args, path, interactive, **options):
        config = connections["default"].settings_dict
        if config["ENGINE"] != "django.db.backends.sqlite3":
            commands = backup.pg_commands(config, Path(path))
            raise CommandError(
                "On PostgreSQL, restore with pg_restore while the server is stopped:\n"
                f"  {commands.shown(commands.restore)}\n"
                "then `manage.py clear_caches`, then start the server (see docs/operations.md)."
            )
        live = Path(config["NAME"])
        try:
            backup.check_backup(Path(path))
        except backup.BackupError as exc:
            raise CommandError(str(exc)) from None
        if interactive:
            answer = input(
                f"This replaces everything in {live} with the contents of {path}.\n"
                "Stop the server first. Type 'yes' to go on: "
            )
            if answer != "yes":
                raise CommandError("Restore cancelled.")
        connections.close_all()
        try:
            kept = backup.sqlite_restore(backup=Path(path), target=live)
        except (backup.BackupError, OSError) as exc:
            raise CommandError(str(exc)) from None
        # Everything cached describes the database as it was: query results, the settings, sessions,
        # and keys naming rows by id (rate limits per user, stop signals per reply), ids that the
        # restored database hands out again to other people's rows.
        clear_environment()
        if kept:
            self.stdout.write(f"The database as it was before is kept at {kept}.")
        self.stdout.write(
            self.style.SUCCESS(
                f"Restored {path} into {live}. Run `manage.py migrate` if the backup is from an older "
                "version (make run does), then start the server."
            )
        )
