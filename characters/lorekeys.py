"""Lorebook regex keys as rpchat runs them: on RE2, in time linear in the text, or not at all.

A key is user input (imported cards and World Info files carry them). Python's `re` backtracks: a
key like `(a+)+$` takes exponential time on the wrong message, and holds the GIL, so every request
of the process waits. RE2 has no backtracking (a search costs at most the program size times the
text length) and releases the GIL while it scans. What RE2 cannot run (backreferences, lookaround,
a syntax error, a program over MAX_PROGRAM) is skipped, never handed to `re`, and its owner is told
why on the lorebook page and in the prompt inspector.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import re2

# The largest compiled key, in RE2 instructions: a search costs at most this many steps a byte.
# Real keys are far smaller (`\b(?:dragon|wyvern)s?\b` is 34, `(?s).{0,50}sword.{0,50}` 811).
MAX_PROGRAM = 2000
# One search's worst case, in program size times bytes scanned (RE2's slowest path is about 10 ns a step,
# its usual one a nanosecond a byte): a key over it for the window at hand is not run.
MAX_WORK = 200_000_000
# Longer keys are refused before RE2 parses them or the cache keeps them.
MAX_KEY_CHARS = 10_000
# RE2's memory per key (program and DFA cache); above it a pattern is refused as too large.
MAX_MEMORY = 1 << 20
# Compiled keys kept per process; each holds at most MAX_MEMORY.
CACHE_SIZE = 128

# RE2's messages for what Python and JavaScript accept and RE2 leaves out by design.
_BACKREFERENCE = tuple(f"invalid escape sequence: \\{c}" for c in "123456789k")
_LOOKAROUND = tuple(f"invalid perl operator: (?{c}" for c in ("=", "!", "<=", "<!"))


@dataclass(frozen=True)
class CompiledKey:
    regex: re2._Regexp | None
    problem: str = ""  # why the key is skipped, for its owner


def split_key(key: str, *, case_sensitive: bool) -> tuple[str, bool]:
    """(pattern, ignore_case) of a regex key; SillyTavern writes them as `/pattern/flags`."""
    ignore_case = not case_sensitive
    if len(key) > 2 and key.startswith("/") and key.rfind("/") > 0:
        pattern, _, flags = key[1:].rpartition("/")
        return pattern, ignore_case or "i" in flags
    return key, ignore_case


def compile_key(key: str, *, case_sensitive: bool) -> CompiledKey:
    """The RE2 program for a regex key, or why it cannot run."""
    pattern, ignore_case = split_key(key, case_sensitive=case_sensitive)
    if len(pattern) > MAX_KEY_CHARS:
        return CompiledKey(None, f"too long: {len(pattern):,} characters, the limit is {MAX_KEY_CHARS:,}")
    return _compile(pattern, ignore_case)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _compile(pattern: str, ignore_case: bool) -> CompiledKey:
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.never_capture = True  # a key only asks "is it there?"
    options.max_mem = MAX_MEMORY
    options.log_errors = False
    try:
        regex = re2.compile(pattern, options)
    except re2.error as exc:
        return CompiledKey(None, _describe(exc))
    except UnicodeEncodeError:
        return CompiledKey(None, "not a valid regular expression (it holds a character that is not text)")
    if regex.programsize > MAX_PROGRAM:
        return CompiledKey(
            None, f"too complex: {regex.programsize:,} instructions, the limit is {MAX_PROGRAM:,}"
        )
    return CompiledKey(regex)


def _describe(exc: re2.error) -> str:
    raw = exc.args[0] if exc.args else ""
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if len(message) > 120:
        message = message[:119] + "…"
    if message.startswith(_BACKREFERENCE):
        return f"backreferences are not supported (RE2: {message})"
    if message.startswith(_LOOKAROUND):
        return f"lookahead and lookbehind are not supported (RE2: {message})"
    if message.startswith("pattern too large"):
        return f"too complex (RE2: {message})"
    if message.startswith(("invalid escape sequence", "invalid perl operator", "invalid repetition size")):
        return f"not supported by RE2 ({message})"
    return f"not a valid regular expression (RE2: {message})"


# JavaScript's \W without the u flag, which SillyTavern's whole-word match uses: anything but ASCII
# letters, digits and the underscore.
_NOT_WORD = "[^A-Za-z0-9_]"


def compile_word(key: str, *, case_sensitive: bool) -> CompiledKey:
    """A plain key matched as a whole word (SillyTavern's matchWholeWords), on RE2: the key with a
    non-word character or the text's edge on each side. Linear in the text like any other key."""
    if len(key) > MAX_KEY_CHARS:
        return CompiledKey(None, f"too long: {len(key):,} characters, the limit is {MAX_KEY_CHARS:,}")
    return _compile(f"(?:^|{_NOT_WORD}){re2.escape(key)}(?:$|{_NOT_WORD})", not case_sensitive)


def problems(entry) -> list[tuple[str, str]]:
    """(key, why) for each regex key of a LorebookEntry that its activation would skip."""
    if not entry.use_regex or entry.constant:  # a constant entry's keys never run
        return []
    keys = list(entry.keys) + (list(entry.secondary_keys) if entry.selective else [])
    found = []
    for key in keys:
        if (
            isinstance(key, str)
            and key
            and (why := compile_key(key, case_sensitive=entry.case_sensitive).problem)
        ):
            found.append((key, why))
    return found


def import_notes(entries, *, shown: int = 5) -> list[str]:
    """Import notes for the regex keys of unsaved LorebookEntry objects that replies would skip."""
    found = [(entry, key, why) for entry in entries for key, why in problems(entry)]
    notes = [
        f"lorebook entry “{entry}”: the regex key {key} will be skipped: {why}" for entry, key, why in found
    ]
    if len(notes) > shown:
        notes[shown:] = [f"{len(notes) - shown} more regex keys of the lorebook will be skipped"]
    return notes
