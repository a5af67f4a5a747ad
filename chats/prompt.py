"""Building the prompt for a reply: card, persona, lore, then as much recent history as fits.

The history is read newest first with the stored token counts in one query, and reading stops once
the budget is spent, so the cost follows the context window, never the length of the chat. The same
rows are the lorebook's scan window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from characters.models import Character
from core.tokens import estimate_tokens
from settings_app import stpresets
from settings_app.models import InstructTemplate, SiteSettings

from . import lore, memory, story
from .macros import MacroContext, expand
from .models import ChatSession, Message

# Chat templates wrap every message in a few tokens of markup (ChatML: <|im_start|>role\n … <|im_end|>\n).
PER_MESSAGE_OVERHEAD = 4
# Rows read per history query; budget / overhead bounds how many messages can ever fit.
MAX_HISTORY_ROWS = 2000

CHATML = InstructTemplate(
    name="ChatML",
    system_prefix="<|im_start|>system\n",
    system_suffix="<|im_end|>\n",
    user_prefix="<|im_start|>user\n",
    user_suffix="<|im_end|>\n",
    assistant_prefix="<|im_start|>assistant\n",
    assistant_suffix="<|im_end|>\n",
    stop_strings=["<|im_end|>", "<|im_start|>"],
)


@dataclass
class PromptPart:
    name: str
    tokens: int
    included: bool = True


@dataclass
class Prompt:
    messages: list[dict]
    text: str = ""  # text-completions mode: the whole prompt as one string
    stop: list[str] = field(default_factory=list)
    parts: list[PromptPart] = field(default_factory=list)
    budget: int = 0
    history_included: int = 0
    history_dropped_for_budget: bool = False
    lore_activated: list[str] = field(default_factory=list)
    lore_dropped: list[str] = field(default_factory=list)
    lore_skipped: list[dict] = field(default_factory=list)
    # Counted with the engine's own tokenizer (else the estimate, calibrated where it can be).
    exact: bool = False
    # Why each entry fired or not ({"entry", "book", "fired", "why"}), and how many more found no key.
    lore_decisions: list[dict] = field(default_factory=list)
    lore_unmatched: int = 0
    # The lore activation, for the caller that records its timed effects (chats.generation).
    activation: lore.Activation | None = field(default=None, repr=False)
    position: int = 0
    memory: dict = field(default_factory=dict)
    # The oldest message in the history window, when older ones were left out (for the summarizer).
    window_start: int | None = None

    def estimated_raw(self) -> int:
        """The plain estimate of what is sent, to learn an engine's ratio from its reported usage."""
        if self.text:
            return estimate_tokens(self.text)
        return (
            sum(estimate_tokens(m["content"]) + PER_MESSAGE_OVERHEAD for m in self.messages)
            + PER_MESSAGE_OVERHEAD
        )

    # The presets that shaped this prompt ({"context template": "ChatML", ...}); empty: rpchat's own order.
    built_with: dict = field(default_factory=dict)

    @property
    def used(self) -> int:
        return sum(p.tokens for p in self.parts if p.included)

    def as_meta(self) -> dict:
        """What the reply's metadata keeps, for the prompt inspector."""
        return {
            "messages": self.messages,
            "text": self.text,
            "stop": self.stop,
            "budget": self.budget,
            "used": self.used,
            "history_included": self.history_included,
            "history_dropped_for_budget": self.history_dropped_for_budget,
            "lore_activated": self.lore_activated,
            "lore_dropped_for_budget": self.lore_dropped,
            "lore_skipped": self.lore_skipped,
            "lore": self.lore_decisions,
            "lore_unmatched": self.lore_unmatched,
            "parts": [p.__dict__ for p in self.parts],
            "counted_with": "the engine's tokenizer" if self.exact else "an estimate",
            "built_with": self.built_with,
            "memory": self.memory,
        }


_ORIGINAL = re.compile(r"\{\{original\}\}", re.IGNORECASE)


def _override(card_value: str, instance_value: str) -> str:
    """V2 rule: a card's prompt replaces the instance's unless empty; {{original}} keeps it."""
    if not card_value.strip():
        return instance_value
    return _ORIGINAL.sub(lambda _: instance_value, card_value)


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
    mode: str = "chat",
    template: InstructTemplate | None = None,
    continue_text: str = "",
    impersonate: bool = False,
    members: list[Character] | None = None,
    counter=None,
    presets: story.ChatPresets | None = None,
    use_memory: bool = True,
    generation_type: str = "",
) -> Prompt:
    """The prompt for the reply at `before_seq`, as chat messages and, in text mode, one string.

    `counter` counts tokens for the engine (settings_app.engines.token_counter); without one, the
    estimate.
    """
    ctx = MacroContext(char=character.display_name, user=user_name, chat_seed=str(session.code))
    count = counter.count if counter is not None else estimate_tokens
    overhead = _overheads(counter, mode, template or CHATML)

    def macro(text: str) -> str:
        return expand(text, ctx)

    budget = max(context_size - reply_tokens, 0)
    presets = presets or story.ChatPresets()
    instance_system, instance_post = site.system_prompt, site.post_history_instructions
    if presets.sysprompt:  # the chat's system prompt stands in for the instance's
        instance_system = presets.sysprompt[1].get("content") or ""
        instance_post = presets.sysprompt[1].get("post_history") or instance_post
    chat_preset = presets.chat[1] if presets.chat and mode == "chat" else None
    preset_extra = ""
    if chat_preset is not None:
        instance_system, instance_post, preset_extra = _preset_main(chat_preset)
    system_prompt = macro(_override(character.system_prompt, instance_system))
    post_history = macro(_override(character.post_history_instructions, instance_post))
    # A chat-completion preset's own impersonation prompt goes last instead (story.preset_messages).
    own_impersonation = impersonate and not (
        chat_preset is not None and chat_preset.get("impersonation_prompt")
    )
    if own_impersonation:
        post_history = (
            f"Write {ctx.user}'s next message in this chat, in {ctx.user}'s voice, as {ctx.user} "
            "would write it. Write only that message."
        )
    group = [m for m in (members or []) if m.pk != character.pk]

    # History first (one query); its newest rows are also the lorebook's scan window.
    rows = _history_rows(session, before_seq=before_seq, budget=budget)
    recent = [row[1] for row in rows]
    scene = _lore_scene(session, character, persona_description, rows, before_seq=before_seq, budget=budget)
    scene.expand = macro
    # SillyTavern's generation types, for entries limited to some (`triggers`).
    scene.trigger = generation_type or (
        "impersonate" if impersonate else "continue" if continue_text else "normal"
    )
    activation = lore.activate(
        lore.entries_for(session=session, character=character, position=scene.position),
        recent=recent,
        estimate=count,
        scene=scene,
        estimate_many=counter.count_many if counter is not None else None,
    )
    slot = activation.slots
    if "system_prompt" in activation.disabled_prompts:  # a V3 @@disable_ui_prompt
        system_prompt = ""
    if "post_history_instructions" in activation.disabled_prompts and not impersonate:
        post_history = ""

    def lore_text(name: str) -> str:
        return macro("\n".join(slot.get(name, [])))

    personality = "\n".join(
        filter(
            None,
            [
                character.personality and f"{ctx.char}'s personality: {macro(character.personality)}",
                lore_text("personality"),
            ],
        )
    )
    scenario = "\n".join(
        filter(None, [character.scenario and f"Scenario: {macro(character.scenario)}", lore_text("scenario")])
    )
    sections = [
        ("system prompt", system_prompt),
        ("lore (before character)", lore_text("before_char")),
        ("description", macro(character.description)),
        ("lore (after description)", lore_text("after_desc")),
        ("personality", personality),
        ("scenario", scenario),
        ("lore (after character)", lore_text("after_char")),
        (
            "group",
            group
            and "Also in this chat: "
            + "; ".join(
                f"{m.display_name}: {expand(m.description, MacroContext(m.display_name, ctx.user))}"[:600]
                for m in group
            ),
        ),
        ("persona", persona_description and f"About {ctx.user}: {macro(persona_description)}"),
    ]
    note = ""
    if _note_due(session, before_seq):
        # Lore placed at the author's note's top or bottom goes with it (SillyTavern's AN top/bottom).
        note = "\n".join(
            filter(None, [lore_text("an_top"), macro(session.author_note), lore_text("an_bottom")])
        )
    injections = _injections(activation, character, macro)
    # Lore placed at the examples' top or bottom (SillyTavern's EM top/bottom) is reserved before
    # the history: unlike the examples themselves, it is not dropped for room.
    em_top, em_bottom = lore_text("em_top"), lore_text("em_bottom")
    examples = split_examples(macro(character.example_dialogue))
    if counter is not None:
        # One request for every text this prompt may count (the history is counted in one more).
        counter.count_many(
            [t for _, t in sections if t]
            + [post_history, note, continue_text, macro(preset_extra), *examples, em_top + em_bottom]
            + [text for _, _, text, _ in injections]
        )
    parts: list[PromptPart] = []
    system_blocks: list[str] = []
    # A chat-completion preset sends only the parts its order enables; the others cost nothing.
    sent = story.preset_sections(chat_preset) if chat_preset is not None else None
    for name, text in sections:
        if text and (sent is None or name in sent):
            system_blocks.append(text)
            parts.append(PromptPart(name, count(text) + 1))
    if sent is not None and "post-history instructions" not in sent and not own_impersonation:
        post_history = ""
    if post_history:
        parts.append(PromptPart("post-history instructions", count(post_history) + overhead("system")))
    if chat_preset is not None and preset_extra:
        parts.append(PromptPart("chat-completion preset prompts", count(macro(preset_extra)) + 8))
    if mode == "text" and (presets.context or presets.instruct):
        parts.append(PromptPart("context and instruct template text", _template_tokens(presets)))
    if note:
        parts.append(PromptPart("author's note", count(note) + overhead(session.author_note_role)))
    # Injections into the history: lore at a depth, the character's note, then the author's note.
    for _, role, text, name in injections:
        parts.append(PromptPart(name, count(text) + overhead(role)))
    if note:
        injections.append((session.author_note_depth, session.author_note_role, note, "author's note"))
    if em_top or em_bottom:
        parts.append(PromptPart("lore (around examples)", count(em_top + em_bottom) + 1))
    if continue_text:
        parts.append(PromptPart("reply being continued", count(continue_text) + overhead("assistant")))
    exact = bool(counter is not None and counter.exact)
    if exact:
        # The system message's own wrapping, and the prompt's start and the cue for the reply.
        parts.append(PromptPart("template", overhead("system") + overhead("")))
    fixed = sum(p.tokens for p in parts) + (0 if exact else PER_MESSAGE_OVERHEAD)
    remaining = budget - fixed

    if counter is not None:
        rows = _recount(rows, counter, budget=remaining)

    def fit(rows, budget):
        return _fit(
            rows, budget=budget, named=bool(members), overhead=overhead, count=count if exact else None
        )

    # Long-term memory: pinned facts, and what fell out of the window recalled by the newest words.
    if use_memory:
        recalled, history, dropped = _memory_block(
            session, character, rows, remaining, budget=budget, fit=fit, group=bool(members)
        )
    else:  # the benchmark's baseline
        recalled = memory.MemoryBlock(enabled=False)
        history, dropped = fit(rows, remaining)
    if recalled.tokens:
        parts.append(PromptPart("memory", recalled.tokens))
        remaining -= recalled.tokens
    history_tokens = sum(tokens for _, tokens in history)
    parts.append(PromptPart(f"chat history ({len(history)} messages)", history_tokens))
    remaining -= history_tokens

    if recalled.text:
        # A fixed place, the end of the card and persona (before examples): the same memories give
        # the same prompt. Inside the one system message: some chat templates refuse a second one.
        system_blocks.append(recalled.text)

    # Example dialogue goes in only if it fits after the history: it is the first thing dropped.
    kept_examples = []
    for i, block in enumerate(examples, start=1):
        cost = count(block) + 2
        fits = cost <= remaining
        parts.append(PromptPart(f"example dialogue {i}", cost, included=fits))
        if fits:
            kept_examples.append(block)
            remaining -= cost
    by_story = chat_preset is not None or (mode == "text" and (presets.context or presets.instruct))
    if (kept_examples or em_top or em_bottom) and not by_story:
        body = "\n\n".join(f"<START>\n{b}" for b in kept_examples)
        system_blocks.append(
            "\n".join(filter(None, [em_top, body and "Example dialogue:\n" + body, em_bottom]))
        )

    messages = [{"role": "system", "content": "\n\n".join(system_blocks)}]
    messages += _inject([m for m, _ in history], injections)
    if post_history:
        messages.append({"role": "system", "content": post_history})
    if continue_text:
        messages.append({"role": "assistant", "content": continue_text})
    pieces = story.Pieces(
        system=system_prompt,
        wi_before=lore_text("before_char"),
        # Lore placed after the description, in the personality or scenario, goes with them; lore
        # around the examples goes after the character (the story renders the examples itself).
        description="\n".join(filter(None, [macro(character.description), lore_text("after_desc")])),
        personality="\n".join(filter(None, [macro(character.personality), lore_text("personality")])),
        scenario="\n".join(filter(None, [macro(character.scenario), lore_text("scenario")])),
        # With presets, memory goes where lore placed after the character goes.
        wi_after="\n\n".join(
            t
            for t in ("\n".join(filter(None, [lore_text("after_char"), em_top, em_bottom])), recalled.text)
            if t
        ),
        persona=macro(persona_description),
        group=dict(sections).get("group") or "",
        examples=kept_examples,
        post_history=post_history,
    )
    if chat_preset is not None:
        tail = 1 if continue_text else 0
        chat = messages[1 : len(messages) - tail - (1 if post_history else 0)]
        messages = story.preset_messages(
            preset=chat_preset,
            pieces=pieces,
            main=system_prompt,
            post_history=post_history,
            history=chat,
            ctx=ctx,
            impersonate=impersonate,
        )
        if continue_text:
            messages.append({"role": "assistant", "content": continue_text})

    prompt = Prompt(
        messages=messages,
        parts=parts,
        budget=budget,
        history_included=len(history),
        history_dropped_for_budget=dropped,
        lore_activated=activation.activated,
        lore_dropped=activation.dropped_for_budget,
        lore_skipped=activation.skipped,
        lore_decisions=activation.decisions,
        lore_unmatched=activation.unmatched,
        activation=activation,
        position=scene.position,
        exact=exact,
        built_with=presets.names(mode),
        memory=recalled.as_meta(),
        window_start=rows[len(history) - 1][4] if dropped and history else None,
    )
    if mode == "text" and (presets.context or presets.instruct):
        names = {"user": ctx.user, "assistant": ctx.char, "system": "System"}
        prompt.text, prompt.stop = story.render_text(
            presets=presets,
            pieces=pieces,
            chat=[{**m, "name": names[m["role"]]} for m in messages[1:]],
            ctx=ctx,
            continue_text=bool(continue_text),
            impersonate=impersonate,
            group=bool(members),
            others=[m.display_name for m in group],
        )
    elif mode == "text":
        prompt.text, prompt.stop = render_text(
            messages, template or CHATML, continue_text=bool(continue_text), impersonate=impersonate
        )
    return prompt


def render_text(
    messages: list[dict], template: InstructTemplate, *, continue_text: bool, impersonate: bool
) -> tuple[str, list[str]]:
    """One string in the template's instruct format, ending where the model should write."""
    out = [template.prompt_prefix]
    body = messages[:-1] if continue_text else messages
    for message in body:
        role = message["role"]
        if role == "system" and template.system_as_user:
            role = "user"
        prefix = getattr(template, f"{role}_prefix")
        suffix = getattr(template, f"{role}_suffix")
        out.append(f"{prefix}{message['content']}{suffix}")
    if impersonate:
        out.append(template.user_prefix)
    else:
        out.append(template.assistant_prefix)
        if continue_text:
            out.append(messages[-1]["content"])
    return "".join(out), list(template.stop_strings or [])


def _preset_main(preset: dict) -> tuple[str, str, str]:
    """A chat-completion preset's main and post-history prompts, and the text of its other prompts
    (counted against the budget)."""
    main = post = ""
    extra = []
    for item in stpresets.prompt_order(preset):
        if item.identifier == "main":
            main = item.content
        elif item.identifier == "jailbreak":
            post = item.content
        elif not item.marker:
            extra.append(item.content)
    return main, post, "\n".join(extra)


def _template_tokens(presets: story.ChatPresets) -> int:
    """What a context template's and instruct template's own text adds, per prompt, roughly."""
    text = ""
    if presets.context:
        data = presets.context[1]
        text += story.render_story(data.get("story_string") or "", {}, MacroContext("", ""))
        text += (data.get("chat_start") or "") + (data.get("example_separator") or "")
    if presets.instruct:
        data = presets.instruct[1]
        text += "".join(
            str(data.get(k) or "") for k in ("system_sequence", "last_output_sequence", "output_sequence")
        )
    return estimate_tokens(text) + 2


def character_note(character: Character) -> tuple[str, int, str] | None:
    """(text, depth, role) of the card's character's note (SillyTavern's extensions.depth_prompt)."""
    note = (
        (character.extensions or {}).get("depth_prompt") if isinstance(character.extensions, dict) else None
    )
    if not isinstance(note, dict):
        return None
    text = note.get("prompt")
    if not isinstance(text, str) or not text.strip():
        return None
    depth = note.get("depth", 4)
    depth = depth if isinstance(depth, int) and not isinstance(depth, bool) and depth >= 0 else 4
    role = note.get("role") if note.get("role") in ("system", "user", "assistant") else "system"
    return text, depth, role


def _lore_scene(
    session: ChatSession,
    character: Character,
    persona_description: str,
    rows,
    *,
    before_seq: int,
    budget: int,
) -> lore.Scene:
    """What lore activation knows of this reply beyond the history (chats.lore.Scene)."""
    note = character_note(character)
    return lore.Scene(
        # Timed effects count messages: this reply's position is the number of messages before it.
        position=max(before_seq - 1, 0),
        seed=str(session.code),
        texts={
            "persona": persona_description,
            "description": character.description,
            "personality": character.personality,
            "character's note": note[0] if note else "",
            "scenario": character.scenario,
            "creator's notes": character.creator_notes,
        },
        replies=lambda: _replies_before(session, rows, before_seq=before_seq, budget=budget),
        greeting=lambda: _greeting_index(session),
    )


def _injections(activation: lore.Activation, character: Character, macro) -> list[tuple[int, str, str, str]]:
    """(depth, role, text, name) put into the history: lore at a depth (one per depth and role),
    then the character's note; the author's note follows them where they share a depth."""
    out = [
        (depth, role, macro("\n".join(contents)), "lore at depth")
        for depth, role, contents in activation.at_depth
    ]
    if note := character_note(character):
        text, depth, role = note
        out.append((depth, role, macro(text), "character's note"))
    return out


def _inject(history: list[dict], injections: list[tuple[int, str, str, str]]) -> list[dict]:
    """The history with each (depth, role, text) put `depth` messages from its end (0: after the
    last one; past the oldest: before it). At the same place, in the order given."""
    if not injections:
        return history
    at: dict[int, list[dict]] = {}
    for depth, role, text, _ in injections:
        if text:
            at.setdefault(len(history) - min(depth, len(history)), []).append({"role": role, "content": text})
    out: list[dict] = []
    for index in range(len(history) + 1):
        out += at.get(index, [])
        if index < len(history):
            out.append(history[index])
    return out


def _replies_before(session: ChatSession, rows: list[tuple], *, before_seq: int, budget: int) -> int:
    """Character messages before the reply (V3's @@activate_only_after/_every count them): from the
    rows already read when they reach the chat's start, else one count."""
    if len(rows) < min(budget // PER_MESSAGE_OVERHEAD + 1, MAX_HISTORY_ROWS):
        return sum(1 for role, *_ in rows if role == Message.Role.ASSISTANT)
    return (
        Message.objects.in_prompt()
        .filter(session=session, seq__lt=before_seq, role=Message.Role.ASSISTANT)
        .count()
    )


def _greeting_index(session: ChatSession) -> int | None:
    """Which greeting the chat began with (V3's @@is_greeting): the first message's active swipe."""
    first = (
        Message.objects.filter(session=session).order_by("seq").values_list("role", "alternative_index")[:1]
    )
    for role, index in first:
        return index if role == Message.Role.ASSISTANT else None
    return None


def _note_due(session: ChatSession, before_seq: int) -> bool:
    frequency = session.author_note_frequency
    if frequency <= 0:
        return False
    # One turn is a user message and a reply.
    return (before_seq // 2) % frequency == 0


def history_queryset(session: ChatSession, *, before_seq: int, budget: int):
    """Newest prompt-visible messages before `before_seq`, newest first: one keyset query."""
    limit = min(budget // PER_MESSAGE_OVERHEAD + 1, MAX_HISTORY_ROWS)
    return (
        Message.objects.in_prompt()
        .filter(session=session, seq__lt=before_seq)
        .order_by("-seq")
        .values_list("role", "content", "token_count", "speaker", "seq", "id")[:limit]
    )


def _history_rows(session: ChatSession, *, before_seq: int, budget: int) -> list[tuple]:
    if budget <= 0:
        return []
    return list(history_queryset(session, before_seq=before_seq, budget=budget))


def _overheads(counter, mode: str, template: InstructTemplate):
    """Tokens a message of each role costs beyond its text, and (role "") the prompt's start and
    the cue for the reply: measured for the engine when it has a tokenizer, else a fixed guess."""
    known: dict[str, int] = {}
    if counter is not None and counter.exact:
        if mode == "text":
            for role in ("system", "user", "assistant"):
                wrap = getattr(template, f"{role}_prefix") + getattr(template, f"{role}_suffix")
                known[role] = counter.count(wrap) + 1
            # The start of the text (one token for a start-of-text token) and the reply's prefix.
            known[""] = counter.count(template.prompt_prefix) + counter.count(template.assistant_prefix) + 1
        else:
            known = counter.overheads()

    def overhead(role: str) -> int:
        return known.get(role, PER_MESSAGE_OVERHEAD)

    return overhead


def _recount(rows: list[tuple], counter, *, budget: int) -> list[tuple]:
    """The rows with their counts from `counter`: all of them in one batch (cached per text, so
    a message is sent to the engine's tokenizer once). Rows far past what can fit are not
    counted, and marked as not fitting."""
    reach = taken = 0
    while taken < len(rows) and reach <= 2 * budget + 64:
        reach += rows[taken][2] + PER_MESSAGE_OVERHEAD
        taken += 1
    counts = counter.count_many([row[1] for row in rows[:taken]])
    return [
        (role, content, counts[i] if i < len(counts) else budget + 1, speaker, *rest)
        for i, (role, content, _, speaker, *rest) in enumerate(rows)
    ]


def _fit(rows: list[tuple], *, budget: int, named: bool, overhead=None, count=None) -> tuple[list, bool]:
    """The newest rows that fit the budget, oldest first. In group chats each line is named.

    `overhead(role)` is what a message costs beyond its text; `count`, when given, counts the
    speaker's name exactly."""
    picked = []
    spent = 0
    dropped = False
    for role, text, tokens, speaker, *_ in rows:
        content = text
        cost = tokens + (overhead(role) if overhead else PER_MESSAGE_OVERHEAD)
        if named and speaker:
            content = f"{speaker}: {text}"
            cost += count(f"{speaker}: ") if count else estimate_tokens(speaker) + 1
        if spent + cost > budget:
            dropped = True
            break
        spent += cost
        picked.append(({"role": role, "content": content}, cost))
    else:
        limit = min(max(budget, 0) // PER_MESSAGE_OVERHEAD + 1, MAX_HISTORY_ROWS)
        dropped = len(rows) >= limit and budget > 0
    picked.reverse()
    return picked, dropped


def _memory_block(session, character, rows, remaining: int, *, budget: int, fit, group: bool):
    """The memory block (chats/memory.py) and the history that fits beside it.

    Recall looks before the window the history has when the block takes its whole share; the
    history then gets back what the block left unused, and a recalled message that is back in the
    window is dropped from the block rather than sent twice.
    """
    history, dropped = fit(rows, remaining)
    mem, facts = memory.settings_and_facts(session)
    if not mem.enabled:
        return memory.MemoryBlock(enabled=False, share=mem.share, settings=mem), history, dropped
    limit = budget * mem.share // 100
    window_seq = window_id = None
    if dropped:
        reserved, _ = fit(rows, remaining - limit)
        edge = rows[len(reserved) - 1] if reserved else rows[0]
        window_seq, window_id = edge[4], edge[5]
    block = memory.recall(
        session=session,
        character=character,
        settings=mem,
        facts=facts,
        limit=limit,
        newest=[row[1] for row in rows[: memory.NEWEST_MESSAGES]],
        window_seq=window_seq,
        window_id=window_id,
        group=group,
    )
    for _ in range(3):
        if not block.tokens:
            break
        history, dropped = fit(rows, remaining - block.tokens)
        start = rows[len(history) - 1][4] if history else None
        if start is None or not block.drop_from(start):
            break
    return block, history, dropped
