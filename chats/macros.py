"""Card macros: {{char}}, {{user}} and friends, case-insensitive, as the V2 and V3 specs describe."""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass

from django.utils import timezone

_MACRO = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_LEGACY = re.compile(r"<(BOT|USER)>", re.IGNORECASE)


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
        return [c for c in arg[1:].split("::")]
    return [c.strip() for c in arg.split(",")]


def expand(text: str, ctx: MacroContext, *, rng: random.Random | None = None) -> str:
    """Replace every macro in `text`; unknown ones are left as written."""
    if not text:
        return text
    rng = rng or random.Random()
    now = timezone.localtime()
    position = 0

    def replace(match: re.Match) -> str:
        nonlocal position
        position += 1
        body = match.group(1)
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
            if sides.isdigit() and int(sides) > 0:
                return str(rng.randint(1, int(sides)))
        return match.group(0)

    text = _MACRO.sub(replace, text)
    return _LEGACY.sub(lambda m: ctx.char if m.group(1).upper() == "BOT" else ctx.user, text)
