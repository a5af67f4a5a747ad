"""Counting tokens: the one estimate prompt building, stored message counts and the card editor share.

`estimate_tokens` is a script-aware estimate for when no real tokenizer is at hand: a weight per
character class (Latin letters, digits, punctuation, Cyrillic, CJK, kana, Hangul, emoji...), fitted
so that it lands at or a little above what common byte-level BPE tokenizers (SmolLM2's, measured in
tests/core/test_tokens.py) count. Non-English text costs far more tokens per character than English,
so a flat characters-per-token rule overflows the context for Chinese, Japanese or Russian chats.

`CachedCounter` counts with an engine's real tokenizer (any function that counts a batch of texts in
one call), remembering counts in the cache by text, so a prompt costs at most one round trip for the
texts it has not seen before. `calibrated_tokens` scales the estimate by a ratio learned from the
`usage` a remote engine reports.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache

# (first code point, tokens per character) for ranges starting there, up to the next entry.
_RANGES: tuple[tuple[int, float], ...] = (
    (0x0000, 0.5),  # control characters
    (0x0009, 0.34),  # tab, newline...
    (0x000E, 0.5),
    (0x0020, 0.12),  # space: mostly merged into the next word
    (0x0021, 0.8),  # ASCII punctuation and symbols
    (0x0030, 1.0),  # digits: one token each in most vocabularies
    (0x003A, 0.8),
    (0x0041, 0.28),  # A-Z
    (0x005B, 0.8),
    (0x0061, 0.28),  # a-z
    (0x007B, 0.8),
    (0x007F, 1.0),  # Latin-1 symbols
    (0x00C0, 1.2),  # accented Latin letters
    (0x0250, 1.0),  # IPA, modifiers, combining marks
    (0x0370, 0.95),  # Greek
    (0x0400, 0.9),  # Cyrillic
    (0x0530, 1.1),  # Armenian, Hebrew, Arabic, Syriac...
    (0x0900, 1.35),  # Indic scripts
    (0x0E00, 2.0),  # Thai, Lao, Tibetan
    (0x1000, 1.5),  # Myanmar, Georgian, Ethiopic...
    (0x1100, 2.8),  # Hangul jamo
    (0x1200, 1.5),
    (0x1E00, 0.9),  # Latin extended additional
    (0x2000, 1.0),  # general punctuation (dashes, quotes), zero-width joiners
    (0x2190, 1.5),  # arrows, math, technical, box drawing
    (0x2600, 2.9),  # miscellaneous symbols and dingbats (many emoji)
    (0x27C0, 1.5),
    (0x2E80, 2.2),  # CJK radicals, symbols and punctuation
    (0x3000, 1.9),  # CJK punctuation, hiragana, katakana, bopomofo, Hangul compatibility...
    (0x4000, 2.2),  # CJK extension A, CJK unified ideographs
    (0xA000, 2.0),  # Yi, other
    (0xAC00, 2.8),  # Hangul syllables
    (0xD800, 2.0),  # surrogates, private use
    (0xF900, 2.2),  # CJK compatibility ideographs
    (0xFB00, 1.5),  # presentation forms
    (0xFE00, 1.0),  # variation selectors (the emoji presentation selector)
    (0xFE10, 2.0),  # vertical and small forms, CJK compatibility forms
    (0xFF00, 2.0),  # fullwidth forms
    (0x10000, 2.9),  # everything past the BMP: emoji, historic scripts, rare ideographs
)
_STARTS = [start for start, _ in _RANGES]


@lru_cache(maxsize=8192)
def _weight(char: str) -> float:
    return _RANGES[bisect.bisect_right(_STARTS, ord(char)) - 1][1]


# The ASCII characters grouped by weight, as bytes: each group is counted in one C pass.
_ASCII_GROUPS: dict[float, bytes] = {}
for _code in range(128):
    _ASCII_GROUPS[_weight(chr(_code))] = _ASCII_GROUPS.get(_weight(chr(_code)), b"") + bytes([_code])
_NOT_ASCII = re.compile(r"[^\x00-\x7f]+")
# Blocks of one weight that UTF-8 lead bytes tell apart (Cyrillic U+0400-04FF, kana and CJK
# U+3000-9FFF, Hangul U+B000-CFFF, everything past the BMP): counted by their lead bytes in C, not character by
# character, since Chinese, Korean and emoji text is mostly these.
_BY_LEAD_BYTE = (
    (bytes(range(0xD0, 0xD4)), _weight("\u0400")),
    (bytes([0xE3]), _weight("\u3000")),
    (bytes(range(0xE4, 0xEA)), _weight("\u4000")),
    (bytes([0xEB, 0xEC]), _weight("\ub000")),
    (bytes(range(0xF0, 0xF5)), _weight("\U00010000")),
)
assert _weight("\u04ff") == _weight("\u0400") and _weight("\u3fff") == _weight("\u3000")
assert _weight("\u9fff") == _weight("\u4000") and _weight("\ucfff") == _weight("\ub000")
_BY_LEAD_CHARS = re.compile("[\u0400-\u04ff\u3000-\u9fff\ub000-\ucfff\U00010000-\U0010ffff]+")


def estimate_tokens(text: str) -> int:
    """A script-aware token estimate for `text` (at or a little above real counts; see the module).

    Linear in the text, and done in C: ASCII, Cyrillic, kana, CJK, Hangul and emoji are counted a group
    of equal weight at a time (bytes.translate on the UTF-8), the rest with Counter and weighed
    once per distinct character.
    """
    if not text:
        return 0
    raw = text.encode("utf-8", "surrogatepass")
    # UTF-8 continuation and lead bytes are all past 0x7f: ASCII bytes are ASCII characters.
    total = sum(
        weight * (len(raw) - len(raw.translate(None, group))) for weight, group in _ASCII_GROUPS.items()
    )
    if not text.isascii():
        total += sum(weight * (len(raw) - len(raw.translate(None, leads))) for leads, weight in _BY_LEAD_BYTE)
        other = _BY_LEAD_CHARS.sub("", "".join(_NOT_ASCII.findall(text)))
        total += sum(_weight(char) * n for char, n in Counter(other).items())
    return max(1, math.ceil(total))


def calibrated_tokens(text: str, ratio: float | None) -> int:
    """The estimate scaled by `ratio` (real / estimated, learned from an engine's reported usage)."""
    tokens = estimate_tokens(text)
    if not tokens or not ratio:
        return tokens
    return max(1, math.ceil(tokens * ratio))


def text_key(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


class CachedCounter:
    """Counts with a real tokenizer: `tokenize_many(texts)` returns one count per text in one call.

    Counts are kept in Django's cache under `key` (which tokenizer) and the text's hash, so a text
    is sent to the engine once; `count_many` sends every text it has not seen in a single batch.
    """

    exact = True

    def __init__(
        self, key: str, tokenize_many: Callable[[Sequence[str]], list[int]], *, timeout: int = 7 * 86400
    ):
        self.key = key
        self._tokenize_many = tokenize_many
        self._timeout = timeout
        self._memo: dict[str, int] = {}

    def _cache_key(self, text: str) -> str:
        return f"tok:{self.key}:{text_key(text)}"

    def count_many(self, texts: Sequence[str]) -> list[int]:
        from django.core.cache import cache

        keys = {text: self._cache_key(text) for text in texts if text and text not in self._memo}
        if keys:
            found = cache.get_many(list(set(keys.values())))
            missing = []
            for text, key in keys.items():
                if key in found:
                    self._memo[text] = found[key]
                else:
                    missing.append(text)
            if missing:
                counts = self._tokenize_many(missing)
                self._memo.update(zip(missing, counts, strict=True))
                cache.set_many({keys[t]: c for t, c in zip(missing, counts, strict=True)}, self._timeout)
        return [self._memo[t] if t else 0 for t in texts]

    def count(self, text: str) -> int:
        return self.count_many([text])[0]


class EstimateCounter:
    """The estimate, scaled by a learned ratio when one exists: the same interface as CachedCounter."""

    exact = False
    key = ""

    def __init__(self, ratio: float | None = None):
        self.ratio = ratio

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [calibrated_tokens(t, self.ratio) for t in texts]

    def count(self, text: str) -> int:
        return calibrated_tokens(text, self.ratio)
