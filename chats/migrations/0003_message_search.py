"""Full-text search over message text, one way per database.

SQLite: a contentless FTS5 table over the messages, kept in sync by triggers. Besides the text it
indexes a `scope` column holding "u<user id> s<chat id>", so a user's search (or one chat's) is a
MATCH on that token inside the index, not a filter applied afterwards to every matching row of
every user. Used by chats.search.search_messages.

PostgreSQL: a search table holding each message's tsvector with the same scope as lexemes, a GIN
index on it, and triggers keeping it in sync (PostgreSQL alters tables in place, so its triggers
may name other tables freely). See docs/search.md for why not an index on
to_tsvector(content) alone.
"""

from django.db import migrations

SCOPE = "'u' || s.user_id || ' s' || s.id"

SQLITE_TABLES = [
    # Contentless: the text is not stored twice, and the table names no other table.
    """CREATE VIRTUAL TABLE chats_message_fts USING fts5(
        content, scope, content='', tokenize='unicode61 remove_diacritics 0')""",
]

# By name. Each names both chats_message and chats_chatsession, and SQLite refuses to rename a
# table (the last step of Django's table rebuilds) while a trigger on another table names it; so
# chats.apps drops them before migrating chats and re-creates them (and re-indexes) after.
SQLITE_TRIGGERS = {
    "chats_message_fts_insert": f"""CREATE TRIGGER chats_message_fts_insert AFTER INSERT ON chats_message BEGIN
        INSERT INTO chats_message_fts(rowid, content, scope)
        SELECT new.id, new.content, {SCOPE} FROM chats_chatsession s WHERE s.id = new.session_id;
    END""",
    # A contentless FTS5 table forgets a row when given the values it indexed.
    "chats_message_fts_delete": f"""CREATE TRIGGER chats_message_fts_delete AFTER DELETE ON chats_message BEGIN
        INSERT INTO chats_message_fts(chats_message_fts, rowid, content, scope)
        SELECT 'delete', old.id, old.content, {SCOPE} FROM chats_chatsession s WHERE s.id = old.session_id;
    END""",
    # Streaming replies rewrite their text every half second: only a real change re-indexes.
    "chats_message_fts_update": f"""CREATE TRIGGER chats_message_fts_update AFTER UPDATE OF content, session_id ON chats_message
    WHEN old.content IS NOT new.content OR old.session_id IS NOT new.session_id BEGIN
        INSERT INTO chats_message_fts(chats_message_fts, rowid, content, scope)
        SELECT 'delete', old.id, old.content, {SCOPE} FROM chats_chatsession s WHERE s.id = old.session_id;
        INSERT INTO chats_message_fts(rowid, content, scope)
        SELECT new.id, new.content, {SCOPE} FROM chats_chatsession s WHERE s.id = new.session_id;
    END""",
    # A chat handed to another user (admin) takes its messages' scope with it.
    "chats_chatsession_fts_owner": """CREATE TRIGGER chats_chatsession_fts_owner AFTER UPDATE OF user_id ON chats_chatsession
    WHEN old.user_id IS NOT new.user_id BEGIN
        INSERT INTO chats_message_fts(chats_message_fts, rowid, content, scope)
        SELECT 'delete', m.id, m.content, 'u' || old.user_id || ' s' || old.id
        FROM chats_message m WHERE m.session_id = old.id;
        INSERT INTO chats_message_fts(rowid, content, scope)
        SELECT m.id, m.content, 'u' || new.user_id || ' s' || new.id
        FROM chats_message m WHERE m.session_id = new.id;
    END""",
}

FTS_TABLE = "chats_message_fts"
# Index every message again (the backfill, and the repair after the triggers were away).
SQLITE_REBUILD = [
    f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('delete-all')",
    f"""INSERT INTO {FTS_TABLE}(rowid, content, scope)
        SELECT m.id, m.content, {SCOPE} FROM chats_message m JOIN chats_chatsession s ON s.id = m.session_id""",
]
# No triggers here: post_migrate (apps.py) makes them once the whole plan has run. A trigger that
# names another table makes SQLite refuse the rename that ends every table rebuild, so one created
# mid-plan would break any later migration that rebuilds a table (on a fresh database, all of them).
SQLITE_FORWARD = [*SQLITE_TABLES, *SQLITE_REBUILD]

SQLITE_BACKWARD = [
    *(f"DROP TRIGGER IF EXISTS {name}" for name in SQLITE_TRIGGERS),
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
]

# PostgreSQL: a search table with the message's tsvector plus scope lexemes ("scope u<user>", "scope s<chat>": a space never occurs inside a lexeme of parsed text,
# so no message can forge one), kept in sync by a trigger. A GIN index on the text alone left the
# planner two bad choices for a user's search: walk every user's newest messages (16 s at 1M
# messages for a user whose few messages are old) or fetch and sort every match (1 s for a common
# word); with the scope inside the tsvector both are fast. See docs/search.md.
PG_DOCUMENT = (
    "to_tsvector('simple'::regconfig, m.content) || "
    "array_to_tsvector(ARRAY['scope u' || s.user_id, 'scope s' || s.id])"
)

POSTGRES_FORWARD = [
    """CREATE TABLE chats_message_search (
        message_id bigint PRIMARY KEY,
        document tsvector NOT NULL
    )""",
    # Used by chats.search.search_messages (WHERE document @@ query).
    "CREATE INDEX message_search_document_idx ON chats_message_search USING gin (document)",
    # With the default 100 most common lexemes, any rarer word was estimated at ~1,000 rows and
    # the planner walked the newest rows instead of asking the index (200 ms; 13 ms with 1000).
    "ALTER TABLE chats_message_search ALTER COLUMN document SET STATISTICS 1000",
    f"""CREATE FUNCTION chats_message_search_sync() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            DELETE FROM chats_message_search WHERE message_id = OLD.id;
            RETURN NULL;
        END IF;
        -- Streaming replies rewrite their text every half second: only a real change re-indexes.
        IF TG_OP = 'UPDATE' AND NEW.content IS NOT DISTINCT FROM OLD.content
                AND NEW.session_id = OLD.session_id THEN
            RETURN NULL;
        END IF;
        INSERT INTO chats_message_search (message_id, document)
        SELECT m.id, {PG_DOCUMENT}
        FROM (SELECT NEW.id AS id, NEW.content AS content, NEW.session_id AS session_id) m
        JOIN chats_chatsession s ON s.id = m.session_id
        ON CONFLICT (message_id) DO UPDATE SET document = EXCLUDED.document;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER chats_message_search_sync
        AFTER INSERT OR UPDATE OF content, session_id OR DELETE ON chats_message
        FOR EACH ROW EXECUTE FUNCTION chats_message_search_sync()""",
    """CREATE FUNCTION chats_message_search_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE chats_message_search;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER chats_message_search_truncate AFTER TRUNCATE ON chats_message
        FOR EACH STATEMENT EXECUTE FUNCTION chats_message_search_truncate()""",
    # A chat handed to another user (admin) takes its messages' scope with it.
    f"""CREATE FUNCTION chats_chatsession_search_owner() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE chats_message_search f SET document = {PG_DOCUMENT}
        FROM chats_message m JOIN chats_chatsession s ON s.id = m.session_id
        WHERE m.session_id = NEW.id AND f.message_id = m.id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER chats_chatsession_search_owner AFTER UPDATE OF user_id ON chats_chatsession
        FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id)
        EXECUTE FUNCTION chats_chatsession_search_owner()""",
    # Index the messages that exist already, and give the planner statistics on them at once.
    f"""INSERT INTO chats_message_search (message_id, document)
        SELECT m.id, {PG_DOCUMENT} FROM chats_message m JOIN chats_chatsession s ON s.id = m.session_id""",
    "ANALYZE chats_message_search",
]

POSTGRES_BACKWARD = [
    "DROP TRIGGER IF EXISTS chats_chatsession_search_owner ON chats_chatsession",
    "DROP TRIGGER IF EXISTS chats_message_search_truncate ON chats_message",
    "DROP TRIGGER IF EXISTS chats_message_search_sync ON chats_message",
    "DROP FUNCTION IF EXISTS chats_chatsession_search_owner()",
    "DROP FUNCTION IF EXISTS chats_message_search_truncate()",
    "DROP FUNCTION IF EXISTS chats_message_search_sync()",
    "DROP TABLE IF EXISTS chats_message_search",
]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        statements = statements_by_vendor.get(schema_editor.connection.vendor, [])
        for sql in statements:
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("chats", "0002_chatsession_author_note_and_more"),
    ]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        ),
    ]
