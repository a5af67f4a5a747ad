"""Full-text search over characters' card text, one way per database.

SQLite: an external-content FTS5 table over characters_character, kept in sync by triggers.
PostgreSQL: a GIN index on the tsvector of the same fields. Both are used by
characters.search (the search page, /api/search/characters/ and the gallery's `q`).
"""

from django.db import migrations

FIELDS = ("name", "nickname", "creator", "description", "scenario", "creator_notes")
COLUMNS = ", ".join(FIELDS)
OLD = ", ".join(f"old.{f}" for f in FIELDS)
NEW = ", ".join(f"new.{f}" for f in FIELDS)
# Must stay equal to characters.search.PG_DOCUMENT, or PostgreSQL will not use the index.
PG_DOCUMENT = "to_tsvector('simple'::regconfig, " + " || ' ' || ".join(FIELDS) + ")"

SQLITE_TABLES = [
    f"""CREATE VIRTUAL TABLE characters_character_fts USING fts5(
        {COLUMNS}, content='characters_character', content_rowid='id',
        tokenize='unicode61 remove_diacritics 0')""",
]

# By name: characters.apps re-creates any that a later table rebuild on SQLite dropped.
SQLITE_TRIGGERS = {
    "characters_character_fts_insert": f"""CREATE TRIGGER characters_character_fts_insert AFTER INSERT ON characters_character BEGIN
        INSERT INTO characters_character_fts(rowid, {COLUMNS}) VALUES (new.id, {NEW});
    END""",
    "characters_character_fts_delete": f"""CREATE TRIGGER characters_character_fts_delete AFTER DELETE ON characters_character BEGIN
        INSERT INTO characters_character_fts(characters_character_fts, rowid, {COLUMNS})
        VALUES ('delete', old.id, {OLD});
    END""",
    "characters_character_fts_update": f"""CREATE TRIGGER characters_character_fts_update AFTER UPDATE OF {COLUMNS} ON characters_character
    BEGIN
        INSERT INTO characters_character_fts(characters_character_fts, rowid, {COLUMNS})
        VALUES ('delete', old.id, {OLD});
        INSERT INTO characters_character_fts(rowid, {COLUMNS}) VALUES (new.id, {NEW});
    END""",
}

FTS_TABLE = "characters_character_fts"
# Index every character again (the backfill, and the repair after triggers were missing).
SQLITE_REBUILD = [f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')"]
# No triggers here: post_migrate (apps.py) makes them once the whole plan has run. A trigger that
# names another table makes SQLite refuse the rename that ends every table rebuild, so one created
# mid-plan would break any later migration that rebuilds a table (on a fresh database, all of them).
SQLITE_FORWARD = [*SQLITE_TABLES, *SQLITE_REBUILD]

SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS characters_character_fts_update",
    "DROP TRIGGER IF EXISTS characters_character_fts_delete",
    "DROP TRIGGER IF EXISTS characters_character_fts_insert",
    "DROP TABLE IF EXISTS characters_character_fts",
]

POSTGRES_FORWARD = [
    # Used by characters.search (WHERE <PG_DOCUMENT> @@ query).
    f"CREATE INDEX character_text_fts_idx ON characters_character USING gin ({PG_DOCUMENT})",
]

POSTGRES_BACKWARD = ["DROP INDEX IF EXISTS character_text_fts_idx"]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("characters", "0002_character_deleted_at_character_lorebooks_and_more"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
