"""Local state holds password hashes and API keys: the files rpchat makes are readable by its own
account only, whatever the umask (0022 here, the usual default that makes files world-readable)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections

from core.databases import attached_database
from tools.servers import server_env

pytestmark = pytest.mark.django_db(transaction=True)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _manage(var: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *args],
        cwd=settings.BASE_DIR,
        env=server_env(RPCHAT_VAR_DIR=str(var)),
        check=True,
        capture_output=True,
        umask=0o022,
    )


def test_a_fresh_instance_makes_its_folder_database_and_key_private_and_tightens_older_ones(tmp_path):
    var = tmp_path / "var"
    _manage(var, "migrate", "--no-input", "-v0")
    assert (mode(var), mode(var / "secret_key"), mode(var / "rpchat.sqlite3")) == (0o700, 0o600, 0o600)

    # An instance set up before this: everything readable by everyone.
    var.chmod(0o755)
    for name in ("secret_key", "rpchat.sqlite3"):
        (var / name).chmod(0o644)
    _manage(var, "migrate", "--no-input", "-v0")
    assert (mode(var), mode(var / "secret_key"), mode(var / "rpchat.sqlite3")) == (0o700, 0o600, 0o600)


def test_the_sqlite_database_and_its_wal_and_shm_files_are_private(tmp_path):
    path = tmp_path / "made-here.sqlite3"
    with umask(0o022), attached_database("made_here", f"sqlite:///{path}") as alias:
        with connections[alias].cursor() as cursor:  # WAL mode: -wal and -shm exist while it is open
            cursor.execute("CREATE TABLE t (x)")
            cursor.execute("INSERT INTO t VALUES (1)")
        files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
        assert all(f.exists() for f in files)
        assert [mode(f) for f in files] == [0o600, 0o600, 0o600]


def test_backups_are_private(owner, tmp_path):
    if connection.vendor == "postgresql" and shutil.which("pg_dump") is None:
        pytest.skip("pg_dump is not installed")
    backups = tmp_path / "backups"
    backups.mkdir()
    with umask(0o022):
        call_command("backup_db", str(backups), stdout=StringIO())
    (made,) = backups.iterdir()
    assert mode(made) == 0o600


@pytest.mark.skipif(connection.vendor != "sqlite", reason="restore_db restores SQLite files")
def test_the_copy_a_restore_keeps_of_the_replaced_database_is_private(owner, tmp_path):
    backup = tmp_path / "backup.sqlite3"
    call_command("backup_db", str(backup), stdout=StringIO())
    with umask(0o022):
        call_command("restore_db", str(backup), interactive=False, stdout=StringIO())
    (kept,) = Path(connection.settings_dict["NAME"]).parent.glob("*.before-restore-*")
    try:
        assert mode(kept) == 0o600
    finally:
        kept.unlink()
