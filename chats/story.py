"""Prompts shaped by SillyTavern presets: a context template's story string and an instruct template
for text completions, a chat-completion preset's prompt order for chat completions.

chats.prompt gathers the pieces (card, lore, persona, history that fits) and calls these when a chat
chose presets; without them it keeps its own order. Every pass over user text here is linear: the
story string is read once left to right, keeping one flag per open {{#if}} block.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field

from settings_app import stpresets
from settings_app.models import Preset

from .macros import MacroContext, expand
from .models import PRESET_FIELDS

logger = logging.getLogger(__name__)

# The story string SillyTavern's "Default" context template has, for a chat that chose an instruct
# template and no context template.
DEFAULT_STORY = (
    "{{#if system}}{{system}}\n{{/if}}{{#if wiBefore}}{{wiBefore}}\n{{/if}}"
    "{{#if description}}{{description}}\n{{/if}}{{#if personality}}{{char}}'s personality: "
    "{{personality}}\n{{/if}}{{#if scenario}}Scenario: {{scenario}}\n{{/if}}"
    "{{#if wiAfter}}{{wiAfter}}\n{{/if}}{{#if persona}}{{persona}}\n{{/if}}"
)
_TRIM = object()
_NAME = re.compile(r"\{\{name\}\}", re.IGNORECASE)


@dataclass
class ChatPresets:
    """The presets a chat chose, as (name, data) pairs; None where it chose none."""

    context: tuple[str, dict] | None = None
    instruct: tuple[str, dict] | None = None
    sysprompt: tuple[str, dict] | None = None
    sampler: tuple[str, dict] | None = None
    chat: tuple[str, dict] | None = None

    def names(self, mode: str | None = None) -> dict:
        """The chosen presets by kind; with `mode`, only those that shape a prompt in that mode."""
        skip = {"chat": ("context", "instruct"), "text": ("chat",)}.get(mode or "", ())
        labels = {
            "context": "context template",
            "instruct": "instruct template",
            "sysprompt": "system prompt",
            "sampler": "sampler preset",
            "chat": "chat-completion preset",
        }
        return {labels[k]: getattr(self, k)[0] for k in labels if getattr(self, k) and k not in skip}


@dataclass
class Pieces:
    """What a prompt is made of, each already macro-expanded."""

    system: str = ""
    wi_before: str = ""
    description: str = ""
    personality: str = ""
    scenario: str = ""
    wi_after: str = ""
    persona: str = ""
    group: str = ""
    examples: list[str] = field(default_factory=list)
    post_history: str = ""


# --- the story string ------------------------------------------------------------------------------


def render_story(template: str, params: dict[str, str], ctx: MacroContext) -> str:
    """The story string: `{{#if x}}…{{else}}…{{/if}}` (and `{{#unless}}`) kept or dropped by whether
    `params[x]` has text, `{{x}}` replaced by `params[x]`, `{{trim}}` removing the line breaks around
    it, every other macro expanded. Values go in as they are (they are not read for blocks or macros)."""
    out: list = []
    # Template text waiting for its macros: expanded a run at a time, not a call per piece.
    pending: list[str] = []

    def flush() -> None:
        if pending:
            text = "".join(pending)
            # Plain text needs no expanding (a macro starts with {{, an old one with <).
            out.append(expand(text, ctx) if "{{" in text or "<" in text else text)
            pending.clear()

    # Each open block: whether its text is kept. Text is written only while all of them are.
    stack: list[bool] = []
    kept = True
    done = 0
    while (start := template.find("{{", done)) != -1:
        end = template.find("}}", start + 2)
        if end == -1:
            break
        if kept:
            pending.append(template[done:start])
        body = template[start + 2 : end].strip()
        head, _, arg = body.partition(" ")
        word = head.lower()
        if word in ("#if", "#unless"):
            truthy = bool(params.get(arg.strip(), "").strip())
            stack.append(kept)
            kept = kept and (truthy if word == "#if" else not truthy)
        elif word == "else" and stack:
            kept = stack[-1] and not kept
        elif word in ("/if", "/unless") and stack:
            kept = stack.pop()
        elif kept:
            if body in params:
                flush()
                out.append(params[body])
            elif word == "trim":
                flush()
                out.append(_TRIM)
            else:
                pending.append(template[start : end + 2])
        done = end + 2
    if kept:
        pending.append(template[done:])
    flush()
    return _join_trimmed(out)


def _join_trimmed(pieces: list) -> str:
    text: list[str] = []
    strip_next = False
    for piece in pieces:
        if piece is _TRIM:
            # Back through the pieces before it (empty ones may stand between) to the text; the
            # emptied ones go, so each piece is stripped once however many {{trim}} there are.
            while text:
                text[-1] = text[-1].rstrip("\r\n")
                if text[-1]:
                    break
                text.pop()
            strip_next = True
            continue
        if strip_next:
            trimmed = piece.lstrip("\r\n")
            strip_next = not trimmed
            text.append(trimmed)
        else:
            text.append(piece)
    return "".join(text)


def story_params(pieces: Pieces, ctx: MacroContext, *, examples: str) -> dict[str, str]:
    persona = pieces.persona
    if pieces.group:
        persona = f"{pieces.group}\n{persona}" if persona else pieces.group
    return {
        "system": pieces.system,
        "wiBefore": pieces.wi_before,
        "loreBefore": pieces.wi_before,
        "description": pieces.description,
        "personality": pieces.personality,
        "scenario": pieces.scenario,
        "wiAfter": pieces.wi_after,
        "loreAfter": pieces.wi_after,
        "persona": persona,
        "char": ctx.char,
        "user": ctx.user,
        "mesExamples": examples,
        "mesExamplesRaw": "".join(f"<START>\n{b}\n" for b in pieces.examples),
    }


# --- text completions --------------------------------------------------------------------------------


class _Instruct:
    """An instruct template's sequences, with {{name}} and macros filled in as SillyTavern does."""

    def __init__(self, data: dict, ctx: MacroContext):
        self.data = data
        self.ctx = ctx
        self.wrap = bool(data.get("wrap"))
        self.sep = "\n" if self.wrap else ""
        behavior = data.get("names_behavior")
        if behavior is None:  # older templates: names / names_force_groups
            behavior = (
                "always" if data.get("names") else ("force" if data.get("names_force_groups") else "none")
            )
        self.names = behavior
        self._seqs: dict[tuple[str, str], str] = {}

    def seq(self, key: str, name: str) -> str:
        # Once per sequence and speaker, not once per message: a prompt holds up to 2,000 turns.
        cached = self._seqs.get((key, name))
        if cached is not None:
            return cached
        text = self.data.get(key) or ""
        if not isinstance(text, str):
            text = ""
        if self.data.get("macro", True):
            text = expand(text, self.ctx)
            text = _NAME.sub(lambda _: name, text)
        self._seqs[(key, name)] = text
        return text

    def turn(self, role: str, content: str, name: str, *, first: bool, last: bool, named: bool) -> str:
        same = self.data.get("system_same_as_user")
        if role == "system":
            prefix = self.seq("input_sequence" if same else "system_sequence", "System")
            suffix = self.seq("input_suffix" if same else "system_suffix", "System")
            named = False
        elif role == "user":
            key = "input_sequence"
            if first and self.data.get("first_input_sequence"):
                key = "first_input_sequence"
            elif last and self.data.get("last_input_sequence"):
                key = "last_input_sequence"
            prefix, suffix = self.seq(key, name), self.seq("input_suffix", name)
        else:
            key = (
                "first_output_sequence"
                if first and self.data.get("first_output_sequence")
                else "output_sequence"
            )
            prefix, suffix = self.seq(key, name), self.seq("output_suffix", name)
        if not suffix and self.wrap:
            suffix = "\n"
        text = f"{name}: {content}" if named and name else content
        return self.sep.join(x for x in (prefix, text + suffix) if x)

    def stops(self, user: str, char: str) -> list[str]:
        found = []
        for key, name in (
            ("stop_sequence", ""),
            ("input_sequence", user),
            ("output_sequence", char),
            ("first_output_sequence", char),
            ("last_output_sequence", char),
            ("system_sequence", "System"),
            ("last_system_sequence", "System"),
        ):
            for line in self.seq(key, name).split("\n"):
                if line.strip():
                    found.append(self.sep + line)
        return list(dict.fromkeys(found))


def render_text(
    *,
    presets: ChatPresets,
    pieces: Pieces,
    chat: list[dict],
    ctx: MacroContext,
    continue_text: bool,
    impersonate: bool,
    group: bool,
    others: list[str] = (),
) -> tuple[str, list[str]]:
    """A text-completion prompt: the story string, the examples, the chat start, the chat in the
    instruct template's turns (or as `Name: text` lines without one), then the reply's opening.

    `chat` is the messages after the story (history, author's note, post-history instructions and the
    reply being continued) with a `name` key for who said each; `others` names a group's other
    members."""
    context = presets.context[1] if presets.context else {"story_string": DEFAULT_STORY}
    instruct = _Instruct(presets.instruct[1], ctx) if presets.instruct else None
    separator = expand(context.get("example_separator") or "", ctx)

    examples = _examples(pieces.examples, instruct, separator, ctx)
    system = pieces.system
    if instruct and system:
        for key, joiner in (("system_sequence_prefix", "prefix"), ("system_sequence_suffix", "suffix")):
            value = instruct.seq(key, "System")
            if value:
                system = (
                    value + instruct.sep + system if joiner == "prefix" else system + instruct.sep + value
                )
    story_pieces = Pieces(**{**pieces.__dict__, "system": system})
    story_string = context.get("story_string") or ""
    story = render_story(story_string, story_params(story_pieces, ctx, examples=examples), ctx).lstrip("\n")
    if story and not story.endswith("\n") and (instruct is None or instruct.wrap):
        story += "\n"
    out = [story]
    if "mesExamples" not in story_string:
        out.append(examples)
    if instruct and instruct.data.get("user_alignment_message"):
        out.append(instruct.turn("user", expand(instruct.data["user_alignment_message"], ctx), ctx.user,
                                 first=True, last=False, named=False))  # fmt: skip
    chat_start = context.get("chat_start") or ""
    if chat_start:
        out.append(expand(chat_start, ctx) + "\n")

    body = chat[:-1] if continue_text else chat
    last_user = max((i for i, m in enumerate(body) if m["role"] == "user"), default=-1)
    seen: set[str] = set()
    for i, message in enumerate(body):
        role, name = message["role"], message.get("name", "")
        if instruct is None:
            line = message["content"] if role == "system" or group else f"{name}: {message['content']}"
            out.append(line + "\n")
            continue
        # "force" names only the members of a group, whose lines carry their names already.
        named = not group and instruct.names == "always"
        out.append(
            instruct.turn(
                role, message["content"], name, first=role not in seen, last=i == last_user, named=named
            )
        )
        seen.add(role)
    out.append(
        _opening(instruct, ctx, chat, continue_text=continue_text, impersonate=impersonate, group=group)
    )
    return "".join(out), _stops(instruct, context, ctx, others)


def _opening(instruct, ctx, chat, *, continue_text: bool, impersonate: bool, group: bool) -> str:
    """Where the model starts writing: the reply's sequence (and name), or the reply being continued."""
    name = ctx.user if impersonate else ctx.char
    if continue_text:
        last = chat[-1]
        if instruct is None:
            return f"{name}: {last['content']}"
        prefix = instruct.seq("output_sequence", name)
        named = not group and instruct.names == "always"
        text = f"{name}: {last['content']}" if named else last["content"]
        return instruct.sep.join(x for x in (prefix, text) if x)
    if instruct is None:
        return f"{name}:"
    if impersonate:
        sequence = instruct.seq("input_sequence", name)
    else:
        sequence = instruct.seq("last_output_sequence", name) or instruct.seq("output_sequence", name)
    if not group and instruct.names == "always":
        # SillyTavern's Mistral rule: a last sequence without the output sequence's trailing space
        # gets it back before the name.
        output = instruct.seq("output_sequence", name)
        last = instruct.seq("last_output_sequence", name)
        filler = (
            output[-1]
            if last and sequence == last and output[-1:].isspace() and not last[-1:].isspace()
            else ""
        )
        return sequence + instruct.sep + filler + f"{name}:"
    return (sequence.rstrip() if instruct.wrap else sequence) + instruct.sep


def _examples(blocks: list[str], instruct, separator: str, ctx: MacroContext) -> str:
    # As SillyTavern: the separator heads each block; without one the blocks follow each other.
    heading = f"{separator}\n" if separator else ""
    if instruct is None or instruct.data.get("skip_examples"):
        return "".join(f"{heading}{b.strip()}\n" for b in blocks)
    out = []
    for block in blocks:
        if separator:
            out.append(heading)
        for role, text in _example_turns(block, ctx):
            name = ctx.user if role == "user" else ctx.char
            named = instruct.names == "always" or (instruct.names == "force" and role == "user")
            out.append(instruct.turn(role, text, name, first=False, last=False, named=named))
    return "".join(out)


def _example_turns(block: str, ctx: MacroContext) -> list[tuple[str, str]]:
    """An example block's lines, split where a line starts with `{{user}}:` or `{{char}}:`."""
    turns: list[tuple[str, list[str]]] = []
    user, char = f"{ctx.user}:", f"{ctx.char}:"
    for line in block.split("\n"):
        if line.startswith(user):
            turns.append(("user", [line[len(user) :].strip()]))
        elif line.startswith(char):
            turns.append(("assistant", [line[len(char) :].strip()]))
        elif turns:
            turns[-1][1].append(line)
        elif line.strip():
            turns.append(("assistant", [line]))
    return [(role, "\n".join(lines).strip()) for role, lines in turns]


def _stops(instruct, context: dict, ctx: MacroContext, others: list[str]) -> list[str]:
    # Without an instruct template, a line starting with someone else's name ends the reply.
    stops = instruct.stops(ctx.user, ctx.char) if instruct else [f"\n{n}:" for n in (ctx.user, *others)]
    if context.get("use_stop_strings"):
        for key in ("chat_start", "example_separator"):
            if context.get(key):
                stops.append("\n" + expand(context[key], ctx))
    return list(dict.fromkeys(stops))


# --- chat completions ---------------------------------------------------------------------------------


# The parts of chats.prompt's system block, and the prompt-manager marker each is sent by.
SECTION_MARKERS = {
    "system prompt": "main",
    "lore (before character)": "worldInfoBefore",
    "description": "charDescription",
    "personality": "charPersonality",
    "scenario": "scenario",
    "lore (after character)": "worldInfoAfter",
    "group": "personaDescription",
    "persona": "personaDescription",
    "post-history instructions": "jailbreak",
}


def preset_sections(preset: dict) -> set[str]:
    """The names of the prompt parts a chat-completion preset's order sends."""
    enabled = {p.identifier for p in stpresets.prompt_order(preset) if not p.in_chat}
    return {name for name, marker in SECTION_MARKERS.items() if marker in enabled}


def preset_messages(
    *,
    preset: dict,
    pieces: Pieces,
    main: str,
    post_history: str,
    history: list[dict],
    ctx: MacroContext,
    impersonate: bool,
) -> list[dict]:
    """Chat messages in the order of a chat-completion preset: each enabled prompt where its order
    puts it (the markers filled with the card, lore, persona, examples and history), prompts set
    "in chat" inserted into the history at their depth, consecutive system messages merged when the
    preset squashes them. `main` and `post_history` are the main and post-history prompts after the
    card's overrides."""
    order = stpresets.prompt_order(preset)
    fmt = {
        "personality": _setting(preset, "personality_format", "[{{char}}'s personality: {{personality}}]"),
        "scenario": _setting(
            preset, "scenario_format", "[Circumstances and context of the dialogue: {{scenario}}]"
        ),
        "wi": preset.get("wi_format") or "{0}",
    }

    def formatted(key: str, value: str) -> str:
        # An empty format leaves the part out, as in SillyTavern; the value goes in as it is.
        if not value or not fmt[key]:
            return ""
        return expand(fmt[key], ctx).replace("{{" + key + "}}", value)

    def wi(value: str) -> str:
        return fmt["wi"].replace("{0}", value) if value else ""

    markers = {
        "main": main,
        "jailbreak": post_history,
        "worldInfoBefore": wi(pieces.wi_before),
        "worldInfoAfter": wi(pieces.wi_after),
        "charDescription": pieces.description,
        "charPersonality": formatted("personality", pieces.personality),
        "scenario": formatted("scenario", pieces.scenario),
        "personaDescription": "\n".join(x for x in (pieces.group, pieces.persona) if x),
    }
    messages: list[dict] = []
    in_chat = []
    for prompt in order:
        if prompt.in_chat:
            if prompt.content:
                in_chat.append(prompt)
            continue
        if prompt.identifier == "chatHistory":
            new_chat = expand(_setting(preset, "new_chat_prompt", "[Start a new Chat]"), ctx)
            if new_chat:
                messages.append({"role": "system", "content": new_chat})
            messages.append({"history": True})
            continue
        if prompt.identifier == "dialogueExamples":
            heading = expand(_setting(preset, "new_example_chat_prompt", "[Example Chat]"), ctx)
            for block in pieces.examples:
                messages.append({"role": "system", "content": "\n".join(x for x in (heading, block) if x)})
            continue
        content = markers.get(prompt.identifier)
        if content is None:
            content = expand(prompt.content, ctx)
        if content:
            messages.append({"role": prompt.role, "content": content})
    chat = _inject(list(history), in_chat, ctx)
    out: list[dict] = []
    for message in messages:
        if message.get("history"):
            out.extend(chat)
        else:
            out.append(message)
    if not any(m.get("history") for m in messages):
        out.extend(chat)  # an order without the chat history marker still sends the chat
    if post_history and not any(p.identifier == "jailbreak" and not p.in_chat for p in order):
        out.append({"role": "system", "content": post_history})  # Write for me's own instruction
    if impersonate:
        text = expand(preset.get("impersonation_prompt") or "", ctx)
        if text:
            out.append({"role": "system", "content": text})
    if preset.get("squash_system_messages"):
        out = _squash(out)
    return out


def _setting(preset: dict, key: str, default: str) -> str:
    """A chat-completion preset's text setting; SillyTavern's default where the file has none."""
    value = preset.get(key)
    return default if value is None else value


def _inject(history: list[dict], prompts, ctx: MacroContext) -> list[dict]:
    """Prompts placed in the chat: depth 0 after the newest message, 1 before it, and so on; at one
    depth system, then user, then assistant (SillyTavern's order)."""
    for depth in sorted({p.depth for p in prompts}, reverse=True):
        at = max(len(history) - depth, 0)
        group = []
        for role in stpresets.ROLES:
            texts = [expand(p.content, ctx).strip() for p in prompts if p.depth == depth and p.role == role]
            text = "\n".join(t for t in texts if t)
            if text:
                group.append({"role": role, "content": text})
        history[at:at] = group
    return history


def _squash(messages: list[dict]) -> list[dict]:
    out: list[dict] = []
    for message in messages:
        if out and message["role"] == "system" and out[-1]["role"] == "system":
            out[-1] = {"role": "system", "content": f"{out[-1]['content']}\n{message['content']}"}
        else:
            out.append(message)
    return out


# --- a chat's presets ----------------------------------------------------------------------------------


def chat_presets(session) -> ChatPresets:
    """The presets `session` chose, in one query (none when it chose none). A preset whose settings
    were changed (in the admin) into something its kind cannot hold is left out, and logged."""
    ids = {name: getattr(session, f"{name}_id") for name in PRESET_FIELDS}
    wanted = [pk for pk in ids.values() if pk]
    if not wanted:
        return ChatPresets()
    rows = Preset.objects.filter(pk__in=wanted).only("id", "kind", "name", "data")
    found = {p.pk: p for p in rows}
    chosen = {}
    for name, kind in PRESET_FIELDS.items():
        preset = found.get(ids[name])
        if preset is None:
            continue
        try:
            if preset.kind != kind or not isinstance(preset.data, dict):
                raise stpresets.PresetError(f"a {preset.kind} preset cannot be the chat's {name}")
            stpresets.parse_preset(preset.data, kind=kind, file_stem=preset.name, max_chars=10**9)
        except stpresets.PresetError as exc:
            logger.warning("chat %s: preset %s left out: %s", session.pk, preset.pk, exc)
            continue
        chosen[name] = (preset.name, preset.data)
    return ChatPresets(
        context=chosen.get("context_preset"),
        instruct=chosen.get("instruct_preset"),
        sysprompt=chosen.get("sysprompt_preset"),
        sampler=chosen.get("sampler_preset"),
        chat=chosen.get("chat_preset"),
    )


def with_sampling(config, presets: ChatPresets):
    """`config` with the chat's samplers: a chat-completion preset's (in chat mode), then the sampler
    preset's, over the connection profile's."""
    sampling = dict(config.sampling)
    if presets.chat and config.mode == "chat":
        sampling.update(stpresets.openai_sampling(presets.chat[1]))
    if presets.sampler:
        sampling.update(stpresets.textgen_sampling(presets.sampler[1]))
    if sampling == config.sampling:
        return config
    return dataclasses.replace(config, sampling=sampling)
