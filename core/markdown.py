"""Markdown for untrusted text: model output, card fields, imported chats.

markdown-it-py renders CommonMark with raw HTML disabled (it comes out escaped), then nh3 keeps only
an allowlist of tags and attributes, so no script, event handler, iframe or javascript: URL survives.
Images from other sites are dropped unless the operator allows external media.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Hashable

import nh3
from markdown_it import MarkdownIt

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "breaks": True}).enable("strikethrough")

ALLOWED_TAGS = {
    "p",
    "br",
    "em",
    "strong",
    "del",
    "s",
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "a",
    "q",
    "span",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "span": {"class"}, "img": {"src", "alt", "title"}}
# "Quoted speech" is shown apart from narration, as roleplay frontends do: an opening quote not
# after a letter or `=` (an attribute), up to the next closing quote at least one character on.
_QUOTE_OPEN = re.compile(r"(?<![\w=])(?:&quot;|“)")
_QUOTE_CLOSE = re.compile(r"&quot;|”")


def _mark_quotes(html: str) -> str:
    """Wrap each quotation in <span class="quote">, in one pass over `html`.

    A single regex, `(&quot;|“)(.+?)(&quot;|”)`, would rescan the rest of the text from every
    opening quote that has no closing one: quadratic time on a text of many “. Here the scan stops
    at the first opening quote with no closing quote after it, since no later one can have one.
    """
    out: list[str] = []
    done = 0
    while opening := _QUOTE_OPEN.search(html, done):
        closing = _QUOTE_CLOSE.search(html, opening.end() + 1)
        if closing is None:
            break
        out.append(html[done : opening.start()])
        out.append(f'<span class="quote">{html[opening.start() : closing.end()]}</span>')
        done = closing.end()
    out.append(html[done:])
    return "".join(out)


def render(text: str, *, allow_images: bool = False) -> str:
    """Safe HTML for `text`."""
    if not text:
        return ""
    html = _md.render(text)
    html = _mark_quotes(html)
    tags = ALLOWED_TAGS | ({"img"} if allow_images else set())
    return nh3.clean(
        html,
        tags=tags,
        attributes={k: v for k, v in ALLOWED_ATTRIBUTES.items() if k in tags},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow ugc",
        strip_comments=True,
    )


# Bump the number when render() changes its output, so no page shows HTML rendered the old way.
CACHE_PREFIX = "md:2"
CACHE_TIMEOUT = 7 * 24 * 3600


def _cache_key(text: str, allow_images: bool) -> str:
    # The key is the text itself (its digest), never the row it came from: ids are reused after a
    # restore or a purge, and a key naming a row would then hand one user's text to another.
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=20).hexdigest()
    return f"{CACHE_PREFIX}:{int(allow_images)}:{digest}"


def render_cached(texts: dict[Hashable, str], *, allow_images: bool = False) -> dict[Hashable, str]:
    """render() for many texts at once, reusing the cache: {label: text} in, {label: html} out.

    Entries are found by the text's digest, so a cached rendering is right by construction for
    whatever text asks for it: nothing is ever invalidated, old entries just expire. The labels
    only pair answers with questions. One cache round trip for a whole page.
    """
    from django.core.cache import cache

    keys = {label: _cache_key(text, allow_images) for label, text in texts.items()}
    found = cache.get_many(set(keys.values())) if keys else {}
    out, fresh = {}, {}
    for label, text in texts.items():
        key = keys[label]
        html = found.get(key)
        if html is None:
            html = found[key] = fresh[key] = render(text, allow_images=allow_images)
        out[label] = html
    if fresh:
        cache.set_many(fresh, CACHE_TIMEOUT)
    return out
