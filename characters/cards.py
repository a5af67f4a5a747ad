"""Character cards and lorebooks as files: reading and writing V1, V2 and V3 cards (JSON, PNG/APNG,
CHARX), SillyTavern World Info files and V3 `lorebook_v3` files. See docs/FORMATS in the shared docs.

Pure functions, no database: `read_card` turns a file's bytes into a `ParsedCard`, `build_card` turns
stored values back into a card dict, `read_lorebook` / `build_world_info` / `build_lorebook_v3` do the
same for lorebooks. characters.services does the writes.

Round trips: every key rpchat has no column for is kept (`extra` dicts below, stored in
Character.card_extra, Lorebook.book_extra and LorebookEntry.entry_extra), and so is the shape of the
keys it does have a column for: a key that was absent stays absent and a value stored in another form
(null for a string, a number for a version) is written back as it was, as long as the user has not
changed the field since.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any

from settings_app import stpresets

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
# Keywords of the tEXt chunks that carry a card (matched case-insensitively, as SillyTavern does).
CARD_CHUNKS = ("ccv3", "chara")
SPEC_V2 = "chara_card_v2"
SPEC_V3 = "chara_card_v3"
SPEC_LOREBOOK_V3 = "lorebook_v3"
INT32 = 2**31 - 1


class CardError(ValueError):
    """The file is not a card or lorebook rpchat can read; the message says what is wrong with it."""


# --- field tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class F:
    """One known key of a card object: its JSON name, the attribute it is stored in, and its kind."""

    key: str
    attr: str
    kind: str  # str, version, strlist, dict, bool, nbool, int, uint, id, position
    default: Any
    max_length: int | None = None


# V2/V3 `data` keys stored in Character columns. Tags and character_book are handled on their own;
# every other key (assets, source, group_only_greetings, creation_date, ...) is kept in card_extra.
CARD_FIELDS = (
    F("name", "name", "str", "", 200),
    F("description", "description", "str", ""),
    F("personality", "personality", "str", ""),
    F("scenario", "scenario", "str", ""),
    F("first_mes", "first_message", "str", ""),
    F("mes_example", "example_dialogue", "str", ""),
    F("creator_notes", "creator_notes", "str", ""),
    F("system_prompt", "system_prompt", "str", ""),
    F("post_history_instructions", "post_history_instructions", "str", ""),
    F("alternate_greetings", "alternate_greetings", "strlist", []),
    F("creator", "creator", "str", "", 200),
    F("character_version", "character_version", "version", "", 100),
    F("extensions", "extensions", "dict", {}),
    F("nickname", "nickname", "str", "", 200),
)
V1_KEYS = ("name", "description", "personality", "scenario", "first_mes", "mes_example")
V1_FIELDS = tuple(f for f in CARD_FIELDS if f.key in V1_KEYS)

BOOK_FIELDS = (
    F("name", "name", "str", "", 200),
    F("description", "description", "str", ""),
    F("scan_depth", "scan_depth", "uint", 4),
    F("token_budget", "token_budget", "uint", 512),
    F("recursive_scanning", "recursive_scanning", "bool", False),
    F("extensions", "extensions", "dict", {}),
)

ENTRY_FIELDS = (
    F("keys", "keys", "strlist", []),
    F("content", "content", "str", ""),
    F("extensions", "extensions", "dict", {}),
    F("enabled", "enabled", "bool", True),
    F("insertion_order", "insertion_order", "int", 100),
    F("case_sensitive", "case_sensitive", "nbool", False),
    F("name", "name", "str", "", 200),
    F("priority", "priority", "int", 10),
    F("id", "uid", "id", "", 100),
    F("comment", "comment", "str", ""),
    F("selective", "selective", "bool", False),
    F("secondary_keys", "secondary_keys", "strlist", []),
    F("constant", "constant", "bool", False),
    F("position", "position", "position", "before_char"),
    F("use_regex", "use_regex", "bool", False),
)

# SillyTavern World Info entry keys with a column of their own.
WI_FIELDS = (
    F("uid", "uid", "id", "", 100),
    F("key", "keys", "strlist", []),
    F("keysecondary", "secondary_keys", "strlist", []),
    F("comment", "comment", "str", ""),
    F("content", "content", "str", ""),
    F("constant", "constant", "bool", False),
    F("selective", "selective", "bool", False),
    F("order", "insertion_order", "int", 100),
)
# The other World Info keys go to LorebookEntry.extensions under the names SillyTavern's
# convertWorldInfoToCharacterBook uses, so a book exported inside a card reads the same in
# SillyTavern; World Info export maps them back.
WI_EXTENSION_KEYS = {
    "position": "position",
    "excludeRecursion": "exclude_recursion",
    "displayIndex": "display_index",
    "probability": "probability",
    "useProbability": "useProbability",
    "depth": "depth",
    "selectiveLogic": "selectiveLogic",
    "outletName": "outlet_name",
    "group": "group",
    "groupOverride": "group_override",
    "groupWeight": "group_weight",
    "preventRecursion": "prevent_recursion",
    "delayUntilRecursion": "delay_until_recursion",
    "scanDepth": "scan_depth",
    "matchWholeWords": "match_whole_words",
    "useGroupScoring": "use_group_scoring",
    "caseSensitive": "case_sensitive",
    "automationId": "automation_id",
    "role": "role",
    "vectorized": "vectorized",
    "sticky": "sticky",
    "cooldown": "cooldown",
    "delay": "delay",
    "matchPersonaDescription": "match_persona_description",
    "matchCharacterDescription": "match_character_description",
    "matchCharacterPersonality": "match_character_personality",
    "matchCharacterDepthPrompt": "match_character_depth_prompt",
    "matchScenario": "match_scenario",
    "matchCreatorNotes": "match_creator_notes",
    "triggers": "triggers",
    "ignoreBudget": "ignore_budget",
}
WI_FROM_EXTENSION = {v: k for k, v in WI_EXTENSION_KEYS.items()}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _convert(f: F, value: Any, where: str) -> tuple[Any, bool]:
    """(stored value, whether the source form differs from it). Raises CardError on a wrong type."""
    path = f"{where}{f.key}"
    if value is None and f.kind != "nbool":
        # null where a value belongs: store the default, write null back.
        return _copy_default(f.default), True
    kind = f.kind
    if kind == "str":
        if not isinstance(value, str):
            raise CardError(f"{path} must be a string, not {_type_name(value)}")
        if f.max_length and len(value) > f.max_length:
            raise CardError(f"{path} is {len(value)} characters long; at most {f.max_length} fit")
        return value, False
    if kind == "version":
        # Versions are often written as numbers (1, 1.2); kept as text, written back as numbers.
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value), True
        return _convert(F(f.key, f.attr, "str", f.default, f.max_length), value, where)
    if kind == "strlist":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            shown = _type_name(value) if not isinstance(value, list) else "a list with other values in it"
            raise CardError(f"{path} must be a list of strings, not {shown}")
        return list(value), False
    if kind == "dict":
        if not isinstance(value, dict):
            raise CardError(f"{path} must be an object, not {_type_name(value)}")
        return value, False
    if kind in ("bool", "nbool"):
        if value is None:
            return bool(f.default), True
        if not isinstance(value, bool):
            raise CardError(f"{path} must be true or false, not {_type_name(value)}")
        return value, False
    if kind in ("int", "uint"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CardError(f"{path} must be a number, not {_type_name(value)}")
        if isinstance(value, float) and not value.is_integer():
            raise CardError(f"{path} must be a whole number, not {value}")
        number = int(value)
        low = 0 if kind == "uint" else -INT32 - 1
        if not low <= number <= INT32:
            raise CardError(f"{path} is {number}, outside {low}..{INT32}")
        return number, isinstance(value, float)
    if kind == "id":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise CardError(f"{path} must be a number or a string, not {_type_name(value)}")
        text = str(value)
        if len(text) > (f.max_length or 100):
            raise CardError(f"{path} is longer than {f.max_length} characters")
        return text, not isinstance(value, str)
    if kind == "position":
        if value in ("before_char", "after_char"):
            return value, False
        # Other writers use other words ("", 0, "after_desc"); kept and written back as they were.
        return f.default, True
    raise AssertionError(kind)


def _copy_default(default: Any) -> Any:
    return type(default)() if isinstance(default, (list, dict)) else default


def take_fields(source: dict, fields: tuple[F, ...], where: str) -> tuple[dict, dict]:
    """Split a card object into column values and an `extra` dict that remembers the rest.

    extra = {"unknown": {key: value}, "missing": [key, ...], "raw": {key: source value}}, each part
    only when not empty.
    """
    values: dict[str, Any] = {}
    missing: list[str] = []
    raw: dict[str, Any] = {}
    for f in fields:
        if f.key not in source:
            missing.append(f.key)
            values[f.attr] = _copy_default(f.default)
            continue
        value, differs = _convert(f, source[f.key], where)
        values[f.attr] = value
        if differs:
            raw[f.key] = source[f.key]
    known = {f.key for f in fields}
    unknown = {k: v for k, v in source.items() if k not in known}
    extra: dict[str, Any] = {}
    if unknown:
        extra["unknown"] = unknown
    if missing:
        extra["missing"] = missing
    if raw:
        extra["raw"] = raw
    return values, extra


def give_fields(values: dict, fields: tuple[F, ...], extra: dict | None) -> dict:
    """The card object for stored values: the inverse of take_fields while the values are unchanged."""
    extra = extra or {}
    missing = set(extra.get("missing", ()))
    raw = extra.get("raw", {})
    out: dict[str, Any] = {}
    for f in fields:
        value = values.get(f.attr, _copy_default(f.default))
        if f.key in raw:
            try:
                stored, _ = _convert(f, raw[f.key], "")
            except CardError:
                stored = None
            if stored == value:
                out[f.key] = raw[f.key]
                continue
        if f.key in missing and value == f.default:
            continue
        out[f.key] = value
    for key, value in extra.get("unknown", {}).items():
        out.setdefault(key, value)
    return out


# --- parsed results -----------------------------------------------------------------------------


@dataclass
class ParsedEntry:
    values: dict
    extra: dict


@dataclass
class ParsedBook:
    values: dict
    extra: dict
    entries: list[ParsedEntry]


@dataclass
class ParsedCard:
    values: dict  # Character column values
    tags: list[str]
    book: ParsedBook | None
    card_extra: dict
    avatar: bytes | None = None
    warnings: list[str] = field(default_factory=list)


# --- reading cards ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReadLimits:
    """How much of a card file is read, each bound checked while reading (never trusting a size the
    file declares), so a small file cannot make the reader hold much more than the file."""

    json_bytes: int | None = None  # the card's JSON, from any container (RPCHAT_MAX_CARD_JSON_BYTES)
    icon_bytes: int | None = None  # a CHARX's main icon once unpacked (RPCHAT_MAX_CARD_BYTES)


def read_card(data: bytes, *, max_unpacked: int, limits: ReadLimits = ReadLimits()) -> ParsedCard:
    """A card from a file's bytes: PNG/APNG, JSON or CHARX, told apart by their first bytes."""
    if data.startswith(PNG_SIGNATURE):
        return _read_png_card(data, limits)
    if data.startswith(ZIP_SIGNATURE):
        return _read_charx(data, max_unpacked=max_unpacked, limits=limits)
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped.startswith(b"{"):
        _check_json_size(len(data), "the file", limits)
        card = parse_card(_json_object(data, "the file"))
        uri = _main_icon_uri(card)
        if uri and uri.startswith("data:"):
            card.avatar = _data_uri_bytes(uri, card)
        return card
    if not data:
        raise CardError("the file is empty")
    raise CardError("not a character card: expected a PNG, a JSON object or a CHARX (zip) file")


# Only a \u escape can put NUL or a lone surrogate into a parsed JSON string.
_SUSPECT_ESCAPE = re.compile(r"\\u(0000|[dD][89a-fA-F])")


def unstorable_text(obj: Any) -> str | None:
    """Why `obj` cannot be stored (a NUL character or a lone surrogate in a string), or None.

    PostgreSQL refuses NUL in text and JSON, and no database takes text that is not valid UTF-8."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "it contains a NUL character (\\u0000), which cannot be stored"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "it contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _not_a_number(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"the number {text[:20]} is too large")
    return value


def json_loads(text: str | bytes) -> Any:
    """json.loads, refusing with ValueError what no database stores: NaN, Infinity, a number too
    large for a float, or one with more digits than Python converts (4,300)."""
    try:
        return json.loads(text, parse_constant=_not_a_number, parse_float=_finite)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        if "integer string conversion" in str(exc):
            raise ValueError("a number has too many digits") from None
        raise


def _check_json_size(size: int, what: str, limits: ReadLimits) -> None:
    if limits.json_bytes is not None and size > limits.json_bytes:
        raise CardError(
            f"{what} holds {size:,} bytes of card JSON; the limit is {limits.json_bytes:,} "
            "(RPCHAT_MAX_CARD_JSON_BYTES)"
        )


def _json_object(data: bytes, what: str) -> dict:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CardError(f"{what} is not UTF-8 text (byte {exc.start})") from None
    try:
        obj = json_loads(text)
    except json.JSONDecodeError as exc:
        message = exc.msg.removesuffix(" at")
        raise CardError(
            f"{what} is not valid JSON: {message} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:
        raise CardError(f"{what} cannot be imported: {exc}") from None
    except RecursionError:
        raise CardError(f"{what} is nested too deeply") from None
    if not isinstance(obj, dict):
        raise CardError(f"{what} must hold a JSON object, not {_type_name(obj)}")
    if _SUSPECT_ESCAPE.search(text) and (why := unstorable_text(obj)):
        raise CardError(f"{what} cannot be imported: {why}")
    return obj


def png_chunks(data: bytes, *, check_crc: bool = True):
    """Yield (type, start, end, body) for each chunk of a PNG, raising CardError on damage.

    Walking the chunks reads the card without decoding the image (Pillow decodes every APNG frame
    to reach text chunks after the image data) and lets export replace the card chunks around the
    untouched image bytes, as SillyTavern does.
    """
    if not data.startswith(PNG_SIGNATURE):
        raise CardError("not a PNG file")
    pos = len(PNG_SIGNATURE)
    size = len(data)
    while True:
        if pos + 8 > size:
            raise CardError("the PNG is truncated: it ends before its IEND chunk")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        name = ctype.decode("latin-1")
        if not ctype.isalpha() or length > INT32:
            raise CardError(f"the PNG is damaged: bad chunk header at byte {pos}")
        end = pos + 12 + length
        if end > size:
            raise CardError(
                f"the PNG is truncated: chunk {name} at byte {pos} needs {length} bytes, "
                f"the file ends after {max(size - pos - 8, 0)}"
            )
        body = data[pos + 8 : pos + 8 + length]
        if check_crc:
            (crc,) = struct.unpack(">I", data[end - 4 : end])
            if zlib.crc32(ctype + body) != crc:
                raise CardError(f"the PNG is damaged: chunk {name} at byte {pos} fails its checksum")
        yield ctype, pos, end, body
        if ctype == b"IEND":
            return
        pos = end


def _read_png_card(data: bytes, limits: ReadLimits) -> ParsedCard:
    texts: dict[str, bytes] = {}
    image = bytearray(PNG_SIGNATURE)
    for ctype, start, end, body in png_chunks(data):
        if ctype == b"tEXt":
            keyword, sep, text = body.partition(b"\x00")
            key = keyword.decode("latin-1").lower()
            if sep and key in CARD_CHUNKS:
                texts.setdefault(key, text)
                continue  # the stored avatar keeps the image, not the card
        image += data[start:end]
    if not texts:
        raise CardError("the PNG holds no character card (no 'chara' or 'ccv3' text chunk)")
    warnings: list[str] = []
    card = None
    if "ccv3" in texts:
        try:
            card = parse_card(_chunk_json(texts["ccv3"], "ccv3", limits))
        except CardError as exc:
            if "chara" not in texts:
                raise
            warnings.append(f"the ccv3 chunk was unreadable ({exc}); the chara chunk was read instead")
    if card is None:
        card = parse_card(_chunk_json(texts["chara"], "chara", limits))
    card.avatar = bytes(image)
    card.warnings[:0] = warnings
    return card


def _chunk_json(text: bytes, keyword: str, limits: ReadLimits) -> dict:
    # Base64 carries three bytes in four characters: refused before decoding anything.
    _check_json_size(len(text) * 3 // 4, f"the {keyword} chunk", limits)
    compact = re.sub(rb"\s+", b"", text)
    compact += b"=" * (-len(compact) % 4)  # some writers drop the padding
    try:
        decoded = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise CardError(f"the {keyword} chunk is not valid base64") from None
    return _json_object(decoded, f"the {keyword} chunk")


def _read_charx(data: bytes, *, max_unpacked: int, limits: ReadLimits) -> ParsedCard:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise CardError(f"the CHARX archive is damaged: {exc}") from None
    declared = sum(i.file_size for i in infos)
    if declared > max_unpacked:
        raise CardError(
            f"the CHARX archive would unpack to {declared:,} bytes; the limit is {max_unpacked:,}"
        )
    by_name = {i.filename: i for i in infos}
    if "card.json" not in by_name:
        raise CardError("the CHARX archive has no card.json at its root")
    body = _zip_read(archive, by_name["card.json"], limits.json_bytes, "RPCHAT_MAX_CARD_JSON_BYTES")
    card = parse_card(_json_object(body, "card.json"))
    uri = _main_icon_uri(card)
    if uri and uri.startswith("embeded://"):
        path = uri[len("embeded://") :]
        if path in by_name:
            card.avatar = _zip_read(archive, by_name[path], limits.icon_bytes, "RPCHAT_MAX_CARD_BYTES")
        else:
            card.warnings.append(f"the main icon {path} is not in the archive")
    return card


def _zip_read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int | None, setting: str) -> bytes:
    """A member's bytes, inflating at most `limit` + 1 bytes whatever the member declares (zip bombs
    lie about their sizes), and refusing more than it declared."""
    if info.flag_bits & 0x1:
        raise CardError(f"{info.filename} in the CHARX archive is encrypted")
    cap = info.file_size if limit is None else min(info.file_size, limit)
    try:
        with archive.open(info) as member:
            body = member.read(cap + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        raise CardError(f"{info.filename} in the CHARX archive is damaged: {exc}") from None
    if limit is not None and len(body) > limit:
        raise CardError(
            f"{info.filename} in the CHARX archive unpacks to more than {limit:,} bytes ({setting})"
        )
    if len(body) > info.file_size:
        raise CardError(f"{info.filename} in the CHARX archive unpacks to more than it declares")
    return body


def _main_icon_uri(card: ParsedCard) -> str | None:
    assets = card.card_extra.get("data", {}).get("assets")
    if not isinstance(assets, list):
        return None
    icons = [a for a in assets if isinstance(a, dict) and a.get("type") == "icon"]
    main = next((a for a in icons if a.get("name") == "main"), icons[0] if icons else None)
    uri = main.get("uri") if main else None
    return uri if isinstance(uri, str) else None


def _data_uri_bytes(uri: str, card: ParsedCard) -> bytes | None:
    header, _, payload = uri.partition(",")
    if not header.endswith(";base64"):
        card.warnings.append("the main icon is a data: URL without base64; it was not used")
        return None
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise CardError("the main icon's data: URL is not valid base64") from None


def check_sizes(card: ParsedCard, *, max_chars: int, max_tags: int) -> None:
    """Refuse a card with a text longer than `max_chars` characters (a field, an alternate
    greeting, a lorebook entry) or more than `max_tags` tags: CardError naming the first."""
    for f in CARD_FIELDS:
        value = card.values.get(f.attr)  # a V1 card has V1 fields only
        texts = value if isinstance(value, list) else [value]
        for i, text in enumerate(texts):
            if isinstance(text, str) and len(text) > max_chars:
                where = f"{f.key}[{i}]" if isinstance(value, list) else f.key
                raise CardError(_too_long(where, len(text), max_chars))
    if len(card.tags) > max_tags:
        raise CardError(
            f"the card has {len(card.tags):,} tags; the limit is {max_tags:,} (RPCHAT_MAX_CARD_TAGS)"
        )
    if card.book is not None:
        check_book_sizes(card.book, max_chars=max_chars, where="character_book.")


def check_book_sizes(book: ParsedBook, *, max_chars: int, where: str = "") -> None:
    """Refuse a lorebook with a text (its description, an entry's content, comment or key) longer
    than `max_chars` characters: CardError naming the first."""
    description = book.values.get("description", "")
    if len(description) > max_chars:
        raise CardError(_too_long(f"{where}description", len(description), max_chars))
    for i, entry in enumerate(book.entries):
        texts = [
            ("content", entry.values.get("content", "")),
            ("comment", entry.values.get("comment", "")),
            *(("keys", k) for k in entry.values.get("keys", [])),
            *(("secondary_keys", k) for k in entry.values.get("secondary_keys", [])),
        ]
        for name, text in texts:
            if len(text) > max_chars:
                raise CardError(_too_long(f"{where}entries[{i}].{name}", len(text), max_chars))


def _too_long(where: str, length: int, limit: int) -> str:
    return f"{where} is {length:,} characters long; the limit is {limit:,} (RPCHAT_MAX_CARD_FIELD_CHARS)"


def parse_card(obj: dict) -> ParsedCard:
    """A card from its JSON object: V3 and V2 read `data`, anything else with a `name` is V1."""
    spec = obj.get("spec")
    warnings: list[str] = []
    if spec == SPEC_LOREBOOK_V3:
        raise CardError("this is a lorebook (lorebook_v3), not a character card: import it as a lorebook")
    if spec is None:
        _refuse_other_files(obj)
        if "entries" in obj and "name" not in obj:
            raise CardError("this looks like a lorebook, not a character card: import it as a lorebook")
        return _parse_v1(obj)
    if spec not in (SPEC_V2, SPEC_V3):
        raise CardError(f"unknown card spec {spec!r} (rpchat reads chara_card_v2 and chara_card_v3)")
    version = obj.get("spec_version")
    if spec == SPEC_V3:
        try:
            newer = float(version) > 3.0
        except (TypeError, ValueError):
            newer = False
        if newer:
            warnings.append(f"the card is spec version {version}, newer than 3.0; unknown fields were kept")
    data = obj.get("data")
    if not isinstance(data, dict):
        raise CardError(f"data must be an object, not {_type_name(data)}")
    card = _parse_data(data, where="data.")
    top = {k: v for k, v in obj.items() if k not in ("spec", "spec_version", "data") and k not in V1_KEYS}
    card.card_extra = {"spec": spec, "spec_version": version, **card.card_extra}
    if "spec_version" not in obj:
        card.card_extra["no_spec_version"] = True
    if top:
        card.card_extra["top"] = top
    card.warnings = warnings
    return card


def _refuse_other_files(obj: dict) -> None:
    """Other JSON files people keep beside their cards (presets, themes, settings) are not cards."""
    looks = stpresets.describe(obj)
    if looks is None:
        return
    if stpresets.detect_kind(obj) or stpresets.is_master_export(obj):
        raise CardError(f"this is {looks}, not a character card; import it on the Presets page")
    raise CardError(f"this is {looks}, not a character card; rpchat does not import it")


def _parse_v1(obj: dict) -> ParsedCard:
    if "name" not in obj:
        raise CardError("not a character card: no spec and no name")
    if not any(key in obj for key in V1_KEYS if key != "name"):
        raise CardError(
            "not a character card: it has a name but none of a card's fields "
            "(description, personality, scenario, first_mes, mes_example)"
        )
    values, extra = take_fields(obj, V1_FIELDS, where="")
    _require_name(values)
    card_extra: dict[str, Any] = {"spec": "v1"}
    if extra.get("unknown"):
        card_extra["top"] = extra["unknown"]
    card_extra.update({k: v for k, v in extra.items() if k != "unknown"})
    return ParsedCard(values=values, tags=[], book=None, card_extra=card_extra)


def _parse_data(data: dict, *, where: str) -> ParsedCard:
    values, extra = take_fields(data, CARD_FIELDS, where=where)
    _require_name(values)
    unknown = extra.pop("unknown", {})
    card_extra: dict[str, Any] = dict(extra)
    tags: list[str] = []
    if "tags" in unknown:
        raw_tags = unknown.pop("tags")
        if raw_tags is None:
            card_extra["tags"] = None
        elif not isinstance(raw_tags, list) or not all(isinstance(t, str) for t in raw_tags):
            shown = (
                _type_name(raw_tags) if not isinstance(raw_tags, list) else "a list with other values in it"
            )
            raise CardError(f"{where}tags must be a list of strings, not {shown}")
        else:
            tags = raw_tags
            card_extra["tags"] = raw_tags
    else:
        card_extra.setdefault("missing", []).append("tags")
    book = None
    if "character_book" in unknown:
        raw_book = unknown.pop("character_book")
        if raw_book is None:
            card_extra["book_null"] = True
        else:
            book = parse_book(raw_book, where=f"{where}character_book.")
    if unknown:
        card_extra["data"] = unknown
    return ParsedCard(values=values, tags=tags, book=book, card_extra=card_extra)


def _require_name(values: dict) -> None:
    if not values["name"].strip():
        raise CardError("the card has no name")


def parse_book(obj: Any, *, where: str = "") -> ParsedBook:
    """A V2 character_book or V3 lorebook object."""
    if not isinstance(obj, dict):
        raise CardError(f"{where.rstrip('.') or 'the lorebook'} must be an object, not {_type_name(obj)}")
    values, extra = take_fields(obj, BOOK_FIELDS, where=where)
    unknown = extra.get("unknown", {})
    entries_raw = unknown.pop("entries", None)
    if not unknown:
        extra.pop("unknown", None)
    if entries_raw is None:
        extra["no_entries"] = True
        entries_raw = []
    if not isinstance(entries_raw, list):
        raise CardError(f"{where}entries must be a list, not {_type_name(entries_raw)}")
    entries = []
    for i, entry in enumerate(entries_raw):
        path = f"{where}entries[{i}]."
        if not isinstance(entry, dict):
            raise CardError(f"{path.rstrip('.')} must be an object, not {_type_name(entry)}")
        ev, ex = take_fields(entry, ENTRY_FIELDS, where=path)
        entries.append(ParsedEntry(values=ev, extra=ex))
    return ParsedBook(values=values, extra=extra, entries=entries)


# --- writing cards ------------------------------------------------------------------------------


def build_card(
    *,
    values: dict,
    tags: list[str],
    card_extra: dict,
    book: dict | None,
    spec: str,
) -> dict:
    """A card object in `spec` (V2 or V3) for stored values; `book` is from build_book or None.

    The V1 fields are also written at the top level, as SillyTavern writes them, so V1 readers
    still load the card.
    """
    data = give_fields(values, CARD_FIELDS, card_extra)
    original_tags = card_extra.get("tags")
    if isinstance(original_tags, list) and _tag_set(original_tags) == _tag_set(tags):
        data["tags"] = original_tags
    elif original_tags is None and "tags" in card_extra and not tags:
        data["tags"] = None
    elif not tags and "tags" in card_extra.get("missing", ()):
        pass
    else:
        data["tags"] = list(tags)
    if book is not None:
        data["character_book"] = book
    elif card_extra.get("book_null"):
        data["character_book"] = None
    for key, value in card_extra.get("data", {}).items():
        data.setdefault(key, value)
    if spec == SPEC_V3:
        data.setdefault("group_only_greetings", [])  # required in V3
    card: dict[str, Any] = {"spec": spec}
    source_spec = card_extra.get("spec")
    if source_spec == spec and card_extra.get("no_spec_version"):
        pass
    elif source_spec == spec and card_extra.get("spec_version") is not None:
        card["spec_version"] = card_extra["spec_version"]
    else:
        card["spec_version"] = "3.0" if spec == SPEC_V3 else "2.0"
    card["data"] = data
    for key in V1_KEYS:
        card[key] = data.get(key, "")
    for key, value in card_extra.get("top", {}).items():
        card.setdefault(key, value)
    return card


def _tag_set(tags: list[str]) -> set[str]:
    return {t.lower() for t in clean_tags(tags)}


def clean_tags(tags: list[str]) -> list[str]:
    """Tag names to store: stripped, non-empty, at most 60 characters, once each (case-insensitive)."""
    seen: set[str] = set()
    out = []
    for tag in tags:
        name = tag.strip()[:60].strip()
        if name and name.lower() not in seen:
            seen.add(name.lower())
            out.append(name)
    return out


def png_with_card(image: bytes, *, v2: dict, v3: dict) -> bytes:
    """`image` (a PNG) with its card chunks replaced: `chara` (V2) and `ccv3` (V3) before IEND."""
    out = bytearray(PNG_SIGNATURE)
    for ctype, start, end, body in png_chunks(image, check_crc=False):
        if ctype == b"tEXt" and body.partition(b"\x00")[0].decode("latin-1").lower() in CARD_CHUNKS:
            continue
        if ctype == b"IEND":
            out += _text_chunk("chara", v2) + _text_chunk("ccv3", v3)
        out += image[start:end]
    return bytes(out)


def _text_chunk(keyword: str, card: dict) -> bytes:
    body = keyword.encode("latin-1") + b"\x00" + base64.b64encode(card_json(card))
    return struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))


def card_json(card: dict) -> bytes:
    return json.dumps(card, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- lorebooks ----------------------------------------------------------------------------------
# A lorebook's entries keep the `extra` of the format they arrived in (book_extra["format"]:
# "character_book" for books inside cards and bare book files, "lorebook_v3", "world_info").
# Writing the same format gives the source back; writing another converts as SillyTavern does.

CHARACTER_BOOK = "character_book"
WORLD_INFO = "world_info"

# SillyTavern's defaults for a new World Info entry (newWorldInfoEntryDefinition), used when an
# entry from a card's book is written as World Info.
WI_TEMPLATE = {
    "key": [],
    "keysecondary": [],
    "comment": "",
    "content": "",
    "constant": False,
    "vectorized": False,
    "selective": True,
    "selectiveLogic": 0,
    "addMemo": True,
    "order": 100,
    "position": 0,
    "disable": False,
    "excludeRecursion": False,
    "preventRecursion": False,
    "delayUntilRecursion": False,
    "probability": 100,
    "useProbability": True,
    "depth": 4,
    "group": "",
    "groupOverride": False,
    "groupWeight": 100,
    "scanDepth": None,
    "caseSensitive": None,
    "matchWholeWords": None,
    "useGroupScoring": None,
    "automationId": "",
    "role": None,
    "sticky": None,
    "cooldown": None,
    "delay": None,
}


def book_format(extra: dict) -> str:
    return (extra or {}).get("format", CHARACTER_BOOK)


def read_lorebook(data: bytes) -> ParsedBook:
    """A lorebook file: World Info ({"entries": {...}}), lorebook_v3, or a bare character_book."""
    obj = _json_object(data, "the file")
    if obj.get("spec") == SPEC_LOREBOOK_V3:
        book = parse_book(obj.get("data"), where="data.")
        book.extra = {"format": SPEC_LOREBOOK_V3, **book.extra}
        top = {k: v for k, v in obj.items() if k not in ("spec", "data")}
        if top:
            book.extra["top"] = top
        return book
    if obj.get("spec") in (SPEC_V2, SPEC_V3) or "first_mes" in obj:
        raise CardError("this is a character card, not a lorebook: import it as a card")
    entries = obj.get("entries")
    if isinstance(entries, dict):
        return parse_world_info(obj)
    if isinstance(entries, list):
        return parse_book(obj)
    raise CardError('not a lorebook: expected World Info ({"entries": {...}}) or lorebook_v3')


def parse_world_info(obj: dict) -> ParsedBook:
    """SillyTavern's World Info file: {"entries": {"<uid>": entry}, "originalData"?: book}."""
    entries = []
    for key, entry in obj["entries"].items():
        path = f"entries[{key!r}]."
        if not isinstance(entry, dict):
            raise CardError(f"{path.rstrip('.')} must be an object, not {_type_name(entry)}")
        values, extra = take_fields(entry, WI_FIELDS, where=path)
        unknown = extra.pop("unknown", {})
        extensions = {ext: unknown.pop(wi) for wi, ext in WI_EXTENSION_KEYS.items() if wi in unknown}
        if "disable" in unknown:
            disable = unknown.pop("disable")
            if disable is None:
                values["enabled"] = True
                extra.setdefault("raw", {})["disable"] = None
            elif isinstance(disable, bool):
                values["enabled"] = not disable
            else:
                raise CardError(f"{path}disable must be true or false, not {_type_name(disable)}")
        else:
            values["enabled"] = True
            extra.setdefault("missing", []).append("disable")
        values["extensions"] = extensions
        values["position"] = "before_char" if extensions.get("position") in (0, None) else "after_char"
        logic = extensions.get("selectiveLogic", 0)
        values["selective_logic"] = logic if logic in (0, 1, 2, 3) and not isinstance(logic, bool) else 0
        values["case_sensitive"] = extensions.get("case_sensitive") is True
        if unknown:
            extra["unknown"] = unknown
        if str(key) != values["uid"]:
            extra["key"] = key
        entries.append(ParsedEntry(values=values, extra=extra))
    book_extra: dict[str, Any] = {"format": WORLD_INFO}
    top = {k: v for k, v in obj.items() if k != "entries"}
    if top:
        book_extra["top"] = top
    values = {f.attr: _copy_default(f.default) for f in BOOK_FIELDS}
    return ParsedBook(values=values, extra=book_extra, entries=entries)


def build_book(*, values: dict, extra: dict, entries: list[tuple[dict, dict]]) -> dict:
    """A V2 character_book (or the `data` of a lorebook_v3); `entries` are (values, extra) pairs."""
    same = book_format(extra) != WORLD_INFO
    book = give_fields(values, BOOK_FIELDS, extra if same else {})
    if entries or not extra.get("no_entries"):
        book["entries"] = [_book_entry(ev, ex, same) for ev, ex in entries]
    return book


def _book_entry(ev: dict, ex: dict, same: bool) -> dict:
    if same:
        return give_fields(ev, ENTRY_FIELDS, ex)
    # From World Info: numeric ids as numbers, keys without a V2 field kept in extensions.
    extensions = {**(ex.get("unknown") or {}), **(ev.get("extensions") or {})}
    entry = give_fields({**ev, "extensions": extensions}, ENTRY_FIELDS, {})
    uid = ev.get("uid", "")
    entry["id"] = int(uid) if re.fullmatch(r"-?\d+", uid or "") else uid
    return entry


def build_lorebook_v3(*, values: dict, extra: dict, entries: list[tuple[dict, dict]]) -> dict:
    out: dict[str, Any] = {"spec": SPEC_LOREBOOK_V3}
    if book_format(extra) == SPEC_LOREBOOK_V3:
        out.update(extra.get("top") or {})
    out["data"] = build_book(values=values, extra=extra, entries=entries)
    return out


def build_world_info(*, values: dict, extra: dict, entries: list[tuple[dict, dict]]) -> dict:
    """A SillyTavern World Info file. A book from a card also carries itself as `originalData`,
    as SillyTavern writes it, so its V2 fields survive the trip."""
    from_wi = book_format(extra) == WORLD_INFO
    out: dict[str, Any] = {"entries": {}}
    for index, (ev, ex) in enumerate(entries):
        entry = _wi_entry(ev, ex if from_wi else None, index)
        key = ex.get("key", entry.get("uid")) if from_wi else entry["uid"]
        out["entries"][str(key)] = entry
    if from_wi:
        for key, value in (extra.get("top") or {}).items():
            out.setdefault(key, value)
    else:
        out["originalData"] = build_book(values=values, extra=extra, entries=entries)
    return out


def _wi_entry(ev: dict, ex: dict | None, index: int) -> dict:
    extensions = dict(ev.get("extensions") or {})
    if ex is not None:
        entry = give_fields(ev, WI_FIELDS, ex)
    else:
        entry = {"uid": index, **WI_TEMPLATE, "displayIndex": index}
        entry.update(give_fields(ev, WI_FIELDS, {}))
        uid = entry["uid"]
        entry["uid"] = int(uid) if re.fullmatch(r"-?\d+", str(uid)) else (uid or index)
        entry["selective"] = bool(ev.get("selective"))
    for ext_key, wi_key in WI_FROM_EXTENSION.items():
        if ext_key in extensions:
            entry[wi_key] = extensions.pop(ext_key)
    # Position, logic and case sensitivity have columns too; a column the user changed wins.
    want_before = ev.get("position", "before_char") == "before_char"
    position = entry.get("position")
    if position is None:
        if not want_before:
            entry["position"] = 1
    elif (position == 0) != want_before:
        entry["position"] = 0 if want_before else 1
    logic = ev.get("selective_logic", 0)
    current = entry.get("selectiveLogic")
    if current is None:
        if logic:
            entry["selectiveLogic"] = logic
    elif current != logic and (current in (0, 1, 2, 3) or logic):
        entry["selectiveLogic"] = logic
    sensitive = bool(ev.get("case_sensitive"))
    if "caseSensitive" not in entry:
        if sensitive:
            entry["caseSensitive"] = True
    elif (entry["caseSensitive"] is True) != sensitive:
        entry["caseSensitive"] = sensitive
    enabled = ev.get("enabled", True)
    if ex is not None and enabled and "disable" in ex.get("missing", ()):
        pass
    elif ex is not None and enabled and "disable" in ex.get("raw", {}):
        entry["disable"] = ex["raw"]["disable"]
    else:
        entry["disable"] = not enabled
    if ex is not None:
        nested = (ex.get("unknown") or {}).get("extensions")
        if extensions and isinstance(nested, dict):
            entry["extensions"] = {**nested, **extensions}
        elif extensions:
            entry["extensions"] = extensions
        for key, value in (ex.get("unknown") or {}).items():
            entry.setdefault(key, value)
    elif extensions:
        entry["extensions"] = extensions
    return entry
