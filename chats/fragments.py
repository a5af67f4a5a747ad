"""The chat's messages as HTML, each message's `chats/message.html` rendered once and then cached.

Rendering fifty `chats/message.html` partials through Django's template engine was two thirds of the
chat page (docs/performance.md). The partial's output depends only on what it reads, so each
message's HTML is cached under a digest of exactly that:

- every variable the template reads (found by walking the compiled template once per process:
  `message.seq`, `session.code`, the arguments of its filters and `{% url %}` tags), as the
  columns of the message's row it comes from (`message.get_role_display` from `role`, the
  avatar's URL from the speaker's code and thumbnail: COMPUTED), plus the message's text. So the
  keys of a page can be read from plain rows, with no model instances (`render_rows`): only the
  messages whose HTML is not cached yet are loaded and rendered;
- the template's own source (an edit of the template, on any process, makes new keys);
- the active language and time zone, and whether the site allows external images (the Markdown
  filter reads that setting).

The key is the content itself, never a row id: an edit, a swipe, a status change or a new avatar
URL is a new key, and an id reused after a restore can never bring back another message's HTML.
A template the walker does not fully understand (a tag or filter outside the known, pure ones, or a
value that is not plain data) is simply rendered every time, as before; `test_fragments.py`
checks that `chats/message.html` stays cacheable. A streaming message is never cached.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import uuid
import zlib
from functools import lru_cache

import orjson
from django.core.cache import caches
from django.middleware.csrf import get_token
from django.template import defaulttags, loader_tags
from django.template.base import FilterExpression, TextNode, Variable, VariableNode
from django.template.context import make_context
from django.template.loader import get_template
from django.template.smartif import TokenBase
from django.utils import timezone, translation
from django.utils.safestring import SafeString

from settings_app.models import SiteSettings

from .models import Message

TEMPLATE = "chats/message.html"
CACHE_PREFIX = "msgfrag:3"
CACHE_TIMEOUT = 7 * 24 * 3600
# Whole pages' HTML (render_rows), zlib-compressed (the benchmark's page of 100 KB is 6 KB; prose
# compresses about 3x), in the cache the API's pages use: at most PAGE_MAX_BYTES compressed, for an
# hour (each message sent makes the newest page a new key; the old one is not read again).
PAGE_CACHE = "pages"
PAGE_MAX_BYTES = 64 * 1024
PAGE_TIMEOUT = 3600

# Filters whose output depends only on their input (and the language or time zone, both keyed).
PURE_FILTERS = frozenset(
    {
        "add", "capfirst", "cut", "date", "default", "default_if_none", "escape", "first", "floatformat",
        "force_escape", "length", "linebreaksbr", "lower", "markdown", "pluralize", "slice",
        "stringformat", "time", "truncatechars", "truncatewords", "upper", "urlencode", "yesno",
    }
)  # fmt: skip
PLAIN = (str, int, float, bool, type(None), decimal.Decimal, dt.date, dt.datetime, uuid.UUID)
# Attributes the page sets from others that are in the key: the Markdown of message.content.
DERIVED = frozenset({("message", "rendered_html")})
ROOTS = frozenset({"message", "session"})
CONSTANTS = frozenset({"None", "True", "False"})  # every template context has these
# The partial's variables that are not columns of the message's row, with the columns they are
# computed from. `session.code` (in URLs) and the chat's own character (the avatar of a reply with no
# speaker of its own) are in every key's prefix. A variable neither here nor a column leaves the
# partial uncached (test_fragments.py fails then: add it here).
COMPUTED = {
    "get_role_display": ("role",),
    "is_streaming": ("status",),
    "reasoning_seconds": ("reasoning_ms",),
    "prompt_url": ("seq",),
    "pin_url": ("seq",),
    "thumb_url": ("role", "character__code", "character__thumbnail"),
}


@lru_cache(maxsize=1)
def csrf_placeholder() -> str:
    """What `{% csrf_token %}` writes into a cached fragment, replaced by this response's token.
    The same on every process (cached fragments are shared through Redis), and not guessable."""
    from django.conf import settings

    digest = hashlib.blake2b(
        b"rpchat message fragment csrf", key=settings.SECRET_KEY.encode()[:64], digest_size=16
    )
    return "csrf-" + digest.hexdigest()


class Uncacheable(Exception):
    pass


def _expressions(node) -> list[FilterExpression]:
    """The filter expressions one node reads itself (not its children's)."""
    if isinstance(node, VariableNode):
        return [node.filter_expression]
    if isinstance(node, defaulttags.IfNode):
        found = []

        def condition(c):
            if c is None:
                return
            if isinstance(getattr(c, "value", None), FilterExpression):
                found.append(c.value)
            for part in (getattr(c, "first", None), getattr(c, "second", None)):
                if isinstance(part, TokenBase):
                    condition(part)

        for cond, _ in node.conditions_nodelists:
            condition(cond)
        return found
    if isinstance(node, defaulttags.URLNode):
        if node.asvar:
            raise Uncacheable("{% url ... as var %}")
        return [node.view_name, *node.args, *node.kwargs.values()]
    if isinstance(node, (TextNode, defaulttags.LoadNode, defaulttags.CommentNode, defaulttags.CsrfTokenNode)):
        return []  # {% csrf_token %}: a placeholder, filled per response (CSRF_PLACEHOLDER)
    if isinstance(node, loader_tags.IncludeNode):
        _included(node)
        return []
    raise Uncacheable(type(node).__name__)


def _included(node):
    """The template an `{% include "name" %}` of a constant name, with no `with`/`only`, brings in."""
    name = node.template.var if isinstance(node.template, FilterExpression) else None
    if not isinstance(name, str) or node.extra_context or node.isolated_context or node.template.filters:
        raise Uncacheable("an include of a variable template or with its own context")
    return get_template(name).template


def _nodes(nodelist):
    for node in nodelist:
        yield node
        if isinstance(node, loader_tags.IncludeNode):
            yield from _nodes(_included(node).nodelist)
        elif isinstance(node, defaulttags.IfNode):
            for _, sub in node.conditions_nodelists:
                yield from _nodes(sub)
        else:
            for attr in node.child_nodelists:
                yield from _nodes(getattr(node, attr, None) or [])


def _paths(expression: FilterExpression) -> set[tuple[str, ...]]:
    paths = set()
    variables = [expression.var]
    for func, args in expression.filters:
        if getattr(func, "_filter_name", func.__name__) not in PURE_FILTERS:
            raise Uncacheable(f"filter {func.__name__}")
        variables += [arg for lookup, arg in args if lookup]
    for var in variables:
        if isinstance(var, Variable) and var.lookups is not None:
            if var.lookups[0] in CONSTANTS:
                continue
            if var.lookups[0] not in ROOTS:
                raise Uncacheable(f"variable {var.var}")
            paths.add(tuple(var.lookups))
    return paths


@lru_cache(maxsize=4)
def _plan(template_id: int) -> tuple[str, tuple[tuple[str, ...], ...]] | None:
    """(digest of the template's source, the variable paths it reads), or None if uncacheable."""
    template = get_template(TEMPLATE).template
    try:
        paths = set()
        for node in _nodes(template.nodelist):
            for expression in _expressions(node):
                paths |= _paths(expression)
    except Uncacheable:
        return None
    paths = [*sorted(p for p in paths if p not in DERIVED), ("message", "content")]
    sources = [template.source] + [
        _included(node).source
        for node in _nodes(template.nodelist)
        if isinstance(node, loader_tags.IncludeNode)
    ]
    source = hashlib.blake2b("\x00".join(sources).encode(), digest_size=16).hexdigest()
    return source, tuple(paths)


def plan():
    template = get_template(TEMPLATE).template
    return _plan(id(template))


@lru_cache(maxsize=1)
def _row_fields() -> frozenset[str]:
    return frozenset(f.name for f in Message._meta.concrete_fields if not f.is_relation)


def columns() -> tuple[str, ...] | None:
    """The message columns a key is made of (`values()` names), or None when the partial reads
    something that is not one: it is then rendered every time."""
    found = plan()
    if found is None:
        return None
    wanted = ["seq", "status"]
    for root, *rest in found[1]:
        if root == "session":
            continue  # the same for the whole page: in the prefix
        if len(rest) != 1:
            return None
        if rest[0] in COMPUTED:
            wanted += COMPUTED[rest[0]]
        elif rest[0] in _row_fields():
            wanted.append(rest[0])
        else:
            return None
    return tuple(dict.fromkeys(wanted))


def _value(message: Message, column: str):
    """A column of `message` as `values()` gives it: a related row's through `__`, a file's name."""
    if column.startswith("character__"):
        if message.character_id is None:
            return None
        value = getattr(message.character, column.removeprefix("character__"))
    else:
        value = getattr(message, column)
    return getattr(value, "name", value) if hasattr(value, "field") else value


def _session_value(session, path: tuple[str, ...]):
    value = session
    for name in path:
        value = getattr(value, name, None)
        if callable(value) and not getattr(value, "do_not_call_in_templates", False):
            value = value()
    return value


def _prefix(request, session, found) -> str | None:
    """What every key of this page shares: the template, language, time zone, the image setting,
    and the chat's values the partial reads (None when one is not plain data: no caching)."""
    source, paths = found
    page = [_session_value(session, path[1:]) for path in paths if path[0] == "session"]
    # The avatar of a reply whose speaker is the chat's own character.
    page += [str(session.character.code), session.character.thumbnail.name or ""]
    if not all(isinstance(v, PLAIN) for v in page):
        return None
    allow_images = SiteSettings.for_request(request).allow_external_media
    digest = hashlib.blake2b(repr(page).encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()
    return (
        f"{CACHE_PREFIX}:{source}:{translation.get_language()}:"
        f"{timezone.get_current_timezone_name()}:{int(allow_images)}:{digest}"
    )


def _key(prefix: str, values: tuple) -> str | None:
    if not all(isinstance(v, PLAIN) for v in values):
        return None
    try:
        data = orjson.dumps(values, default=repr)  # half the time of repr() on a message's text
    except orjson.JSONEncodeError:  # a lone surrogate, an int past 64 bits
        data = repr(values).encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(data, digest_size=20).hexdigest()
    return f"{prefix}:{digest}"


def _instance_key(prefix: str, cols: tuple, message: Message) -> str | None:
    if message.status == Message.Status.STREAMING:
        return None
    return _key(prefix, tuple(_value(message, c) for c in cols))


def _row_key(prefix: str, cols: tuple, row: dict) -> str | None:
    if row["status"] == Message.Status.STREAMING:
        return None
    return _key(prefix, tuple(row[c] for c in cols))


def _read(message: Message) -> dict | Message:
    """What the partial reads of `message`, as a dict: the template engine finds a dict's key at its
    first try, where an instance's attribute comes after a failed `message[name]` (a third less
    time per partial). Each value as the engine would resolve it: a method called, unless it alters
    data or asks not to be; a missing attribute left out, so it reads as empty. The instance itself
    when the partial reads what the plan does not list (it is then not cached either)."""
    found = plan()
    if found is None:
        return message
    values = {}
    for name in _message_attributes(found[1]):
        try:
            value = getattr(message, name)
        except AttributeError:
            continue
        if callable(value) and not getattr(value, "do_not_call_in_templates", False):
            if getattr(value, "alters_data", False):
                continue
            value = value()
        values[name] = value
    return values


@lru_cache(maxsize=4)
def _message_attributes(paths: tuple) -> tuple[str, ...]:
    names = [path[1] for path in paths if path[0] == "message" and len(path) > 1]
    names += [path[1] for path in DERIVED if path[0] == "message"]
    return tuple(dict.fromkeys(names))


def _render(request, session, messages, prepare) -> dict[int, str]:
    """Each message's partial, rendered (by id(message)); csrf_token as the placeholder."""
    prepare(request, session, messages)
    template = get_template(TEMPLATE).template
    context = make_context({"session": session, "csrf_token": csrf_placeholder()}, request)
    fresh = {}
    with context.bind_template(template):
        for m in messages:
            with context.push(message=_read(m)):
                fresh[id(m)] = str(template.render(context))
    return fresh


def _with_token(request, html: str) -> SafeString:
    """The messages' HTML with this response's CSRF token in place of the placeholder."""
    placeholder = csrf_placeholder()
    if placeholder in html:
        html = html.replace(placeholder, get_token(request))  # one masked token for the page
    return SafeString(html)  # our template's output


def _page_key(prefix: str, cols: tuple, rows: list[dict]) -> str | None:
    """The key of a whole page's HTML: the digest of every row's fragment key values, in order
    (each fragment is a pure function of its values, so the page is of all of them)."""
    if any(r["status"] == Message.Status.STREAMING for r in rows):
        return None
    return _key(f"{prefix}:page", tuple(r[c] for r in rows for c in cols))


def _stored_page(html: str) -> bytes:
    return zlib.compress(html.encode("utf-8", "surrogatepass"), 1)


def _read_page(stored: bytes) -> str:
    return zlib.decompress(stored).decode("utf-8", "surrogatepass")


def render_rows(request, session, rows: list[dict], load, prepare) -> SafeString:
    """The HTML of the messages of a page read as plain rows (with `columns()` and `seq`), in
    order. The whole page's HTML is kept under the digest of all its rows (PAGE_CACHE, compressed);
    else the cached messages are found by their rows' keys and the rest loaded (`load(seqs)`:
    their instances) and rendered. A message gone between the two reads is left out."""
    found = plan()
    cols = columns()
    prefix = _prefix(request, session, found) if found is not None and cols is not None else None
    if prefix is None:
        return render_messages(request, session, load([r["seq"] for r in rows]), prepare)
    page_key = _page_key(prefix, cols, rows) if rows else None
    pages = caches[PAGE_CACHE]
    if page_key is not None and (stored := pages.get(page_key)) is not None:
        return _with_token(request, _read_page(stored))
    keys = [_row_key(prefix, cols, r) for r in rows]
    wanted = [k for k in keys if k]
    cache = caches["default"]
    cached = cache.get_many(wanted) if wanted else {}
    missing = [r["seq"] for r, k in zip(rows, keys, strict=True) if k is None or k not in cached]
    by_seq: dict[int, str] = {}
    # Whether every message rendered here was as its row was read (else the page is not kept).
    as_read = True
    if missing:
        messages = load(missing)
        fresh = _render(request, session, messages, prepare)
        row_keys = {r["seq"]: k for r, k in zip(rows, keys, strict=True)}
        new = {}
        for m in messages:
            by_seq[m.seq] = fresh[id(m)]
            # Under the key of what was rendered (the row may have changed since the first read).
            key = _instance_key(prefix, cols, m)
            if key is not None:
                new[key] = fresh[id(m)]
            as_read = as_read and key is not None and key == row_keys.get(m.seq)
        if new:
            cache.set_many(new, timeout=CACHE_TIMEOUT)
    html = []
    for r, k in zip(rows, keys, strict=True):
        if k is not None and k in cached:
            html.append(cached[k])
        elif r["seq"] in by_seq:
            html.append(by_seq[r["seq"]])
    joined = "".join(html)
    # Kept only as the rows were read: none changed before it was rendered, none deleted since.
    if page_key is not None and as_read and len(html) == len(rows):
        stored = _stored_page(joined)
        if len(stored) <= PAGE_MAX_BYTES:
            pages.set(page_key, stored, timeout=PAGE_TIMEOUT)
    return _with_token(request, joined)


def render_messages(request, session, messages, prepare) -> SafeString:
    """Each message's HTML, in order; `prepare(request, session, messages)` attaches what the
    template reads (URLs, rendered Markdown) to the messages that have to be rendered."""
    found = plan()
    cols = columns()
    keys: list[str | None] = [None] * len(messages)
    cached: dict[str, str] = {}
    cache = caches["default"]
    prefix = _prefix(request, session, found) if found is not None and cols is not None else None
    if prefix is not None:
        keys = [_instance_key(prefix, cols, m) for m in messages]
        wanted = [k for k in keys if k]
        cached = cache.get_many(wanted) if wanted else {}
    missing = [m for m, k in zip(messages, keys, strict=True) if k is None or k not in cached]
    fresh = _render(request, session, missing, prepare) if missing else {}
    new = {k: fresh[id(m)] for m, k in zip(messages, keys, strict=True) if k is not None and id(m) in fresh}
    if new:
        cache.set_many(new, timeout=CACHE_TIMEOUT)
    html = "".join(
        cached[k] if k is not None and k in cached else fresh[id(m)]
        for m, k in zip(messages, keys, strict=True)
    )
    return _with_token(request, html)
