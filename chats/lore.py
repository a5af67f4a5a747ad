"""Lorebook activation: which entries a reply's prompt carries.

Entries come from the speaking character's own book, the global books attached to the character, and
the global books attached to the chat, in one query. Keys are matched against the last `scan_depth`
messages only (the window the prompt builder has already read), never the whole chat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property

from django.db.models import Q

from characters import lorekeys
from characters.models import Character, LorebookEntry

from .models import ChatSession

# Recursive activation (an entry's text activating other entries) stops after this many rounds.
MAX_RECURSION = 3
# Regex keys run on RE2 (characters/lorekeys.py): each search is linear in the window and releases
# the GIL. Books of thousands of costly keys would still keep their own reply waiting, so regex keys
# whose turn comes this many seconds after matching began are skipped (the prompt inspector says so).
REGEX_SECONDS = 2.0


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
    # Keys that could not run: {"entry", "key", "reason"}, for the prompt inspector.
    skipped: list[dict] = field(default_factory=list)
    tokens: int = 0


def entries_for(*, session: ChatSession, character: Character) -> list[LorebookEntry]:
    """Enabled entries of every book that applies to this reply, with their book, in one query."""
    return list(entries_queryset(session=session, character=character))


def entries_queryset(*, session: ChatSession, character: Character):
    books = (
        Q(lorebook__character=character)
        | Q(lorebook__attached_characters=character)
        | Q(lorebook__chats=session)
    )
    if session.persona_id is not None:
        books |= Q(lorebook__personas=session.persona_id)
    return (
        LorebookEntry.objects.filter(enabled=True)
        .filter(books)
        .select_related("lorebook")
        .distinct()
        .order_by("insertion_order", "id")
    )


class _Text:
    """A text keys are matched against, in the forms the matchers need, each made once."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def lower(self) -> str:
        return self.text.lower()

    @cached_property
    def utf8(self) -> bytes:
        # RE2 scans bytes; encoding once serves every regex key.
        return self.text.encode("utf-8", "replace")


class _Matcher:
    """Matches keys for one activation; regex keys share a time budget, and skips are recorded."""

    def __init__(self, result: Activation):
        self.result = result
        self.reported: set[tuple[int, str]] = set()
        self.deadline = time.monotonic() + REGEX_SECONDS

    def skip(self, entry: LorebookEntry, key: str, why: str) -> None:
        if (entry.pk, key) not in self.reported:
            self.reported.add((entry.pk, key))
            self.result.skipped.append({"entry": str(entry), "key": key, "reason": why})

    def hit(self, entry: LorebookEntry, key: str, text: _Text) -> bool:
        if not key:
            return False
        if not entry.use_regex:
            return key in text.text if entry.case_sensitive else key.lower() in text.lower
        compiled = lorekeys.compile_key(key, case_sensitive=entry.case_sensitive)
        if compiled.regex is None:
            self.skip(entry, key, compiled.problem)
            return False
        if time.monotonic() > self.deadline:
            self.skip(entry, key, f"not run: matching this reply's keys had taken {REGEX_SECONDS:g} s")
            return False
        if compiled.regex.programsize * len(text.utf8) > lorekeys.MAX_WORK:
            self.skip(entry, key, f"not run: too complex for a scan window of {len(text.text):,} characters")
            return False
        return compiled.regex.search(text.utf8) is not None

    def keys_match(self, entry: LorebookEntry, text: _Text) -> bool:
        def hit(key: str) -> bool:
            return self.hit(entry, key, text)

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
    matcher = _Matcher(result)
    # A key RE2 cannot run is reported whether or not a key before it already matched.
    for entry in entries:
        for key, why in lorekeys.problems(entry):
            matcher.skip(entry, key, why)
    active: dict[int, LorebookEntry] = {}

    # Each book scans its own depth of the window (made once per depth).
    windows: dict[int, _Text] = {}

    def window(entry: LorebookEntry) -> _Text:
        depth = entry.lorebook.scan_depth
        if depth not in windows:
            windows[depth] = _Text("\n".join(recent[:depth]))
        return windows[depth]

    for entry in entries:
        if entry.constant or matcher.keys_match(entry, window(entry)):
            active[entry.pk] = entry
    rounds = 0
    while rounds < MAX_RECURSION:
        recursive = [e for e in active.values() if e.lorebook.recursive_scanning]
        if not recursive:
            break
        extra = _Text("\n".join(e.content for e in recursive))
        found = [
            e
            for e in entries
            if e.pk not in active and e.lorebook.recursive_scanning and matcher.keys_match(e, extra)
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
