"""Full-text query parsing and result snippets shared by message and character search.

A user's query is split into terms here, in Python, and each backend receives the same terms:
SQLite as an FTS5 MATCH expression, PostgreSQL as a tsquery built from `phraseto_tsquery`. Every
term is passed as a quoted string (FTS5) or a bound parameter (PostgreSQL), so nothing a user
types is ever read as query syntax. See docs/search.md.

Supported: words (all must match), "quoted phrases", and a trailing * for a prefix (`drag*`).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from django.utils.safestring import SafeString, mark_safe

MAX_TERMS = 8
MAX_QUERY_CHARS = 200
MIN_PREFIX_CHARS = 2
# The tokenizers of both backends split text into runs of letters and digits.
_WORD = re.compile(r"[^\W_]+")
_TERM = re.compile(r'"([^"]*)"|(\S+)')


@dataclass(frozen=True)
class Term:
    text: str
    prefix: bool = False

    @property
    def words(self) -> list[str]:
        return [w.lower() for w in _WORD.findall(self.text)]


def parse_query(query: str) -> list[Term]:
    """The terms of `query`, at most MAX_TERMS; terms without a letter or digit are dropped."""
    terms: list[Term] = []
    # NUL ends a string for FTS5's parser and PostgreSQL refuses it; no stored text has one.
    query = (query or "")[:MAX_QUERY_CHARS].replace("\x00", " ")
    for phrase, word in _TERM.findall(query):
        text = phrase if phrase else word
        prefix = False
        if not phrase and text.endswith("*"):
            text = text.rstrip("*")
            # A prefix is only safe and meaningful on a single word, and one letter would make
            # the index merge the lists of every word starting with it.
            prefix = bool(_WORD.fullmatch(text)) and len(text) >= MIN_PREFIX_CHARS
        if not _WORD.search(text):
            continue
        term = Term(text=text, prefix=prefix)
        if term not in terms:
            terms.append(term)
        if len(terms) == MAX_TERMS:
            break
    return terms


def fts5_expression(terms: list[Term]) -> str:
    """An FTS5 expression matching every term: `"a" AND "b c" AND "pre" *`."""
    parts = []
    for term in terms:
        quoted = '"' + term.text.replace('"', '""') + '"'
        parts.append(f"{quoted} *" if term.prefix else quoted)
    return " AND ".join(parts)


def pg_tsquery(terms: list[Term], config: str = "simple") -> tuple[str, list[str]]:
    """SQL for a tsquery matching every term, and its parameters."""
    sql, params = [], []
    for term in terms:
        if term.prefix:
            sql.append(f"to_tsquery('{config}', %s)")
            params.append(term.words[0] + ":*")
        else:
            sql.append(f"phraseto_tsquery('{config}', %s)")
            params.append(term.text)
    return "(" + " && ".join(sql) + ")", params


def highlight(text: str, terms: list[Term], *, width: int = 180) -> SafeString:
    """A window of `text` around the first match, HTML-escaped, each matching word in <mark>."""
    text = " ".join((text or "").split())
    exact = {w for t in terms if not t.prefix for w in t.words}
    prefixes = tuple(w for t in terms if t.prefix for w in t.words)

    def matches(word: str) -> bool:
        lower = word.lower()
        return lower in exact or (bool(prefixes) and lower.startswith(prefixes))

    spans = [m.span() for m in _WORD.finditer(text) if matches(m.group())]
    start = 0
    if spans and spans[0][0] > width // 3:
        start = spans[0][0] - width // 3
        # Start at a word boundary.
        space = text.rfind(" ", 0, start)
        start = space + 1 if space != -1 else start
    end = min(len(text), start + width)
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start else end
    out, pos = [], start
    for s, e in spans:
        if s < start or e > end:
            continue
        out.append(html.escape(text[pos:s]))
        out.append("<mark>" + html.escape(text[s:e]) + "</mark>")
        pos = e
    out.append(html.escape(text[pos:end]))
    # Every piece of the text was escaped above; only the <mark> tags are ours.
    return mark_safe(("…" if start else "") + "".join(out) + ("…" if end < len(text) else ""))  # noqa: S308


def _search_migration(app_label: str, migration: str):
    import importlib

    return importlib.import_module(f"{app_label}.migrations.{migration}")


def drop_sqlite_triggers(connection, *, migration: str, app_label: str) -> list[str]:
    """Drop the FTS5 sync triggers of `migration`, before migrations that may rebuild tables.

    SQLite refuses to rename a table while a trigger on another table names it, and renaming is
    the last step of every table rebuild Django does on SQLite. ensure_sqlite_triggers puts the
    triggers back and re-indexes. Returns the names dropped.
    """
    if connection.vendor != "sqlite":
        return []
    module = _search_migration(app_label, migration)
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        present = {row[0] for row in cursor.fetchall()}
        dropped = [name for name in module.SQLITE_TRIGGERS if name in present]
        for name in dropped:
            cursor.execute(f"DROP TRIGGER {name}")
    return dropped


def ensure_sqlite_triggers(connection, *, migration: str, app_label: str) -> list[str]:
    """Re-create the FTS5 sync triggers of `migration` that are missing, then re-index.

    Missing after drop_sqlite_triggers, or after a table rebuild dropped the triggers on that
    table; without them the index would silently stop following the text. Run after migrate.
    Returns the names of the triggers it re-created.
    """
    if connection.vendor != "sqlite":
        return []
    module = _search_migration(app_label, migration)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' OR type = 'table' AND name = %s",
            [module.FTS_TABLE],
        )
        present = {row[0] for row in cursor.fetchall()}
        if module.FTS_TABLE not in present:
            return []  # not migrated (yet), or migrated back
        missing = [name for name in module.SQLITE_TRIGGERS if name not in present]
        for name in missing:
            cursor.execute(module.SQLITE_TRIGGERS[name])
        if missing:
            # Triggers first, then the full re-index: a write in between is caught by both.
            for sql in module.SQLITE_REBUILD:
                cursor.execute(sql)
    return missing


def keep_triggers_across_migrations(app_config, *, migration: str) -> None:
    """Lift `migration`'s SQLite search triggers before any migration plan and put them back after.

    A table rebuild in the plan may be refused while the triggers exist; an app calls this from
    its `ready()` with the migration that created its search table.
    """
    from django.db import connections
    from django.db.models.signals import post_migrate, pre_migrate

    label = app_config.label

    def lift(sender, using, plan=None, **kwargs):
        if plan:
            drop_sqlite_triggers(connections[using], migration=migration, app_label=label)

    def restore(sender, using, **kwargs):
        ensure_sqlite_triggers(connections[using], migration=migration, app_label=label)

    pre_migrate.connect(lift, sender=app_config, weak=False, dispatch_uid=f"{label}-lift-search-triggers")
    post_migrate.connect(
        restore, sender=app_config, weak=False, dispatch_uid=f"{label}-restore-search-triggers"
    )
