"""SillyTavern's preset files: instruct templates, context templates, system prompts, text-completion
sampler presets (TextGen Settings) and chat-completion presets (OpenAI Settings).

Pure functions, no database: `detect_kind` says which kind a JSON object is (by the keys SillyTavern
itself checks), `parse_preset` checks the keys rpchat uses and keeps every other key, so the stored
object exported again is the file it came from. settings_app.services does the writes.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

INSTRUCT, CONTEXT, SYSPROMPT, TEXTGEN, OPENAI = "instruct", "context", "sysprompt", "textgen", "openai"
KIND_LABELS = {
    INSTRUCT: "instruct template",
    CONTEXT: "context template",
    SYSPROMPT: "system prompt",
    TEXTGEN: "text-completion sampler preset",
    OPENAI: "chat-completion preset",
}
# The folders of a SillyTavern user folder that hold each kind.
FOLDERS = {
    INSTRUCT: "instruct",
    CONTEXT: "context",
    SYSPROMPT: "sysprompt",
    TEXTGEN: "TextGen Settings",
    OPENAI: "OpenAI Settings",
}
# A chat-completion preset holds at most this many prompts; each text at most the card field limit.
MAX_PROMPTS = 200
ROLES = ("system", "user", "assistant")
# SillyTavern's in-chat injection position (PromptManager INJECTION_POSITION.ABSOLUTE).
IN_CHAT = 1
MAX_DEPTH = 10_000


class PresetError(ValueError):
    """The file is not a preset rpchat can read; the message says what is wrong with it."""


@dataclass
class ParsedPreset:
    kind: str
    name: str
    data: dict


def json_object(data: bytes) -> dict:
    """The JSON object in `data`, or a PresetError saying why not."""
    try:
        obj = json.loads(data.decode("utf-8-sig"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise PresetError("the file is not UTF-8 text (a preset is a JSON file)") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise PresetError(f"the file is not valid JSON ({exc})") from None
    except ValueError as exc:  # a number of thousands of digits
        raise PresetError(f"the file cannot be read: {exc}") from None
    if not isinstance(obj, dict):
        raise PresetError("the file holds JSON but not an object")
    return obj


def _no_constant(name: str):
    raise PresetError(f"the file uses {name}, which JSON does not allow")


def detect_kind(obj: dict) -> str | None:
    """Which preset kind `obj` is, by the keys SillyTavern's own import checks (preset-manager.js)."""
    keys = obj.keys()
    if "input_sequence" in keys and "output_sequence" in keys:
        return INSTRUCT
    if "story_string" in keys:
        return CONTEXT
    if isinstance(obj.get("prompts"), list) or isinstance(obj.get("prompt_order"), list):
        return OPENAI
    if "chat_completion_source" in keys or "openai_max_context" in keys:
        return OPENAI
    if all(k in keys for k in ("temp", "top_k", "top_p", "rep_pen")):
        return TEXTGEN
    if "content" in keys and "name" in keys and keys <= {"name", "content", "post_history"}:
        return SYSPROMPT
    return None


def is_master_export(obj: dict) -> bool:
    """SillyTavern's "master export": one file with an instruct, context, sysprompt and sampler preset."""
    sections = [k for k in ("instruct", "context", "sysprompt", "preset") if isinstance(obj.get(k), dict)]
    return bool(sections) and not detect_kind(obj)


def describe(obj: dict) -> str | None:
    """What a JSON object that is not a character card looks like, in words for the user, if known."""
    kind = detect_kind(obj)
    if kind:
        return f"a SillyTavern {KIND_LABELS[kind]}"
    if is_master_export(obj):
        return "a SillyTavern preset export (several presets in one file)"
    if any(k in obj for k in ("main_text_color", "blur_strength", "chat_display", "font_scale")):
        return "a SillyTavern UI theme"
    if "power_user" in obj or "textgenerationwebui_settings" in obj:
        return "SillyTavern's settings.json"
    if isinstance(obj.get("members"), list) and "chat_id" in obj:
        return "a SillyTavern group definition"
    if isinstance(obj.get("qrList"), list) or "quickReplySlots" in obj:
        return "a SillyTavern quick reply set"
    if "movingUIState" in obj:
        return "a SillyTavern MovingUI layout"
    if "tail_free_sampling" in obj or ("max_length" in obj and "temperature" in obj):
        return "a SillyTavern NovelAI sampler preset"
    if obj and all(isinstance(v, dict) and "class_type" in v for v in obj.values()):
        return "a ComfyUI workflow"
    return None


# --- checking each kind ------------------------------------------------------------------------------

_INSTRUCT_TEXT = (
    "input_sequence", "output_sequence", "last_output_sequence", "first_output_sequence",
    "system_sequence", "stop_sequence", "input_suffix", "output_suffix", "system_suffix",
    "system_sequence_prefix", "system_sequence_suffix", "user_alignment_message",
    "last_system_sequence", "first_input_sequence", "last_input_sequence", "activation_regex",
    "system_prompt",
)  # fmt: skip
_INSTRUCT_FLAGS = ("wrap", "macro", "system_same_as_user", "skip_examples", "names", "names_force_groups")
_CONTEXT_TEXT = ("story_string", "example_separator", "chat_start")
_CONTEXT_FLAGS = (
    "use_stop_strings", "allow_jailbreak", "always_force_name2", "trim_sentences", "single_line",
    "names_as_stop_strings",
)  # fmt: skip
_TEXTGEN_NUMBERS = (
    "temp", "top_p", "top_k", "min_p", "rep_pen", "freq_pen", "presence_pen", "typical_p", "genamt",
)  # fmt: skip
_OPENAI_TEXT = (
    "wi_format", "scenario_format", "personality_format", "new_chat_prompt", "new_group_chat_prompt",
    "new_example_chat_prompt", "impersonation_prompt", "continue_nudge_prompt", "assistant_prefill",
    "group_nudge_prompt",
)  # fmt: skip
_OPENAI_NUMBERS = (
    "temperature", "top_p", "top_k", "min_p", "frequency_penalty", "presence_penalty",
    "repetition_penalty", "openai_max_tokens", "openai_max_context", "seed",
)  # fmt: skip


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _text(obj: dict, key: str, where: str, max_chars: int) -> None:
    value = obj.get(key)
    if value is None:
        return
    if not isinstance(value, str):
        raise PresetError(f"{where}{key} must be text, not {_type_name(value)}")
    if len(value) > max_chars:
        raise PresetError(
            f"{where}{key} is {len(value):,} characters long; the limit is {max_chars:,} "
            "(RPCHAT_MAX_CARD_FIELD_CHARS)"
        )


def _flag(obj: dict, key: str, where: str) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise PresetError(f"{where}{key} must be true or false, not {_type_name(value)}")


def _number(obj: dict, key: str, where: str) -> None:
    value = obj.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise PresetError(f"{where}{key} must be a number, not {_type_name(value)}")
    if abs(value) > 2**53:
        raise PresetError(f"{where}{key} is {value}, too large")


def parse_preset(obj: dict, *, kind: str | None = None, file_stem: str = "", max_chars: int) -> ParsedPreset:
    """Check `obj` as a preset of `kind` (detected when not given); the name comes from the file's
    `name` key, else the file's name (text-completion and chat-completion presets carry none)."""
    kind = kind or detect_kind(obj)
    if kind is None:
        looks = describe(obj)
        if looks:
            raise PresetError(f"this is {looks}, not a preset rpchat imports")
        raise PresetError(
            "not a SillyTavern preset: none of an instruct template's, context template's, system "
            "prompt's, sampler preset's or chat-completion preset's keys are in it"
        )
    name = obj.get("name")
    if name is not None and not isinstance(name, str):
        raise PresetError(f"name must be text, not {_type_name(name)}")
    name = (name or "").strip() or file_stem.strip()
    if not name:
        raise PresetError("the preset has no name")
    if len(name) > 200:
        raise PresetError(f"the name is {len(name)} characters long; at most 200 fit")
    if kind == INSTRUCT:
        for key in _INSTRUCT_TEXT:
            _text(obj, key, "", max_chars)
        for key in _INSTRUCT_FLAGS:
            _flag(obj, key, "")
        behavior = obj.get("names_behavior")
        if behavior is not None and behavior not in ("none", "force", "always"):
            raise PresetError(f"names_behavior must be none, force or always, not {behavior!r}")
    elif kind == CONTEXT:
        for key in _CONTEXT_TEXT:
            _text(obj, key, "", max_chars)
        for key in _CONTEXT_FLAGS:
            _flag(obj, key, "")
    elif kind == SYSPROMPT:
        for key in ("content", "post_history"):
            _text(obj, key, "", max_chars)
    elif kind == TEXTGEN:
        for key in _TEXTGEN_NUMBERS:
            _number(obj, key, "")
    elif kind == OPENAI:
        _check_openai(obj, max_chars)
    else:
        raise PresetError(f"unknown preset kind {kind!r}")
    return ParsedPreset(kind=kind, name=name, data=obj)


def _check_openai(obj: dict, max_chars: int) -> None:
    for key in _OPENAI_TEXT:
        _text(obj, key, "", max_chars)
    for key in _OPENAI_NUMBERS:
        _number(obj, key, "")
    _flag(obj, "squash_system_messages", "")
    prompts = obj.get("prompts", [])
    if not isinstance(prompts, list):
        raise PresetError(f"prompts must be a list, not {_type_name(prompts)}")
    if len(prompts) > MAX_PROMPTS:
        raise PresetError(f"the preset has {len(prompts):,} prompts; at most {MAX_PROMPTS} are read")
    for i, prompt in enumerate(prompts):
        where = f"prompts[{i}]."
        if not isinstance(prompt, dict):
            raise PresetError(f"prompts[{i}] must be an object, not {_type_name(prompt)}")
        for key in ("identifier", "name", "content"):
            _text(prompt, key, where, max_chars)
        for key in ("system_prompt", "marker", "forbid_overrides", "enabled"):
            _flag(prompt, key, where)
        role = prompt.get("role")
        if role not in (None, "", *ROLES):
            raise PresetError(f"{where}role must be system, user or assistant, not {role!r}")
        for key in ("injection_position", "injection_depth", "injection_order"):
            _number(prompt, key, where)
    order = obj.get("prompt_order", [])
    if not isinstance(order, list):
        raise PresetError(f"prompt_order must be a list, not {_type_name(order)}")
    if len(order) > MAX_PROMPTS:
        raise PresetError(f"the preset has {len(order):,} prompt orders; at most {MAX_PROMPTS} are read")
    for i, block in enumerate(order):
        if not isinstance(block, dict) or not isinstance(block.get("order", []), list):
            raise PresetError(f"prompt_order[{i}] must be an object with an order list")
        if len(block.get("order", [])) > MAX_PROMPTS:
            raise PresetError(f"prompt_order[{i}] lists more than {MAX_PROMPTS} prompts")
        for j, item in enumerate(block.get("order", [])):
            if not isinstance(item, dict):
                raise PresetError(f"prompt_order[{i}].order[{j}] must be an object")
            _text(item, "identifier", f"prompt_order[{i}].order[{j}].", 200)
            _flag(item, "enabled", f"prompt_order[{i}].order[{j}].")


# --- reading what a prompt needs ------------------------------------------------------------------


def textgen_sampling(data: dict) -> dict:
    """A text-completion sampler preset's settings in the engine's (llama.cpp / OpenAI) names."""
    names = {
        "temp": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "min_p": "min_p",
        "rep_pen": "repeat_penalty",
        "freq_pen": "frequency_penalty",
        "presence_pen": "presence_penalty",
        "typical_p": "typical_p",
        "genamt": "max_tokens",
    }
    return _numbers(data, names)


def openai_sampling(data: dict) -> dict:
    """A chat-completion preset's samplers in the engine's names."""
    names = {
        "temperature": "temperature",
        "top_p": "top_p",
        "top_k": "top_k",
        "min_p": "min_p",
        "frequency_penalty": "frequency_penalty",
        "presence_penalty": "presence_penalty",
        "repetition_penalty": "repeat_penalty",
        "openai_max_tokens": "max_tokens",
        "seed": "seed",
    }
    params = _numbers(data, names)
    if params.get("seed", 0) < 0:  # SillyTavern's -1: a random seed
        params.pop("seed")
    return params


def _numbers(data: dict, names: dict) -> dict:
    out = {}
    for key, name in names.items():
        value = data.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = int(value) if name in ("top_k", "max_tokens", "seed") else value
    if out.get("max_tokens", 1) <= 0:
        out.pop("max_tokens")
    return out


@dataclass(frozen=True)
class OrderedPrompt:
    identifier: str
    name: str
    role: str
    content: str
    marker: bool
    in_chat: bool
    depth: int
    forbid_overrides: bool


def prompt_order(data: dict) -> list[OrderedPrompt]:
    """The enabled prompts of a chat-completion preset, in its order (SillyTavern keeps one order per
    character; the global one, character_id 100001, else 100000, else the first, is the one used)."""
    prompts = {p.get("identifier"): p for p in data.get("prompts", []) if isinstance(p, dict)}
    blocks = [b for b in data.get("prompt_order", []) if isinstance(b, dict)]
    chosen = None
    for wanted in (100001, 100000):
        chosen = next((b for b in blocks if b.get("character_id") == wanted), None)
        if chosen:
            break
    if chosen is None and blocks:
        chosen = blocks[0]
    if chosen is None:  # no order: the prompts as listed, all enabled
        order = [{"identifier": i, "enabled": p.get("enabled", True)} for i, p in prompts.items()]
    else:
        order = chosen.get("order", [])
    out = []
    for item in order[:MAX_PROMPTS]:
        prompt = prompts.get(item.get("identifier"))
        if prompt is None or item.get("enabled") is False:
            continue
        role = prompt.get("role") or "system"
        depth = prompt.get("injection_depth", 4)
        out.append(
            OrderedPrompt(
                identifier=str(prompt.get("identifier") or ""),
                name=str(prompt.get("name") or prompt.get("identifier") or ""),
                role=role if role in ROLES else "system",
                content=prompt.get("content") or "",
                marker=bool(prompt.get("marker")),
                in_chat=prompt.get("injection_position") == IN_CHAT,
                depth=max(0, min(int(depth) if isinstance(depth, (int, float)) else 4, MAX_DEPTH)),
                forbid_overrides=bool(prompt.get("forbid_overrides")),
            )
        )
    return out


def export_json(preset_data: dict, *, name: str, kind: str) -> bytes:
    """The preset as the file SillyTavern reads: the stored object, its name where the kind has one."""
    data = dict(preset_data)
    if kind in (INSTRUCT, CONTEXT, SYSPROMPT) or "name" in data:
        data["name"] = name
    return json.dumps(data, ensure_ascii=False, indent=4).encode()
