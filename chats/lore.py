"""Lorebook activation: which entries a reply's prompt carries.

Entries come from the speaking character's own book, the global books attached to the character, and
the global books attached to the chat, in one query. Keys are matched against the last `scan_depth`
messages only (the window the prompt builder has already read), never the whole chat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db.models import Q

from characters.models import Character, LorebookEntry

from .models import ChatSession

# Recursive activation (an entry's text activating other entries) stops after this many rounds.
MAX_RECURSION = 3


@dataclass
class ActiveEntry:
    entry: LorebookEntry
    tokens: int


@dataclass
class Activation:
    before_char: list[str] = field(default_factory=list)
    after_char: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)  # entry names, for the prompt inspector
    dropped_for_budget: list[str] = field(default_factory=list)
    tokens: int = 0


def entries_for(*, session: ChatSession, character: Character) -> list[LorebookEntry]:
    """Enabled entries of every book that applies to this reply, with their book, in one query."""
    return list(entries_queryset(session=session, character=character))


def entries_queryset(*, session: ChatSession, character: Character):
    return (
        LorebookEntry.objects.filter(enabled=True)
        .filter(
            Q(lorebook__character=character)
            | Q(lorebook__attached_characters=character)
            | Q(lorebook__chats=session)
        )
        .select_related("lorebook")
        .distinct()
        .order_by("insertion_order", "id")
    )


def _matches(key: str, text: str, *, regex: bool, case_sensitive: bool) -> bool:
    if not key:
        return False
    if regex:
        pattern = key
        flags = 0 if case_sensitive else re.IGNORECASE
        # "/pattern/flags" as SillyTavern writes regex keys.
        if len(key) > 2 and key.startswith("/") and key.rfind("/") > 0:
            pattern, _, suffix = key[1:].rpartition("/")
            if "i" in suffix:
                flags |= re.IGNORECASE
        try:
            return re.search(pattern, text, flags) is not None
        except re.error:
            return False
    if case_sensitive:
        return key in text
    return key.lower() in text.lower()


def _keys_match(entry: LorebookEntry, text: str) -> bool:
    def hit(key: str) -> bool:
        return _matches(key, text, regex=entry.use_regex, case_sensitive=entry.case_sensitive)

    if not any(hit(k) for k in entry.keys if isinstance(k, str)):
        return False
    secondary = [k for k in entry.secondary_keys if isinstance(k, str) and k]
    if not entry.selective or not secondary:
        return True
    hits = [hit(k) for k in secondary]
    logic = entry.selective_logic
    if logic == LorebookEntry.Logic.AND_ANY:
        return any(hits)
    if logic == LorebookEntry.Logic.NOT_ALL:
        return not all(hits)
    if logic == LorebookEntry.Logic.NOT_ANY:
        return not any(hits)
    return all(hits)  # AND_ALL


def activate(
    entries: list[LorebookEntry], *, recent: list[str], estimate, budget: int | None = None
) -> Activation:
    """Entries activated by the `recent` messages (newest first), within the books' token budgets."""
    result = Activation()
    if not entries:
        return result
    active: dict[int, LorebookEntry] = {}

    # Each book scans its own depth of the window.
    def window(entry: LorebookEntry) -> str:
        return "\n".join(recent[: entry.lorebook.scan_depth])

    for entry in entries:
        if entry.constant or _keys_match(entry, window(entry)):
            active[entry.pk] = entry
    rounds = 0
    while rounds < MAX_RECURSION:
        recursive = [e for e in active.values() if e.lorebook.recursive_scanning]
        if not recursive:
            break
        extra = "\n".join(e.content for e in recursive)
        found = [
            e
            for e in entries
            if e.pk not in active and e.lorebook.recursive_scanning and _keys_match(e, extra)
        ]
        if not found:
            break
        for e in found:
            active[e.pk] = e
        rounds += 1

    if not active:
        return result
    # Over budget, the lowest priority goes first (V2 spec), then the latest inserted.
    chosen = sorted(active.values(), key=lambda e: (e.insertion_order, e.pk))
    limit = budget if budget is not None else min(e.lorebook.token_budget for e in chosen)
    by_priority = sorted(chosen, key=lambda e: (-e.priority, e.insertion_order, e.pk))
    kept: set[int] = set()
    spent = 0
    for entry in by_priority:
        cost = estimate(entry.content)
        if spent + cost <= limit:
            kept.add(entry.pk)
            spent += cost
        else:
            result.dropped_for_budget.append(str(entry))
    for entry in chosen:
        if entry.pk not in kept:
            continue
        target = (
            result.after_char if entry.position == LorebookEntry.Position.AFTER_CHAR else result.before_char
        )
        target.append(entry.content)
        result.activated.append(str(entry))
    result.tokens = spent
    return result
