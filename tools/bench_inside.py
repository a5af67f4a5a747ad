"""The parts of `manage.py bench` that run inside the bench database (through `manage.py bench_probe`).

`manage.py bench` itself never opens a database: it runs these in a child process whose
DATABASE_URL points at the bench database, and reads their JSON from its standard output.
"""

from __future__ import annotations

import secrets
import statistics
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver

from characters.models import Character
from chats.models import ChatSession
from tools import load_data


def _routes(patterns=None, prefix: str = "") -> list[str]:
    routes = []
    for p in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(p, URLResolver):
            routes += _routes(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            routes.append(prefix + str(p.pattern))
    return routes


def find_route(kind: str) -> str:
    """A URL template with {code} / {q} for the JSON API's chat page or for search, if one exists.

    Both are built in parallel to this benchmark; it finds them by the shape of their routes.
    """
    for route in _routes():
        r = route.lstrip("^")
        if (
            kind == "api_chat"
            and r.startswith("api/")
            and "messages" in r
            and ("<uuid:" in r or "<uuidstr:" in r)
            and "search" not in r
            and r.count("<") == 1
        ):
            return "/" + r.split("<", 1)[0] + "{code}" + r.split(">", 1)[1]
        if kind == "search" and "search" in r and "<" not in r:
            return "/" + r + "?q={q}"
    return ""


def _nominal(session: ChatSession) -> int:
    try:
        return int(session.title.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return session.message_count


def _newest(session: ChatSession) -> dict:
    """The newest message's seq and version: what the benchmark's edits change."""
    from chats.models import Message

    newest = Message.objects.filter(session=session).order_by("-seq").values("seq", "version").first()
    return {"edit_seq": newest["seq"], "edit_version": newest["version"]} if newest else {}


def describe(*, set_passwords: bool = True) -> dict:
    """What the data set holds for the benchmark, with fresh passwords for its users."""
    User = get_user_model()
    chats = sorted(
        (
            # The size it was made with: the benchmark's sends add a few messages to each chat.
            {
                "size": _nominal(s),
                "messages": s.message_count,
                "title": s.title,
                "code": str(s.code),
                "last_seq": s.last_seq,
                **_newest(s),
            }
            for s in ChatSession.objects.filter(
                user__username=load_data.BENCH_USER, title__startswith="Bench chat "
            )
        ),
        key=lambda c: c["size"],
    )
    sets = []
    for user in User.objects.filter(username__startswith="bench-chars-").order_by("id"):
        size = int(user.username.rsplit("-", 1)[1])
        sets.append(
            {
                "size": size,
                "username": user.username,
                "characters": Character.objects.filter(owner=user).count(),
            }
        )
    sets.sort(key=lambda s: s["size"])
    passwords = {}
    if set_passwords:
        for user in User.objects.filter(username__in=[load_data.BENCH_USER] + [s["username"] for s in sets]):
            password = secrets.token_urlsafe(18)
            user.set_password(password)
            user.save(update_fields=["password"])
            passwords[user.username] = password
    return {
        "vendor": connection.vendor,
        "chats": chats,
        "sets": sets,
        "passwords": passwords,
        "routes": {"api_chat": find_route("api_chat"), "search": find_route("search")},
    }


def _stats(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 3),
        "p95_ms": round(ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))], 3),
        "max_ms": round(ordered[-1], 3),
    }


def time_prompts(*, repeat: int) -> dict[str, list[dict]]:
    """Time chats.prompt.build_prompt for each bench chat, as the generation task calls it: without
    memory (the baseline, "prompt") and with it ("prompt_memory": a pinned fact, and recall of the
    messages outside the window that match the newest messages' words, chats/memory.py).

    The two are built in turns, so both see the same moment of the machine: timed one after the
    other, in processes of their own, the ratio between them moved from 1.16x to 1.76x between
    three runs on an idle machine.
    """
    from chats import memory
    from chats.prompt import build_prompt
    from settings_app import engines
    from settings_app.models import SiteSettings

    site = SiteSettings.load()
    config = engines.resolve_engine(site) if site.active_profile_id else None
    context_size = config.context_size if config else site.builtin_context_size
    reply_tokens = int(config.sampling.get("max_tokens") or 0) if config else site.builtin_max_tokens
    results = {"prompt": [], "prompt_memory": []}
    sessions = ChatSession.objects.filter(
        user__username=load_data.BENCH_USER, title__startswith="Bench chat "
    ).select_related("character", "persona")
    for session in sorted(sessions, key=_nominal):

        def build(use_memory: bool, session=session):
            return build_prompt(
                session=session,
                character=session.character,
                user_name=load_data.BENCH_USER,
                persona_description="",
                site=site,
                context_size=context_size,
                reply_tokens=reply_tokens,
                before_seq=session.last_seq + 1,
                use_memory=use_memory,
            )

        if not session.facts.exists():
            memory.add_fact(session=session, text="The bench character keeps a silver key.")
        for op, use_memory in (("prompt", False), ("prompt_memory", True)):
            build(use_memory)  # warm
            with CaptureQueriesContext(connection) as queries:
                prompt = build(use_memory)
            results[op].append(
                {
                    "size": _nominal(session),
                    "times": [],
                    "queries": len(queries.captured_queries),
                    "history_included": prompt.history_included,
                    "memory_items": sum(1 for i in prompt.memory.get("items", []) if i["included"]),
                    "memory_tokens": prompt.memory.get("tokens", 0),
                    "context_size": context_size,
                    "requests": repeat,
                }
            )
        for _ in range(repeat):
            for op, use_memory in (("prompt", False), ("prompt_memory", True)):
                started = time.perf_counter()
                build(use_memory)
                results[op][-1]["times"].append((time.perf_counter() - started) * 1000)
    for rows in results.values():
        for row in rows:
            row.update(_stats(row.pop("times")))
    return results


# Where the time of a request goes, by the first of these found in a frame's file path.
CATEGORIES = (
    ("markdown rendering", ("/markdown_it/", "/nh3", "core/markdown.py", "mdurl")),
    ("template rendering", ("/django/template/", "/templatetags/")),
    ("database driver", ("sqlite3", "/psycopg/", "/psycopg_pool/")),
    ("ORM (query building, model instances)", ("/django/db/",)),
    ("cache", ("/django/core/cache/", "/cachalot/", "/redis/")),
    ("sessions and auth", ("/django/contrib/sessions/", "/django/contrib/auth/")),
    (
        "middleware and request handling",
        ("/django/core/handlers/", "/django/middleware/", "middleware", "/django/http/", "/django/urls/"),
    ),
    ("view code", ("/chats/", "/characters/", "/settings_app/", "/rpchat/")),
)


def _category(path: str) -> str | None:
    for name, needles in CATEGORIES:
        if any(n in path for n in needles):
            return name
    return None


def _attribute(frame, inherited: str, totals: dict) -> None:
    own = _category(frame.file_path or "") or inherited
    if own == "view code" and inherited not in ("other", "view code"):
        own = inherited  # a library calling back into our code stays the library's
    totals[own] = totals.get(own, 0.0) + frame.total_self_time
    for child in frame.children:
        if not child.is_synthetic:  # synthetic children are already in total_self_time
            _attribute(child, own, totals)


def profile_pages(*, urls: dict[str, str], username: str, repeat: int, output: Path) -> dict:
    """Profile each URL with pyinstrument through Django's full handler; where the time goes."""
    from django.test import Client
    from pyinstrument import Profiler

    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(get_user_model().objects.get(username=username))
    results = {}
    output.mkdir(parents=True, exist_ok=True)
    for name, url in urls.items():
        for _ in range(3):
            client.get(url)
        profiler = Profiler(interval=0.0005)
        profiler.start()
        for _ in range(repeat):
            client.get(url)
        profiler.stop()
        session = profiler.last_session
        totals: dict[str, float] = {}
        root = session.root_frame()
        if root is not None:
            _attribute(root, "other", totals)
        whole = sum(totals.values()) or 1.0
        (output / f"profile-{name}.html").write_text(profiler.output_html())
        results[name] = {
            "url_kind": name,
            "per_request_ms": round(session.duration * 1000 / repeat, 3),
            "share": {k: round(v / whole, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
            "html": f"profile-{name}.html",
        }
    return results


def st_user(username: str) -> dict:
    """The user that owns one imported SillyTavern data set and nothing else (made if missing)."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()
        user.save()
    owned = Character.objects.filter(owner=user, deleted_at__isnull=True).count()
    return {"username": username, "created": created, "characters": owned}


def describe_st(username: str) -> dict:
    """What one imported SillyTavern data set became for its own user, with a fresh password."""
    user = get_user_model().objects.get(username=username)
    chats = []
    for s in ChatSession.objects.filter(user=user, deleted_at__isnull=True).order_by("id"):
        chats.append(
            {
                "title": s.title,
                "messages": s.message_count,
                "code": str(s.code),
                "last_seq": s.last_seq,
                **_newest(s),
            }
        )
    password = secrets.token_urlsafe(18)
    user.set_password(password)
    user.save(update_fields=["password"])
    return {
        "username": username,
        "password": password,
        "characters": Character.objects.filter(owner=user, deleted_at__isnull=True).count(),
        "chats": chats,
    }
