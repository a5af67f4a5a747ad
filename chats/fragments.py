"""The chat's messages as HTML, each message's `chats/message.html` rendered once and then cached.

Rendering fifty `chats/message.html` partials through Django's template engine was two thirds of the
chat page (docs/performance.md). The partial's output depends only on what it reads, so each
message's HTML is cached under a digest of exactly that:

- every variable the template reads (found by walking the compiled template once per process:
  `message.seq`, `session.code`, the arguments of its filters and `{% url %}` tags), resolved for
  the message, plus the message's text;
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
from functools import lru_cache

from django.core.cache import caches
from django.middleware.csrf import get_token
from django.template import defaulttags, loader_tags
from django.template.base import FilterExpression, TextNode, Variable, VariableNode
from django.template.context import make_context
from django.template.loader import get_template
from django.template.smartif import TokenBase
from django.utils import timezone, translation
from django.utils.safestring import SafeString, mark_safe

from settings_app.models import SiteSettings

from .models import Message

TEMPLATE = "chats/message.html"
CACHE_PREFIX = "msgfrag:1"
CACHE_TIMEOUT = 7 * 24 * 3600

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
_MISSING = object()


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


def _resolve(context: dict, path: tuple[str, ...]):
    value = context
    for bit in path:
        value = value.get(bit, _MISSING) if isinstance(value, dict) else getattr(value, bit, _MISSING)
        if value is _MISSING:
            return None
        if callable(value) and not getattr(value, "do_not_call_in_templates", False):
            value = value()
    if not isinstance(value, PLAIN):
        raise Uncacheable(f"{'.'.join(path)} is a {type(value).__name__}")
    return value


def _key(prefix: str, paths, message: Message, session) -> str | None:
    if message.status == Message.Status.STREAMING:
        return None
    context = {"message": message, "session": session}
    try:
        values = tuple(_resolve(context, p) for p in paths)
    except Uncacheable:
        return None
    digest = hashlib.blake2b(repr(values).encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()
    return f"{prefix}:{digest}"


def render_messages(request, session, messages, prepare) -> list[SafeString]:
    """Each message's HTML, in order; `prepare(request, session, messages)` attaches what the
    template reads (URLs, rendered Markdown) to the messages that have to be rendered."""
    found = plan()
    keys: list[str | None] = [None] * len(messages)
    cached: dict[str, str] = {}
    fresh: dict[int, SafeString] = {}
    cache = caches["default"]
    if found is not None:
        source, paths = found
        allow_images = SiteSettings.for_request(request).allow_external_media
        prefix = (
            f"{CACHE_PREFIX}:{source}:{translation.get_language()}:"
            f"{timezone.get_current_timezone_name()}:{int(allow_images)}"
        )
        prepare(request, session, messages, markdown=False)
        keys = [_key(prefix, paths, m, session) for m in messages]
        wanted = [k for k in keys if k]
        cached = cache.get_many(wanted) if wanted else {}
    missing = [m for m, k in zip(messages, keys, strict=True) if k is None or k not in cached]
    if missing:
        prepare(request, session, missing)
        template = get_template(TEMPLATE).template
        context = make_context({"session": session, "csrf_token": csrf_placeholder()}, request)
        with context.bind_template(template):
            for m in missing:
                with context.push(message=m):
                    fresh[id(m)] = template.render(context)
        new = {}
        for m, k in zip(messages, keys, strict=True):
            if k is not None and id(m) in fresh:
                new[k] = str(fresh[id(m)])
        if new:
            cache.set_many(new, timeout=CACHE_TIMEOUT)
        cached = {**cached, **new}
    html = [
        cached[k] if k is not None and k in cached else str(fresh[id(m)])
        for m, k in zip(messages, keys, strict=True)
    ]
    placeholder = csrf_placeholder()
    if any(placeholder in h for h in html):
        token = get_token(request)  # one masked token for the page, as one render would use
        html = [h.replace(placeholder, token) for h in html]
    return [mark_safe(h) for h in html]  # noqa: S308 - our template's output
