"""Counting tokens: the one estimate prompt building, stored message counts and the card editor share."""

import math


def estimate_tokens(text: str) -> int:
    """A conservative token estimate (about 3.5 characters a token for English prose)."""
    if not text:
        return 0
    return max(1, math.ceil(len(text) / 3.5))
