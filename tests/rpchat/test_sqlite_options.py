"""SQLite's connection options come from the settings the operator gives in the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_each_sqlite_connections_page_cache_is_set_from_sqlite_cache_kib(tmp_path):
    """Every request thread keeps a connection, each with its own page cache: the operator sizes it."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cache.sqlite3'}",
        "RPCHAT_VAR_DIR": str(tmp_path),
        "SQLITE_CACHE_KIB": "500",
    }
    code = "from django.db import connection; print(connection.cursor().execute('PRAGMA cache_size').fetchone()[0])"
    shown = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown[-1] == "-500"
