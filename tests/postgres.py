"""Helpers for tests that make PostgreSQL databases of their own next to the test database."""

from __future__ import annotations

import psycopg
from django.db import connection


def admin_dsn() -> str:
    """A connection string to the server's `postgres` database, for CREATE and DROP DATABASE."""
    config = connection.settings_dict
    return psycopg.conninfo.make_conninfo(
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        dbname="postgres",
    )


def database_url(name: str) -> str:
    """DATABASE_URL of database `name` on the test database's server."""
    config = connection.settings_dict
    auth = config["USER"] + (f":{config['PASSWORD']}" if config["PASSWORD"] else "")
    return f"postgres://{auth}@{config['HOST'] or '127.0.0.1'}:{config['PORT'] or 5432}/{name}"
