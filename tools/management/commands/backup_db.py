import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from tqdm import tqdm

from tools import backup


class Command(BaseCommand):
    help = (
        "Copy the database to PATH while the app keeps running (SQLite: online backup; PostgreSQL: pg_dump)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="The backup file to write, or a folder to write a dated file into.")
        parser.add_argument(
            "--pages-per-step", type=int, default=1024, help="SQLite: pages copied per step (4 KiB each)."
        )
        parser.add_argument(
            "--print-commands",
            action="store_true",
            help="PostgreSQL: only print the pg_dump and pg_restore commands for this database.",
        )

    def handle(self, *args, path, pages_per_step, print_commands, **options):
        config = connections["default"].settings_dict
        engine = config["ENGINE"].rsplit(".", 1)[-1]
        target = Path(path)
        if path.endswith(("/", "\\")) and not target.is_dir():
            raise CommandError(f"The folder {path} does not exist.")
        if target.is_dir():
            suffix = "sqlite3" if engine == "sqlite3" else "pgdump"
            target = target / f"rpchat-{time.strftime('%Y%m%d-%H%M%S')}.{suffix}"
        if engine == "sqlite3":
            if print_commands:
                raise CommandError(
                    "--print-commands is for PostgreSQL; on SQLite this command is the backup."
                )
            self._sqlite(Path(config["NAME"]), target, pages_per_step)
        elif engine == "postgresql":
            self._postgresql(config, target, print_commands)
        else:
            raise CommandError(f"Backing up {config['ENGINE']} is not supported; use its own tools.")

    def _sqlite(self, source: Path, target: Path, pages: int) -> None:
        started = time.monotonic()
        bar = tqdm(
            unit=" pages", desc="backing up", file=getattr(self.stdout, "_out", self.stdout), disable=None
        )

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            with bar:
                copied = backup.sqlite_backup(source=source, target=target, pages=pages, progress=progress)
        except (backup.BackupError, OSError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Backed up {source} to {copied.path}: {copied.pages:,} pages, "
                f"{copied.bytes / 1e6:.1f} MB in {time.monotonic() - started:.1f} s."
            )
        )

    def _postgresql(self, config: dict, target: Path, print_commands: bool) -> None:
        commands = backup.pg_commands(config, target)
        how = (
            f"  back up:  {commands.shown(commands.dump)}\n"
            f"  restore:  {commands.shown(commands.restore)}  (with the server stopped)\n"
            "  then:     manage.py clear_caches"
        )
        if print_commands:
            self.stdout.write(how)
            return
        try:
            copied = backup.pg_dump(config, target)
        except (backup.BackupError, OSError) as exc:
            raise CommandError(f"{exc}\nRun these instead (see docs/operations.md):\n{how}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Backed up {config['NAME']} with pg_dump to {copied.path}: {copied.bytes / 1e6:.1f} MB."
            )
        )
        self.stdout.write(
            f"To restore it:\n  {commands.shown(commands.restore)}  (with the server stopped)\n"
            "  then: manage.py clear_caches"
        )
