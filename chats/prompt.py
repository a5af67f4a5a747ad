"""Building the prompt for a reply: card, persona, then as much recent history as fits.

The history is read newest first with the stored token counts, and reading stops once the budget is
spent, so the cost follows the context window, never the length of the chat.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from characters.models import Character
from settings_app.models import SiteSettings

from .macros import MacroContext, expand
from .models import ChatSession, Message

# Chat templates wrap every message in a few tokens of markup (ChatML: <|im_start|>role\n … <|im_end|>\n).
PER_MESSAGE_OVERHEAD = 4
# Rows read per history query; budget / overhead bounds how many messages can ever fit.
MAX_HISTORY_ROWS = 2000


def estimate_tokens(text: str) -> int:
    """A conservative token estimate (about 3.5 characters a token for English prose)."""
    if not text:
        return 0
    return max(1, math.ceil(len(text) / 3.5))


@dataclass
class PromptPart:
    name: str
    tokens: int
    included: bool = True


@dataclass
class Prompt:
    messages: list[dict]
    parts: list[PromptPart] = field(default_factory=list)
    budget: int = 0
    history_included: int = 0
    history_dropped_for_budget: bool = False

    @property
    def used(self) -> int:
        return sum(p.tokens for p in self.parts if p.included)

    def as_meta(self) -> dict:
        """What the reply's metadata keeps, for the prompt inspector."""
        return {
            "messages": self.messages,
            "budget": self.budget,
            "used": self.used,
            "history_included": self.history_included,
            "history_dropped_for_budget": self.history_dropped_for_budget,
            "parts": [p.__dict__ for p in self.parts],
        }


def _override(card_value: str, instance_value: str) -> str:
    """V2 rule: a card's prompt replaces the instance's unless empty; {{original}} keeps it."""
    if not card_value.strip():
        return instance_value
    return card_value.replace("{{original}}", instance_value).replace("{{Original}}", instance_value)


def split_examples(example_dialogue: str) -> list[str]:
    blocks = [b.strip() for b in example_dialogue.replace("<start>", "<START>").split("<START>")]
    return [b for b in blocks if b]


def build_prompt(
    *,
    session: ChatSession,
    character: Character,
    user_name: str,
    persona_description: str,
    site: SiteSettings,
    context_size: int,
    reply_tokens: int,
    before_seq: int,
) -> Prompt:
    """The chat-completions messages for the reply at `before_seq`."""
    ctx = MacroContext(char=character.display_name, user=user_name, chat_seed=str(session.code))

    def macro(text: str, original: str = "") -> str:
        return expand(text, MacroContext(ctx.char, ctx.user, ctx.chat_seed, original))

    budget = max(context_size - reply_tokens, 0)
    system_prompt = macro(_override(character.system_prompt, site.system_prompt))
    sections = [
        ("system prompt", system_prompt),
        ("description", macro(character.description)),
        ("personality", macro(character.personality) and f"{ctx.char}'s personality: {macro(character.personality)}"),
        ("scenario", macro(character.scenario) and f"Scenario: {macro(character.scenario)}"),
        ("persona", macro(persona_description) and f"About {ctx.user}: {macro(persona_description)}"),
    ]
    parts: list[PromptPart] = []
    system_blocks: list[str] = []
    for name, text in sections:
        if text:
            system_blocks.append(text)
            parts.append(PromptPart(name, estimate_tokens(text) + 1))
    post_history = macro(
        _override(character.post_history_instructions, site.post_history_instructions)
    )
    if post_history:
        parts.append(PromptPart("post-history instructions", estimate_tokens(post_history) + PER_MESSAGE_OVERHEAD))
    fixed = sum(p.tokens for p in parts) + PER_MESSAGE_OVERHEAD
    remaining = budget - fixed

    history, dropped = _history(session, before_seq=before_seq, budget=remaining)
    history_tokens = sum(tokens for _, tokens in history)
    parts.append(PromptPart(f"chat history ({len(history)} messages)", history_tokens))
    remaining -= history_tokens

    # Example dialogue goes in only if it fits after the history: it is the first thing dropped.
    examples = split_examples(macro(character.example_dialogue))
    kept_examples = []
    for i, block in enumerate(examples, start=1):
        cost = estimate_tokens(block) + 2
        fits = cost <= remaining
        parts.append(PromptPart(f"example dialogue {i}", cost, included=fits))
        if fits:
            kept_examples.append(block)
            remaining -= cost
    if kept_examples:
        system_blocks.append(
            "Example dialogue:\n" + "\n\n".join(f"<START>\n{b}" for b in kept_examples)
        )

    messages = [{"role": "system", "content": "\n\n".join(system_blocks)}]
    messages += [m for m, _ in history]
    if post_history:
        messages.append({"role": "system", "content": post_history})
    return Prompt(
        messages=messages,
        parts=parts,
        budget=budget,
        history_included=len(history),
        history_dropped_for_budget=dropped,
    )


def _history(session: ChatSession, *, before_seq: int, budget: int) -> tuple[list, bool]:
    """Newest messages before `before_seq` that fit the budget, oldest first. One query."""
    if budget <= 0:
        return [], True
    limit = min(budget // PER_MESSAGE_OVERHEAD + 1, MAX_HISTORY_ROWS)
    rows = (
        Message.objects.in_prompt()
        .filter(session=session, seq__lt=before_seq)
        .order_by("-seq")
        .values_list("role", "content", "token_count")[:limit]
    )
    picked = []
    spent = 0
    dropped = False
    for role, content, tokens in rows:
        cost = tokens + PER_MESSAGE_OVERHEAD
        if spent + cost > budget:
            dropped = True
            break
        spent += cost
        picked.append(({"role": role, "content": content}, cost))
    else:
        dropped = len(rows) == limit
    picked.reverse()
    return picked, dropped
