"""Backups of the database: SQLite through its online backup API, PostgreSQL through pg_dump.

SQLite: the copy is read inside one read transaction, so it is the database as it was at one moment
even while the app keeps writing (WAL lets the writers go on), written to a temporary file beside
the target and renamed into place only when complete and checked. A restore goes the other way
through the same API, so SQLite itself replaces the live pages, WAL included; copying a file over a
database whose -wal file is still there would corrupt it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

Progress = Callable[[int, int], None]  # (pages copied, pages in all)


class BackupError(Exception):
    pass


@dataclass(frozen=True)
class Copied:
    path: Path
    pages: int
    bytes: int


def _private_file(path: Path) -> None:
    """Make `path` an empty file only this account can read (or empty it and make it so): a backup
    holds password hashes and API keys. SQLite gives its journal the same mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def _busy_timeout() -> float:
    return float(settings.SQLITE_OPTIONS["timeout"])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(source: sqlite3.Connection, target: sqlite3.Connection, *, pages: int, progress: Progress | None):
    def report(status, remaining, total):
        if progress is not None:
            progress(total - remaining, total)

    source.backup(target, pages=pages, progress=report)


def sqlite_backup(
    *, source: Path, target: Path, pages: int = 1024, progress: Progress | None = None
) -> Copied:
    """Copy the live database `source` to `target` atomically; returns what was written."""
    source, target = Path(source), Path(target)
    if not source.exists():
        raise BackupError(f"There is no database at {source}.")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError("The backup cannot replace the database it copies.")
    if not target.parent.is_dir():
        raise BackupError(f"The folder {target.parent} does not exist.")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    _private_file(temporary)
    src = sqlite3.connect(source, timeout=_busy_timeout(), isolation_level=None)
    dst = sqlite3.connect(temporary, isolation_level=None)
    try:
        # One read transaction for the whole copy: every step reads the same snapshot, and under WAL
        # the app's writers are not held up (nor does their writing restart the copy).
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
        _copy(src, dst, pages=pages, progress=progress)
        src.execute("COMMIT")
        # A single self-contained file: no -wal beside it to lose when it is moved.
        dst.execute("PRAGMA journal_mode=DELETE")
        result = dst.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            raise BackupError(f"The copy failed its check: {result}")
        page_count = dst.execute("PRAGMA page_count").fetchone()[0]
        dst.close()
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    except BaseException:
        dst.close()
        temporary.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    return Copied(target, page_count, target.stat().st_size)


def check_backup(path: Path) -> None:
    """Refuse anything that is not a sound rpchat SQLite database."""
    path = Path(path)
    if not path.is_file():
        raise BackupError(f"There is no file at {path}.")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not an SQLite database ({exc}).") from None
    if result != "ok":
        raise BackupError(f"{path} fails SQLite's check: {result}")
    if not {"django_migrations", "chats_message"} <= tables:
        raise BackupError(f"{path} is not an rpchat database (it has no chats_message table).")


def sqlite_restore(
    *, backup: Path, target: Path, pages: int = 1024, progress: Progress | None = None
) -> Path | None:
    """Replace the contents of the database `target` with the backup's, in one transaction.

    The current database is first copied beside it (`<name>.before-restore-<time>`); returns that copy's
    path, or None when there was no database yet.
    """
    backup, target = Path(backup), Path(target)
    check_backup(backup)
    if target.exists() and backup.resolve() == target.resolve():
        raise BackupError("That is the live database itself.")
    kept = None
    if target.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept = sqlite_backup(
            source=target, target=target.with_name(f"{target.name}.before-restore-{stamp}")
        ).path
    if not target.exists():
        _private_file(target)
    src = sqlite3.connect(f"{backup.resolve().as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target, timeout=_busy_timeout(), isolation_level=None)
    try:
        # SQLite writes the destination in one transaction: readers see the old rows until the end.
        _copy(src, dst, pages=pages, progress=progress)
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        src.close()
        dst.close()
    return kept


# --- PostgreSQL -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgCommands:
    dump: list[str]
    restore: list[str]
    password: str

    def shown(self, argv: list[str]) -> str:
        prefix = "PGPASSWORD=... " if self.password else ""
        return prefix + shlex.join(argv)


def pg_commands(config: dict, path: Path) -> PgCommands:
    """pg_dump and pg_restore command lines for the database `config` (a DATABASES entry)."""
    conn = []
    if config.get("HOST"):
        conn += ["--host", str(config["HOST"])]
    if config.get("PORT"):
        conn += ["--port", str(config["PORT"])]
    if config.get("USER"):
        conn += ["--username", str(config["USER"])]
    name = str(config["NAME"])
    dump = ["pg_dump", *conn, "--format=custom", "--no-owner", f"--file={path}", name]
    restore = ["pg_restore", *conn, "--clean", "--if-exists", "--no-owner", f"--dbname={name}", str(path)]
    return PgCommands(dump, restore, str(config.get("PASSWORD") or ""))


def pg_dump(config: dict, target: Path) -> Copied:
    """Run pg_dump (custom format) into a temporary file, then rename it to `target`."""
    if shutil.which("pg_dump") is None:
        raise BackupError("pg_dump is not installed on this machine.")
    target = Path(target)
    if not target.parent.is_dir():
        raise BackupError(f"The folder {target.parent} does not exist.")
    temporary = target.with_name(f".{target.name}.{os.getpid()}.partial")
    commands = pg_commands(config, temporary)
    env = {**os.environ, **({"PGPASSWORD": commands.password} if commands.password else {})}
    try:
        # umask: pg_dump makes the file, which holds password hashes and API keys, this account's only.
        done = subprocess.run(
            commands.dump, env=env, capture_output=True, text=True, check=False, umask=0o077
        )
        if done.returncode:
            raise BackupError(f"pg_dump failed: {done.stderr.strip()[-2000:]}")
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return Copied(target, 0, target.stat().st_size)
