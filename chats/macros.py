"""Card macros: {{char}}, {{user}} and friends, case-insensitive, as the V2 and V3 specs describe."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from django.utils import timezone

_LEGACY = re.compile(r"<(BOT|USER)>", re.IGNORECASE)


# {{roll:dN}} rolls one die of at most this many sides; a larger one is left as written.
MAX_DIE_SIDES = 1_000_000


@dataclass(frozen=True)
class MacroContext:
    char: str
    user: str
    # Seeds {{pick}} so it gives the same choice every time within one chat.
    chat_seed: str = ""
    original: str = ""


def _choices(arg: str) -> list[str]:
    # {{random::a::b}} (SillyTavern) and {{random:a,b}} (spec) both appear in cards.
    if arg.startswith(":"):
        return arg[1:].split("::")
    return [c.strip() for c in arg.split(",")]


def expand(text: str, ctx: MacroContext, *, rng: random.Random | None = None) -> str:
    """Replace every macro in `text`; unknown ones are left as written."""
    if not text:
        return text
    rng = rng or random.Random()
    now = timezone.localtime()
    position = 0

    def replace(whole: str, body: str) -> str:
        nonlocal position
        position += 1
        name, sep, arg = body.partition(":")
        key = name.strip().lower()
        if body.lstrip().startswith("//"):
            return ""
        if key == "char":
            return ctx.char
        if key == "user":
            return ctx.user
        if key == "original":
            return ctx.original
        if key == "time":
            return now.strftime("%H:%M")
        if key == "date":
            return now.strftime("%B %d, %Y").replace(" 0", " ")
        if key == "random" and sep:
            return rng.choice(_choices(arg))
        if key == "pick" and sep:
            options = _choices(arg)
            digest = hashlib.sha256(f"{ctx.chat_seed}:{position}:{arg}".encode()).digest()
            return options[int.from_bytes(digest[:4], "big") % len(options)]
        if key == "roll" and sep:
            sides = arg.strip().lower().lstrip("d")
            # Length first: int() of thousands of digits is slow, and past 4,300 refused.
            if (
                sides.isdecimal()
                and len(sides) <= len(str(MAX_DIE_SIDES))
                and 0 < int(sides) <= MAX_DIE_SIDES
            ):
                return str(rng.randint(1, int(sides)))
        return whole

    text = _substitute(text, replace)
    return _LEGACY.sub(lambda m: ctx.char if m.group(1).upper() == "BOT" else ctx.user, text)


def _substitute(text: str, replace) -> str:
    r"""`text` with each {{…}} (up to the first }} after it) replaced by replace(whole, body).

    One pass with str.find: a regex like `\{\{(.*?)\}\}` rescans the rest of the text from every
    `{{` that has no `}}` after it, quadratic time on a text of many `{{`. Here, once a `{{` has no
    closing `}}`, no later one can have one either, and the scan stops.
    """
    out: list[str] = []
    done = 0
    while (start := text.find("{{", done)) != -1:
        end = text.find("}}", start + 2)
        if end == -1:
            break
        out.append(text[done:start])
        out.append(replace(text[start : end + 2], text[start + 2 : end]))
        done = end + 2
    out.append(text[done:])
    return "".join(out)
