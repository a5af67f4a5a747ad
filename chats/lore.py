"""Lorebook activation: which entries a reply's prompt carries, where they go, and why.

Entries come from the speaking character's own book, the global books attached to the character, to
the chat and to the chat's persona, in one query. Keys are matched against the last `scan_depth`
messages only (the window the prompt builder has already read), never the whole chat, plus the card
and persona texts an entry asks for.

The per-entry settings follow SillyTavern's World Info and live in `LorebookEntry.extensions` under
the names of a V2 `character_book` entry (characters/cards.py): probability, inclusion groups,
sticky / cooldown / delay, whole words, scan depth, position and depth with role, recursion flags.
V3 decorators (`@@depth 2` lines at the start of the content) are read here too.

Timed effects are counted in messages: a reply's *position* is the number of messages before it.
When an entry with sticky or cooldown fires, the chat records the position it fired at
(`LoreEffect`); the entries query reads, for each entry, the latest such record before this reply's
position, so state costs no query of its own, and a regenerate (same position) sees exactly what
the first generation saw. Chance (probability, inclusion groups) is seeded by the chat and the
reply's position, so a regenerate rolls the same.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from django.db import transaction
from django.db.models import OuterRef, Q, Subquery

from characters import lorekeys
from characters.models import Character, LorebookEntry

from .models import ChatSession, LoreEffect

# Recursive activation (an entry's text activating other entries) stops after this many rounds.
MAX_RECURSION = 3
# Regex keys run on RE2 (characters/lorekeys.py): each search is linear in the window and releases
# the GIL. Books of thousands of costly keys would still keep their own reply waiting, so regex keys
# whose turn comes this many seconds after matching began are skipped (the prompt inspector says so).
REGEX_SECONDS = 2.0
# SillyTavern's defaults (world-info.js): an entry at depth goes 4 messages up; a group weight is 100.
DEFAULT_DEPTH = 4
DEFAULT_WEIGHT = 100
# An entry's own scan depth is capped where SillyTavern caps it.
MAX_SCAN_DEPTH = 1000
# The prompt inspector names this many entries whose keys did not match, then counts the rest.
UNMATCHED_SHOWN = 50

# A run of JavaScript's \w characters (ASCII letters, digits, underscore): no backtracking possible.
_WORD_RUN = re.compile(r"[A-Za-z0-9_]+")

# SillyTavern's world_info_position numbers, as kept in extensions["position"].
ST_POSITIONS = {
    0: "before_char",
    1: "after_char",
    2: "an_top",
    3: "an_bottom",
    4: "depth",
    5: "em_top",
    6: "em_bottom",
}
# SillyTavern's extension_prompt_roles, as kept in extensions["role"]; V3's @@role names them.
ROLES = {0: "system", 1: "user", 2: "assistant"}
ROLE_NAMES = ("system", "user", "assistant")
# Where a V3 @@position puts the entry: rpchat's slots of the system block.
V3_POSITIONS = {
    "before_desc": "before_char",
    "after_desc": "after_desc",
    "personality": "personality",
    "scenario": "scenario",
}
# The card and persona texts an entry may ask to be matched against, by SillyTavern's flag names.
SOURCES = {
    "match_persona_description": "persona",
    "match_character_description": "description",
    "match_character_personality": "personality",
    "match_character_depth_prompt": "character's note",
    "match_scenario": "scenario",
    "match_creator_notes": "creator's notes",
}
UI_PROMPTS = ("system_prompt", "post_history_instructions")
# rpchat's regenerate is both of SillyTavern's: a new swipe of the last reply, asked for again.
SAME_TRIGGER = {"swipe": ("swipe", "regenerate")}


# --- V3 decorators ---------------------------------------------------------------------------------


def _number(value: str) -> int | None:
    value = value.strip()
    if value.lstrip("-").isdigit() and len(value) < 10:
        return int(value)
    return None


def _keys(value: str) -> list[str] | None:
    keys = [k.strip() for k in value.split(",") if k.strip()]
    return keys or None


def _flag(value: str) -> bool | None:
    return True


def _choice(*allowed: str):
    def check(value: str) -> str | None:
        value = value.strip().lower()
        return value if value in allowed else None

    return check


# The decorators rpchat follows, each with the check of its value (None: invalid, so ignored and its
# fallback considered). The spec's instruct_depth, reverse_depth, reverse_instruct_depth and
# instruct_scan_depth are for prompts that are not chat based, and is_user_icon needs user icons:
# rpchat ignores them, so their `@@@` fallbacks apply.
DECORATORS: dict[str, Callable[[str], object]] = {
    "activate_only_after": lambda v: n if (n := _number(v)) is not None and n >= 0 else None,
    "activate_only_every": lambda v: n if (n := _number(v)) is not None and n >= 1 else None,
    "keep_activate_after_match": _flag,
    "dont_activate_after_match": _flag,
    "depth": lambda v: max(n, 0) if (n := _number(v)) is not None else None,
    "role": _choice(*ROLE_NAMES),
    "scan_depth": lambda v: n if (n := _number(v)) is not None and n >= 0 else None,
    "is_greeting": lambda v: n if (n := _number(v)) is not None and n >= 0 else None,
    "position": _choice(*V3_POSITIONS),
    "ignore_on_max_context": _flag,
    "additional_keys": _keys,
    "exclude_keys": _keys,
    "dont_activate": _flag,
    "activate": _flag,
    "disable_ui_prompt": _choice(*UI_PROMPTS),
}


def parse_decorators(content: str) -> tuple[dict[str, object], str]:
    """(decorators, content without them) of an entry's content, as the V3 spec defines them.

    `@@name value` lines at the start; the first of a name counts; a `@@@name` line is a fallback,
    considered only when the decorator above it was not recognized (or its value was invalid).
    One pass over the lines.
    """
    if not content.startswith("@@"):
        return {}, content
    found: dict[str, object] = {}
    lines = content.split("\n")
    fallback_open = False
    rest = len(lines)
    for index, line in enumerate(lines):
        if not line.startswith("@@"):
            rest = index
            break
        fallback = line.startswith("@@@")
        if fallback and not fallback_open:
            continue
        name, _, value = line[3 if fallback else 2 :].partition(" ")
        name = name.strip().lower()
        check = DECORATORS.get(name)
        parsed = check(value) if check else None
        if parsed is None:
            fallback_open = True
            continue
        fallback_open = False
        found.setdefault(name, parsed)
    return found, "\n".join(lines[rest:]).strip("\n")


# --- an entry's settings -----------------------------------------------------------------------------


def _int(value, default: int | None) -> int | None:
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 1e9:
        return int(value)
    if isinstance(value, str) and (n := _number(value)) is not None:
        return n
    return default


def _float(value, default: float) -> float:
    if isinstance(value, bool) or value is None:
        return default
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else default
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return default
        return number if math.isfinite(number) else default
    return default


def _bool(value, default: bool = False) -> bool:
    return value if isinstance(value, bool) else default


def _role(value) -> str:
    if isinstance(value, str) and value.strip().lower() in ROLE_NAMES:
        return value.strip().lower()
    return ROLES.get(_int(value, 0), "system")


class Entry:
    """A LorebookEntry with its SillyTavern settings and V3 decorators read once.

    Most entries carry none of them: the class attributes are SillyTavern's defaults, and only
    what an entry sets is read.
    """

    decorators: dict = {}
    depth = DEFAULT_DEPTH
    role = "system"
    scan_depth: int | None = None
    whole_words = False
    use_probability = True
    probability = 100.0
    groups: list[str] = []
    group_override = False
    group_weight = float(DEFAULT_WEIGHT)
    group_scoring = False
    sticky = cooldown = delay = 0
    exclude_recursion = prevent_recursion = delay_until_recursion = ignore_budget = False
    sources: tuple[str, ...] = ()
    triggers: frozenset[str] = frozenset()

    def __init__(self, row: LorebookEntry):
        self.row = row
        self.pk = row.pk
        self.book = row.lorebook
        # The position this entry's last recorded effect began at, before this reply (or None).
        self.effect_start: int | None = getattr(row, "effect_start", None)
        self.position = row.position
        self.content = row.content or ""
        if self.content.startswith("@@"):
            self.decorators, self.content = parse_decorators(self.content)
        ext = row.extensions
        if ext and isinstance(ext, dict):
            self._read(ext)
        if self.decorators:
            self._decorate(self.decorators)

    def _read(self, ext: dict) -> None:
        # Where it goes: SillyTavern's position number, else the column (before or after the character).
        position = ST_POSITIONS.get(_int(ext.get("position"), None))
        if position not in (None, "before_char", "after_char"):
            self.position = position
        self.depth = max(_int(ext.get("depth"), DEFAULT_DEPTH) or 0, 0)
        self.role = _role(ext.get("role"))
        scan = _int(ext.get("scan_depth"), None)
        self.scan_depth = None if scan is None else min(max(scan, 0), MAX_SCAN_DEPTH)
        self.whole_words = _bool(ext.get("match_whole_words"))
        self.use_probability = _bool(ext.get("useProbability"), True)
        self.probability = _float(ext.get("probability"), 100.0)
        group = ext.get("group")
        self.groups = [g.strip() for g in group.split(",") if g.strip()] if isinstance(group, str) else []
        self.group_override = _bool(ext.get("group_override"))
        self.group_weight = max(_float(ext.get("group_weight"), DEFAULT_WEIGHT), 0.0)
        self.group_scoring = _bool(ext.get("use_group_scoring"))
        self.sticky = max(_int(ext.get("sticky"), 0) or 0, 0)
        self.cooldown = max(_int(ext.get("cooldown"), 0) or 0, 0)
        self.delay = max(_int(ext.get("delay"), 0) or 0, 0)
        self.exclude_recursion = _bool(ext.get("exclude_recursion"))
        self.prevent_recursion = _bool(ext.get("prevent_recursion"))
        self.delay_until_recursion = bool(ext.get("delay_until_recursion"))
        self.ignore_budget = _bool(ext.get("ignore_budget"))
        self.sources = tuple(name for flag, name in SOURCES.items() if ext.get(flag) is True)
        triggers = ext.get("triggers")
        if isinstance(triggers, list):
            self.triggers = frozenset(t for t in triggers if isinstance(t, str))

    def _decorate(self, deco: dict) -> None:
        # A V3 @@position wins over @@depth, which wins over the entry's own settings.
        if "depth" in deco:
            self.position, self.depth = "depth", int(deco["depth"])
        if "position" in deco:
            self.position = V3_POSITIONS[deco["position"]]
        if "role" in deco:
            self.role = str(deco["role"])
        if "scan_depth" in deco:
            self.scan_depth = min(int(deco["scan_depth"]), MAX_SCAN_DEPTH)

    @cached_property
    def name(self) -> str:
        """SillyTavern titles an entry by its comment (its "memo"); rpchat by its name, else its keys."""
        row = self.row
        return row.name or " ".join(row.comment.split())[:80] or str(row)

    @property
    def remembers(self) -> bool:
        """Whether firing is recorded for later replies (timed effects, match-history decorators)."""
        return bool(
            self.sticky
            or self.cooldown
            or "keep_activate_after_match" in self.decorators
            or "dont_activate_after_match" in self.decorators
        )

    def sticky_until(self, position: int) -> int | None:
        """The position the sticky window ends at, if it covers `position`."""
        if self.sticky and self.effect_start is not None and position < self.effect_start + self.sticky:
            return self.effect_start + self.sticky
        return None

    def cooldown_until(self, position: int) -> int | None:
        """The position the cooldown ends at, if it covers `position`. With sticky too, the
        cooldown begins where the sticky window ends (as in SillyTavern)."""
        if not self.cooldown or self.effect_start is None:
            return None
        begins = self.effect_start + self.sticky
        if begins <= position < begins + self.cooldown:
            return begins + self.cooldown
        return None


# --- the query ----------------------------------------------------------------------------------------


def entries_for(
    *, session: ChatSession, character: Character, position: int | None = None
) -> list[LorebookEntry]:
    """Enabled entries of every book that applies to this reply, with their book and (given the
    reply's position) their latest timed-effect start, in one query."""
    return list(entries_queryset(session=session, character=character, position=position))


def entries_queryset(*, session: ChatSession, character: Character, position: int | None = None):
    books = (
        Q(lorebook__character=character)
        | Q(lorebook__attached_characters=character)
        | Q(lorebook__chats=session)
    )
    if session.persona_id is not None:
        books |= Q(lorebook__personas=session.persona_id)
    rows = (
        LorebookEntry.objects.filter(enabled=True)
        .filter(books)
        .select_related("lorebook")
        .distinct()
        .order_by("insertion_order", "id")
    )
    if position is not None:
        # On loreeffect_session_entry_pos_uniq: one index probe per entry.
        started = (
            LoreEffect.objects.filter(session=session, entry=OuterRef("pk"), position__lt=position)
            .order_by("-position")
            .values("position")[:1]
        )
        rows = rows.annotate(effect_start=Subquery(started))
    return rows


def effects_save(*, session: ChatSession, message_id: int, position: int, started: list[int]) -> None:
    """Record the entries whose timed effect began with the reply at `position`, replacing what an
    earlier generation of the same reply (a regenerate, a swipe) recorded. A few queries whatever
    the number of entries, and no write at all for a reply that begins nothing and replaces
    nothing (most replies of most chats)."""
    stale = LoreEffect.objects.filter(session=session, position__gte=position)
    fresh = [
        LoreEffect(session=session, entry_id=pk, message_id=message_id, position=position) for pk in started
    ]
    if stale.exists():
        with transaction.atomic():
            stale.delete()
            LoreEffect.objects.bulk_create(fresh)
    elif fresh:
        LoreEffect.objects.bulk_create(fresh)


def effects_copy(*, source: ChatSession, target: ChatSession, up_to_seq: int) -> None:
    """Give a branch the timed effects begun by the replies it copied (same seqs, new rows)."""
    effects = list(
        LoreEffect.objects.filter(session=source, message__seq__lte=up_to_seq).values_list(
            "entry_id", "position", "message__seq"
        )
    )
    if not effects:
        return
    copied = dict(target.messages.filter(seq__in={seq for _, _, seq in effects}).values_list("seq", "pk"))
    LoreEffect.objects.bulk_create(
        LoreEffect(session=target, entry_id=entry, message_id=copied[seq], position=position)
        for entry, position, seq in effects
        if seq in copied
    )


# --- matching -------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """What activation knows of the reply beyond the history: its position, the seed of its rolls,
    and the card and persona texts entries may ask to be matched against."""

    position: int = 0
    seed: str = ""
    texts: dict[str, str] = field(default_factory=dict)
    # Character messages before this reply, for @@activate_only_after / _every (asked only when
    # such an entry is met), and the index of the greeting swipe the chat shows (@@is_greeting).
    replies: Callable[[], int] = lambda: 0
    greeting: Callable[[], int | None] = lambda: None
    # Macro expansion for keys ({{char}}, {{user}}), or None to match them as written.
    expand: Callable[[str], str] | None = None
    # SillyTavern's generation type (normal, continue, impersonate, swipe), for `triggers`.
    trigger: str = "normal"

    @cached_property
    def reply_count(self) -> int:
        return self.replies()

    @cached_property
    def greeting_index(self) -> int | None:
        return self.greeting()

    def roll(self, *what) -> float:
        """A number in [0, 1) fixed by the chat, the reply's position and `what`."""
        digest = hashlib.sha256(":".join(str(x) for x in (self.seed, self.position, *what)).encode()).digest()
        return random.Random(digest).random()


@dataclass
class Activation:
    # Activated contents by slot: before_char, after_desc, personality, scenario, after_char,
    # an_top, an_bottom (around the author's note), em_top, em_bottom (around example dialogue).
    slots: dict[str, list[str]] = field(default_factory=dict)
    # (depth, role, contents) for entries inserted into the history, in insertion order.
    at_depth: list[tuple[int, str, list[str]]] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)  # entry names, for the prompt inspector
    dropped_for_budget: list[str] = field(default_factory=list)
    # Keys that could not run: {"entry", "key", "reason"}, for the prompt inspector.
    skipped: list[dict] = field(default_factory=list)
    # Why each entry fired or not: {"entry", "book", "fired", "why"}, for the prompt inspector.
    decisions: list[dict] = field(default_factory=list)
    unmatched: int = 0
    # Entries whose firing is recorded for later replies (LoreEffect), and UI prompts to leave out.
    started: list[int] = field(default_factory=list)
    disabled_prompts: set[str] = field(default_factory=set)
    tokens: int = 0

    @property
    def before_char(self) -> list[str]:
        return self.slots.get("before_char", [])

    @property
    def after_char(self) -> list[str]:
        return self.slots.get("after_char", [])


class _Text:
    """A text keys are matched against, in the forms the matchers need, each made once."""

    def __init__(self, text: str):
        self.text = text

    @cached_property
    def lower(self) -> str:
        return self.text.lower()

    @cached_property
    def words(self) -> frozenset[str]:
        """Its runs of ASCII letters, digits and underscores (JavaScript's \\w), for whole-word keys."""
        return frozenset(_WORD_RUN.findall(self.text))

    @cached_property
    def lower_words(self) -> frozenset[str]:
        return frozenset(_WORD_RUN.findall(self.lower))

    @cached_property
    def utf8(self) -> bytes:
        # RE2 scans bytes; encoding once serves every regex key.
        return self.text.encode("utf-8", "replace")


class _Matcher:
    """Matches keys for one activation; regex keys share a time budget, and skips are recorded."""

    def __init__(self, result: Activation, expand: Callable[[str], str] | None = None):
        self.result = result
        self.expand = expand
        self.expanded: dict[str, str] = {}
        self.reported: set[tuple[int, str]] = set()
        # Entries a primary key found, held back by their other keys: recursion may let them in.
        self.near: set[int] = set()
        self.deadline = time.monotonic() + REGEX_SECONDS

    def skip(self, entry: LorebookEntry, key: str, why: str) -> None:
        if (entry.pk, key) not in self.reported:
            self.reported.add((entry.pk, key))
            self.result.skipped.append({"entry": str(entry), "key": key, "reason": why})

    def _run(self, entry: LorebookEntry, key: str, compiled: lorekeys.CompiledKey, text: _Text) -> bool:
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

    def hit(self, entry: Entry, key: str, text: _Text) -> bool:
        row = entry.row
        if self.expand is not None and ("{{" in key or "<" in key):
            # Macros in keys ({{char}}, {{user}}, <BOT>) as SillyTavern substitutes them, once a key.
            if key not in self.expanded:
                self.expanded[key] = self.expand(key)
            key = self.expanded[key]
        key = key.strip()
        if not key:
            return False
        if row.use_regex:
            return self._run(row, key, lorekeys.compile_key(key, case_sensitive=row.case_sensitive), text)
        if entry.whole_words and len(key.split()) == 1:
            # SillyTavern: a one-word key needs a non-word character (or the edge) on each side; a
            # key of several words is matched as it is. A key of word characters only is then one of
            # the text's runs of them (a set made once per text); any other runs on RE2.
            if _WORD_RUN.fullmatch(key):
                return key in text.words if row.case_sensitive else key.lower() in text.lower_words
            return self._run(row, key, lorekeys.compile_word(key, case_sensitive=row.case_sensitive), text)
        return key in text.text if row.case_sensitive else key.lower() in text.lower

    def matched_key(self, entry: Entry, text: _Text) -> str | None:
        """The primary key that matched, if the entry's keys (all of them) let it fire."""
        row = entry.row
        primary = self.primary(entry, text)
        if primary is None:
            return None
        self.near.add(entry.pk)
        secondary = [k for k in row.secondary_keys if isinstance(k, str) and k.strip()]
        if row.selective and secondary:
            hits = [self.hit(entry, k, text) for k in secondary]
            logic = row.selective_logic
            if logic == LorebookEntry.Logic.AND_ANY:
                ok = any(hits)
            elif logic == LorebookEntry.Logic.NOT_ALL:
                ok = not all(hits)
            elif logic == LorebookEntry.Logic.NOT_ANY:
                ok = not any(hits)
            else:
                ok = all(hits)
            if not ok:
                return None
        # V3: @@additional_keys must find one of theirs too (as patterns with use_regex);
        # @@exclude_keys none of theirs (ignored with use_regex, as the spec says).
        extra = entry.decorators.get("additional_keys")
        if extra and not any(self.hit(entry, k, text) for k in extra):
            return None
        excluded = entry.decorators.get("exclude_keys")
        if excluded and not row.use_regex and any(self.hit(entry, k, text) for k in excluded):
            return None
        self.near.discard(entry.pk)
        return primary

    def primary(self, entry: Entry, text: _Text) -> str | None:
        return next((k for k in entry.row.keys if isinstance(k, str) and self.hit(entry, k, text)), None)

    def score(self, entry: Entry, text: _Text) -> int:
        """SillyTavern's group score: keys found (secondary ones too, with positive logic)."""
        row = entry.row
        primary = sum(1 for k in row.keys if isinstance(k, str) and self.hit(entry, k, text))
        secondary = [k for k in row.secondary_keys if isinstance(k, str) and k.strip()]
        found = sum(1 for k in secondary if self.hit(entry, k, text))
        if secondary and row.selective_logic == LorebookEntry.Logic.AND_ANY:
            return primary + found
        if secondary and row.selective_logic == LorebookEntry.Logic.AND_ALL and found == len(secondary):
            return primary + found
        return primary


# --- activation ---------------------------------------------------------------------------------------


def activate(
    entries: list[LorebookEntry],
    *,
    recent: list[str],
    estimate,
    budget: int | None = None,
    scene: Scene | None = None,
    estimate_many=None,
) -> Activation:
    """Entries activated by the `recent` messages (newest first), within the books' token budgets.

    `estimate` counts one text; `estimate_many`, when given, counts the activated entries at once
    (an engine's tokenizer: one request for all of them).
    """
    result = Activation()
    if not entries:
        return result
    scene = scene or Scene()
    here = scene.position
    matcher = _Matcher(result, scene.expand)
    # A key RE2 cannot run is reported whether or not a key before it already matched.
    for row in entries:
        for key, why in lorekeys.problems(row):
            matcher.skip(row, key, why)
    items = [Entry(row) for row in entries]
    order = {e.pk: i for i, e in enumerate(items)}
    decided: dict[int, dict] = {}

    def decide(entry: Entry, fired: bool, why: str) -> None:
        decided[entry.pk] = {"entry": entry.name, "book": entry.book.name, "fired": fired, "why": why}

    # Each entry scans its own depth of the window, plus the card and persona texts it asks for
    # (each combination made once).
    windows: dict[tuple, _Text] = {}

    def depth_of(entry: Entry) -> int:
        return entry.scan_depth if entry.scan_depth is not None else entry.book.scan_depth

    def window(entry: Entry, extra: str = "") -> _Text:
        key = (depth_of(entry), entry.sources, extra)
        if key not in windows:
            parts = recent[: depth_of(entry)]
            parts += [scene.texts[s] for s in entry.sources if scene.texts.get(s)]
            if extra:
                parts.append(extra)
            windows[key] = _Text("\n".join(parts))
        return windows[key]

    def where(entry: Entry) -> str:
        depth = depth_of(entry)
        said = f"the last {depth} message{'s' if depth != 1 else ''}"
        return " and ".join([said, *entry.sources]) if entry.sources else said

    active: dict[int, Entry] = {}
    sticky_now: set[int] = set()
    unmatched: dict[int, Entry] = {}
    checked: set[int] = set()  # entries whose keys were matched against the window once

    def candidates(round_: int, extra: str) -> list[Entry]:
        found = []
        added = _Text(extra)
        for entry in items:
            if entry.pk in active or entry.pk in decided:
                continue
            if round_ and not entry.book.recursive_scanning:
                continue
            deco = entry.decorators
            sticky_end = entry.sticky_until(here)
            if entry.triggers and entry.triggers.isdisjoint(
                SAME_TRIGGER.get(scene.trigger, (scene.trigger,))
            ):
                decide(
                    entry,
                    False,
                    f"triggers: only for {', '.join(sorted(entry.triggers))}, not {scene.trigger}",
                )
                continue
            if entry.delay and here < entry.delay:
                decide(
                    entry, False, f"delay: waits until the chat has {entry.delay} messages (it has {here})"
                )
                continue
            cooldown_end = entry.cooldown_until(here)
            if cooldown_end is not None and sticky_end is None:
                decide(entry, False, f"cooldown: resting until the chat has {cooldown_end} messages")
                continue
            if round_ == 0 and entry.delay_until_recursion and sticky_end is None:
                unmatched[entry.pk] = entry
                continue
            if round_ and entry.exclude_recursion and sticky_end is None:
                continue
            if "activate" in deco:
                found.append((entry, "@@activate"))
                continue
            if "dont_activate" in deco:
                decide(entry, False, "@@dont_activate")
                continue
            if "activate_only_after" in deco and scene.reply_count < deco["activate_only_after"]:
                decide(
                    entry,
                    False,
                    f"@@activate_only_after {deco['activate_only_after']}: "
                    f"{scene.reply_count} character messages so far",
                )
                continue
            if "activate_only_every" in deco and scene.reply_count % deco["activate_only_every"]:
                decide(
                    entry,
                    False,
                    f"@@activate_only_every {deco['activate_only_every']}: "
                    f"{scene.reply_count} character messages so far",
                )
                continue
            if "is_greeting" in deco and scene.greeting_index not in (None, deco["is_greeting"]):
                decide(
                    entry,
                    False,
                    f"@@is_greeting {deco['is_greeting']}: the greeting shows swipe {scene.greeting_index}",
                )
                continue
            if "dont_activate_after_match" in deco and entry.effect_start is not None:
                decide(
                    entry,
                    False,
                    f"@@dont_activate_after_match: it fired when the chat had {entry.effect_start} messages",
                )
                continue
            if "keep_activate_after_match" in deco and entry.effect_start is not None:
                found.append(
                    (
                        entry,
                        f"@@keep_activate_after_match: it fired when the chat had {entry.effect_start} messages",
                    )
                )
                continue
            if entry.row.constant:
                found.append((entry, "constant"))
                continue
            if sticky_end is not None:
                sticky_now.add(entry.pk)
                found.append(
                    (
                        entry,
                        f"sticky: fired when the chat had {entry.effect_start} messages, stays until it has {sticky_end}",
                    )
                )
                continue
            if entry.pk in checked and entry.pk not in matcher.near and matcher.primary(entry, added) is None:
                # Its keys found nothing in the history before: only the new text can change that.
                unmatched[entry.pk] = entry
                continue
            checked.add(entry.pk)
            key = matcher.matched_key(entry, window(entry, extra))
            if key is None:
                unmatched[entry.pk] = entry
                continue
            unmatched.pop(entry.pk, None)
            found.append((entry, f"key matched: {key}" + (" (recursion)" if round_ else "")))
        return found

    recursion_text = ""
    for round_ in range(MAX_RECURSION + 1):
        found = candidates(round_, recursion_text)
        # Entries delayed until recursion get a recursive pass even when nothing else feeds one
        # (as SillyTavern scans its open recursion levels).
        delayed = round_ == 0 and any(
            e.delay_until_recursion and e.book.recursive_scanning and e.pk in unmatched for e in items
        )
        if not found:
            if delayed:
                continue
            break
        # Sticky ones first, then in order: the order inclusion groups and rolls see them in.
        found.sort(key=lambda pair: (pair[0].pk not in sticky_now, order[pair[0].pk]))
        reasons = {e.pk: why for e, why in found}
        fresh = _inclusion_groups([e for e, _ in found], active, sticky_now, matcher, window, scene, decide)
        new = []
        for entry in fresh:
            if (
                entry.use_probability
                and entry.probability < 100
                and entry.pk not in sticky_now
                and (roll := scene.roll("entry", entry.pk) * 100) > entry.probability
            ):
                decide(entry, False, f"probability: rolled {roll:.0f}, needed {entry.probability:g} or less")
                continue
            if entry.use_probability and entry.probability < 100 and entry.pk not in sticky_now:
                reasons[entry.pk] += f"; probability {entry.probability:g}% passed"
            unmatched.pop(entry.pk, None)
            active[entry.pk] = entry
            decide(entry, True, reasons[entry.pk])
            new.append(entry)
        feeding = [e.content for e in new if e.book.recursive_scanning and not e.prevent_recursion]
        if not feeding:
            if delayed:
                continue
            break
        recursion_text = "\n".join(filter(None, [recursion_text, *feeding]))

    if active and estimate_many is not None:
        counts = dict(zip(active, estimate_many([e.content for e in active.values()]), strict=True))
        estimate_of = counts.__getitem__
    else:
        estimate_of = None
    kept = (
        _place(result, active, sticky_now, order, budget, estimate, decide, estimate_of) if active else set()
    )
    # The inspector: fired entries first, then those held back, then (up to UNMATCHED_SHOWN, the
    # rest counted) those whose keys found nothing.
    leftover = [e for e in items if e.pk in unmatched and e.pk not in decided]
    for entry in leftover[:UNMATCHED_SHOWN]:
        if entry.delay_until_recursion:
            decide(entry, False, "delayed until recursion: no other entry's text matched it")
        else:
            decide(entry, False, f"no key matched in {where(entry)}")
    result.unmatched = max(len(leftover) - UNMATCHED_SHOWN, 0)
    shown = [decided[e.pk] for e in items if e.pk in decided]
    result.decisions = sorted(
        shown, key=lambda d: (not d["fired"], d["why"].startswith(("no key", "delayed until")))
    )
    for entry in active.values():
        if entry.pk not in kept:
            continue
        # A new sticky or cooldown window begins here; the match-history decorators need the
        # first firing only.
        if entry.pk not in sticky_now and (
            entry.sticky or entry.cooldown or (entry.remembers and entry.effect_start is None)
        ):
            result.started.append(entry.pk)
        if (ui := entry.decorators.get("disable_ui_prompt")) is not None:
            result.disabled_prompts.add(str(ui))
    return result


def _inclusion_groups(found, active, sticky_now, matcher, window, scene, decide) -> list[Entry]:
    """SillyTavern's inclusion groups: of the entries of a group found in one round, one goes in."""
    groups: dict[str, list[Entry]] = {}
    for entry in found:
        for name in entry.groups:
            groups.setdefault(name, []).append(entry)
    out = {e.pk: e for e in found}

    def lose(entry: Entry, why: str) -> None:
        if entry.pk in out:
            del out[entry.pk]
            decide(entry, False, why)

    for name, grouped in groups.items():
        members = [e for e in grouped if e.pk in out]
        if not members:
            continue
        sticky = [e for e in members if e.pk in sticky_now]
        if sticky:
            for e in members:
                if e not in sticky:
                    lose(e, f"inclusion group “{name}”: {sticky[0].name} is sticky")
            continue
        earlier = next((e for e in active.values() if name in e.groups), None)
        if earlier is not None:
            for e in members:
                lose(e, f"inclusion group “{name}”: already filled by {earlier.name}")
            continue
        if any(e.group_scoring for e in members):
            scores = {e.pk: matcher.score(e, window(e)) for e in members}
            best = max(scores.values())
            for e in members:
                if e.group_scoring and scores[e.pk] < best:
                    lose(
                        e, f"inclusion group “{name}”: {scores[e.pk]} keys matched, another entry had {best}"
                    )
            members = [e for e in members if e.pk in out]
        if len(members) <= 1:
            continue
        overriding = [e for e in members if e.group_override]
        if overriding:
            # SillyTavern's prioritization: the highest insertion order wins.
            winner = max(overriding, key=lambda e: e.row.insertion_order)
            how = "has priority"
        else:
            total = sum(e.group_weight for e in members)
            roll = scene.roll("group", name) * total
            winner, reached = members[-1], 0.0
            for e in members:
                reached += e.group_weight
                if roll <= reached:
                    winner = e
                    break
            how = f"won the weighted roll ({roll:.0f} of {total:g})"
        for e in members:
            if e is not winner:
                lose(e, f"inclusion group “{name}”: lost to {winner.name}, which {how}")
    return [e for e in found if e.pk in out]


def _place(result: Activation, active, sticky_now, order, budget, estimate, decide, counted=None) -> set[int]:
    """Keep what fits the budget (lowest priority dropped first) and sort it into its slots."""
    chosen = sorted(active.values(), key=lambda e: (e.row.insertion_order, order[e.pk]))
    limit = budget if budget is not None else min(e.book.token_budget for e in chosen)
    # Entries that ignore the budget first, those marked @@ignore_on_max_context last, sticky ones
    # before the rest, then by priority (V2: the lowest goes first), then insertion order.
    by_priority = sorted(
        chosen,
        key=lambda e: (
            not e.ignore_budget,
            "ignore_on_max_context" in e.decorators,
            e.pk not in sticky_now,
            -e.row.priority,
            e.row.insertion_order,
            order[e.pk],
        ),
    )
    kept: set[int] = set()
    spent = outside = 0
    for entry in by_priority:
        cost = counted(entry.pk) if counted is not None else estimate(entry.content)
        if entry.ignore_budget:  # in, and not counted against the others
            kept.add(entry.pk)
            outside += cost
        elif spent + cost <= limit:
            kept.add(entry.pk)
            spent += cost
        else:
            result.dropped_for_budget.append(entry.name)
            decide(entry, False, f"left out for budget: {cost} tokens did not fit the lore budget of {limit}")
    depth_groups: dict[tuple[int, str], list[str]] = {}
    for entry in chosen:
        if entry.pk not in kept:
            continue
        result.activated.append(entry.name)
        if not entry.content:
            continue
        if entry.position == "depth":
            depth_groups.setdefault((entry.depth, entry.role), []).append(entry.content)
        else:
            result.slots.setdefault(entry.position, []).append(entry.content)
    result.at_depth = [(depth, role, contents) for (depth, role), contents in depth_groups.items()]
    result.tokens = spent + outside
    return kept
