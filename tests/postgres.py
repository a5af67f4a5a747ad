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


def create_database(name: str) -> None:
    """A new empty database `name` beside the test database (an old one of that name is dropped)."""
    with psycopg.connect(admin_dsn(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    with psycopg.connect(admin_dsn(), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
