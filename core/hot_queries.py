"""The registry of hot queries that `manage.py explain_queries` checks, and the plan rules it applies.

Each app lists its own in a `hot_queries.py` module (found like `admin.py` is), registering a
function that builds the query exactly as the page builds it:

    @hot_query("chat page: newest messages", used_by="chats.views.chat_detail")
    def newest_page():
        session = ...
        return Message.objects.for_page().filter(session=session).order_by("-seq")[:51]

A builder returns None when the data set has nothing to build its query from (it is then skipped).
`allow_scan` and `allow_sort` say why a full scan or a sort is acceptable for that query; without
them, either one on a big table fails the check.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from django.db import connections
from django.utils.module_loading import autodiscover_modules

# Tables that grow without bound: a full scan or a sort of one of these is what the check is for.
BIG_TABLES = {"chats_message", "chats_chatsession", "characters_character"}
# Below this many rows every planner rightly reads the whole table; such tables are not judged.
MIN_ROWS = 1000


@dataclass(frozen=True)
class HotQuery:
    name: str
    build: Callable[[], object]
    used_by: str = ""
    allow_scan: str = ""
    allow_sort: str = ""


@dataclass
class Verdict:
    query: HotQuery
    sql: str = ""
    plan: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


_registry: dict[str, HotQuery] = {}


def hot_query(name: str, *, used_by: str = "", allow_scan: str = "", allow_sort: str = ""):
    """Register the decorated builder under `name`."""

    def register(build):
        _registry[name] = HotQuery(name, build, used_by, allow_scan, allow_sort)
        return build

    return register


def registered() -> list[HotQuery]:
    autodiscover_modules("hot_queries")
    return list(_registry.values())


def table_rows(table: str, using: str = "default") -> int:
    """The table's row count (exact: the check runs once, on purpose, over a large data set)."""
    connection = connections[using]
    with connection.cursor() as cursor:
        # The table name comes from BIG_TABLES, never from input.
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")  # noqa: S608
        return cursor.fetchone()[0]


_SQLITE_LOOP = re.compile(r"\b(SCAN|SEARCH) (\w+)(.*)$")
_PG_SEQ = re.compile(r"Seq Scan on (\w+)")
_PG_SORT = re.compile(r"^\s*(?:->\s*)?Sort\s+\(.*?rows=(\d+)")


def _ordered_by_pk(sql: str, table: str) -> bool:
    order = sql.rpartition("ORDER BY")[2]
    return order.strip().startswith((f'"{table}"."id"', f"{table}.id"))


def judge(
    plan: str, vendor: str, *, big: set[str], sql: str, allow_scan: str = "", allow_sort: str = ""
) -> tuple[list[str], list[str]]:
    """Problems and notes for one plan. `big` holds the big tables that have enough rows to matter.

    SQLite: a plain "SCAN <big table>" is a full scan, except a walk of the primary key in ORDER BY
    order (it stops at the LIMIT); "USE TEMP B-TREE FOR ORDER BY" is a sort, a problem when the
    outermost loop reads a big table. PostgreSQL: "Seq Scan on <big table>"; a Sort node whose input
    is estimated at MIN_ROWS rows or more (an Incremental Sort, which only orders ties, is a note).
    """
    problems: list[str] = []
    notes: list[str] = []

    def flag(kind: str, message: str, allowed: str) -> None:
        if allowed:
            notes.append(f"{message} (allowed: {allowed})")
        else:
            problems.append(message)

    lines = plan.splitlines()
    if vendor == "sqlite":
        loops = [m for line in lines if (m := _SQLITE_LOOP.search(line))]
        outer = loops[0].group(2) if loops else ""
        sorted_whole = any("USE TEMP B-TREE FOR ORDER BY" in line for line in lines)
        for m in loops:
            kind, table, rest = m.groups()
            if kind == "SCAN" and table in big and "USING" not in rest:
                if not sorted_whole and _ordered_by_pk(sql, table):
                    notes.append(f"{table} is walked in primary-key order (stops at the LIMIT)")
                else:
                    flag("scan", f"full scan of {table}", allow_scan)
        for line in lines:
            if "USE TEMP B-TREE FOR ORDER BY" in line:
                if outer in big:
                    flag(
                        "sort",
                        f"a temporary sort (USE TEMP B-TREE FOR ORDER BY) of rows from {outer}",
                        allow_sort,
                    )
                else:
                    notes.append(f"a temporary sort of rows from {outer or 'a small table'}")
            elif "USE TEMP B-TREE FOR" in line:
                notes.append(line.split("USE", 1)[1].strip().lower() + " (only ties or a small set)")
    elif vendor == "postgresql":
        for line in lines:
            if (m := _PG_SEQ.search(line)) and m.group(1) in big:
                flag("scan", f"full scan of {m.group(1)} (Seq Scan)", allow_scan)
            if m := _PG_SORT.search(line):
                rows = int(m.group(1))
                if rows >= MIN_ROWS:
                    flag("sort", f"a Sort node over an estimated {rows:,} rows", allow_sort)
                else:
                    notes.append(f"a sort of an estimated {rows:,} rows")
            elif "Incremental Sort" in line:
                notes.append("an incremental sort (the index gives the order; only ties are sorted)")
    return problems, notes


def explain(
    query: HotQuery, *, using: str = "default", analyze: bool = False, sizes: dict[str, int] | None = None
) -> Verdict:
    """Build the query, ask the database for its plan and judge it."""
    verdict = Verdict(query)
    qs = query.build()
    if qs is None:
        verdict.skipped = "nothing in this data set to build it from"
        return verdict
    connection = connections[using]
    verdict.sql = qs.query.sql_with_params()[0]
    options = {"analyze": True} if analyze and connection.vendor == "postgresql" else {}
    verdict.plan = qs.explain(**options)
    sizes = sizes if sizes is not None else {t: table_rows(t, using) for t in BIG_TABLES}
    big = {t for t, n in sizes.items() if n >= MIN_ROWS}
    verdict.problems, verdict.notes = judge(
        verdict.plan,
        connection.vendor,
        big=big,
        sql=verdict.sql,
        allow_scan=query.allow_scan,
        allow_sort=query.allow_sort,
    )
    return verdict


# --- helpers for builders -------------------------------------------------------------------------


def admin_changelist_queryset(model):
    """The page of rows the admin changelist of `model` shows a superuser, as a QuerySet."""
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory
    from django.urls import resolve, reverse

    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    request = RequestFactory().get(url)
    request.user = get_user_model()(username="explain", is_staff=True, is_superuser=True, is_active=True)
    request.resolver_match = resolve(url)
    changelist = admin.site._registry[model].get_changelist_instance(request)
    return changelist.result_list
