"""The character page's text, as its viewer will meet it in a chat: {{char}} and {{user}} (and the
older <BOT> and <USER>) replaced by the names they stand for, every other macro left as written."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db.models import Q
from django.db.models.expressions import Col
from django.db.models.lookups import Exact

from core.http import once_per_request
from settings_app.models import Persona

from .models import Character

# Linear: one pass, no nesting, each match bounded by its braces.
_NAMES = re.compile(r"\{\{\s*(char|user)\s*\}\}|<(bot|user)>", re.IGNORECASE)
_START = re.compile(r"^[^\S\n]*<START>[^\S\n]*$", re.IGNORECASE | re.MULTILINE)
# Entries of the card's own lorebook shown on the page; a card may carry thousands.
LORE_SHOWN = 100


@once_per_request
def viewer_name(request) -> str:
    """What {{user}} becomes for this viewer in a new chat: their default persona, else their name."""
    # The user column itself, not the relation: cachalot caches no query that names auth_user.
    mine = Exact(Col(Persona._meta.db_table, Persona._meta.get_field("user")), request.user.pk)
    persona = Persona.objects.filter(Q(mine), is_default=True).only("name").first()
    return persona.name if persona else request.user.get_username()


def for_viewer(text: str, *, char: str, user: str) -> str:
    return _NAMES.sub(lambda m: char if (m.group(1) or m.group(2)).lower() in ("char", "bot") else user, text)


@dataclass
class CardText:
    """The fields a writer gave, in the order a reader wants them, names filled in."""

    sections: list[tuple[str, str]] = field(default_factory=list)  # (heading, Markdown)
    greetings: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    mentions_user: bool = False


def card_text(character: Character, *, user_name: str) -> CardText:
    char = character.display_name

    def fill(text: str) -> str:
        return for_viewer(text or "", char=char, user=user_name).strip()

    every = [
        character.description,
        character.personality,
        character.scenario,
        *character.greetings(),
        character.example_dialogue,
        character.system_prompt,
        character.post_history_instructions,
    ]
    result = CardText(
        mentions_user=any(re.search(r"\{\{\s*user\s*\}\}|<user>", t or "", re.I) for t in every)
    )
    for heading, text in (
        ("Description", character.description),
        ("Personality", character.personality),
        ("Scenario", character.scenario),
    ):
        if text.strip():
            result.sections.append((heading, fill(text)))
    result.greetings = [fill(g) for g in character.greetings()]
    result.examples = [
        fill(block) for block in _START.split(character.example_dialogue or "") if block.strip()
    ]
    depth = character.extensions.get("depth_prompt") if isinstance(character.extensions, dict) else None
    for heading, text in (
        ("System prompt", character.system_prompt),
        ("Post-history instructions", character.post_history_instructions),
        ("Character's note", depth.get("prompt", "") if isinstance(depth, dict) else ""),
    ):
        if isinstance(text, str) and text.strip():
            result.notes.append((heading, fill(text)))
    return result
