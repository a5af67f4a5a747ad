"""Every pass over user or card text is linear in its length (docs/security.md, "Untrusted text").

Each function gets 100 KB of the shape that was its worst case, and a few other hostile shapes.
The old regexes took from half a minute to several minutes on these inputs while holding the GIL,
so every other request of the process waited; `finishes` fails the test after 10 s instead.
"""

from __future__ import annotations

import pytest

from chats import story
from chats.macros import MacroContext, expand
from core.markdown import render
from settings_app.templatetags.rp import summary
from tests.hang import finishes

SIZE = 100_000


def of(unit: str) -> str:
    return unit * (SIZE // len(unit))


@pytest.mark.parametrize(
    "text, expected",
    [
        (of("["), of("[")),  # every `[` used to rescan the rest looking for `]`
        (of("\n"), ""),  # every line start used to rescan the rest looking for `#` or `>`
        (of("[]("), of("[](")),  # every link used to rescan the rest looking for `)`
        (of(" \n>"), ""),
        (of("[a]("), of("[a](")),
        (of("*_`~"), ""),
        (of("[x](y) "), " ".join(["x"] * (SIZE // 7))),
    ],
    ids=["brackets", "newlines", "open links", "quote lines", "link texts", "emphasis", "links"],
)
def test_a_gallery_summary_of_100_kb_of_markup_finishes(text, expected):
    assert finishes(summary, text) == expected


def test_a_summary_still_drops_markers_and_keeps_the_words_of_links():
    text = "# Mira\n\n> **Bold** pilot, _calm_ under ~~fire~~. See [her ship](https://example.org/ship)."
    assert summary(text) == "Mira Bold pilot, calm under fire. See her ship."


CTX = MacroContext(char="Mira", user="Olivia", chat_seed="seed")


@pytest.mark.parametrize(
    "text, expected",
    [
        (of("{{"), of("{{")),  # every `{{` used to rescan the rest looking for `}}`
        (of("{{a"), of("{{a")),
        (of("{{") + "}}" + of("{{"), of("{{") + "}}" + of("{{")),
        ("{{user}}" + of("{") + "{{char}}", "Olivia" + of("{") + "{{char}}"),
        (of("{{user}}"), "Olivia" * (SIZE // 8)),
        ("{{roll:d" + "9" * SIZE + "}}", "{{roll:d" + "9" * SIZE + "}}"),
    ],
    ids=["opening braces", "unclosed macros", "one closing in the middle", "braces", "many", "huge die"],
)
def test_macros_in_100_kb_of_braces_finish(text, expected):
    assert finishes(expand, text, CTX) == expected


def test_macros_are_still_replaced_and_unknown_ones_left_as_written():
    text = "{{char}} meets {{USER}}; {{unknown}} stays, {{// a note}}gone, <BOT> too."
    assert expand(text, CTX) == "Mira meets Olivia; {{unknown}} stays, gone, Mira too."


@pytest.mark.parametrize(
    "text",
    [of("“"), of('"'), of("“a"), of("=“"), of("["), of("“a” ")],
    ids=["curly quotes", "straight quotes", "curly quoted words", "attribute-like", "brackets", "pairs"],
)
def test_quote_highlighting_of_100_kb_of_quotes_finishes(text):
    html = finishes(render, text)
    assert html.startswith("<p>") and len(html) >= SIZE


def test_quoted_speech_is_still_marked_apart_from_narration():
    html = render('She said "Hello" and “goodbye”, then left. a="b" stays.')
    assert html == (
        '<p>She said <span class="quote">"Hello"</span> and <span class="quote">“goodbye”</span>, '
        'then left. a="b" stays.</p>\n'
    )


@pytest.mark.parametrize(
    "template, params, expected",
    [
        ("{{#if a}}" * (SIZE // 16) + "x" + "{{/if}}" * (SIZE // 16), {"a": "1"}, "x"),
        (of("\n{{trim}}") + "end", {}, "end"),  # every trim reaching back over the emptied pieces
        ("{{#if a}}" + of("{{"), {}, ""),  # an unclosed tag
        (of("{{x}}"), {}, of("{{x}}")),  # unknown macros, left as written
        (of("{{#if a}}{{else}}"), {"a": ""}, ""),
        (of("{{description}}"), {"description": "{{#if"}, "{{#if" * (SIZE // 15)),
    ],
    ids=["nested blocks", "trims", "unclosed", "unknown macros", "else toggles", "values"],
)
def test_a_story_string_of_100_kb_of_tags_finishes(template, params, expected):
    assert finishes(story.render_story, template, params, CTX) == expected
