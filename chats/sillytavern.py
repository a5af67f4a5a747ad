"""SillyTavern chats in and out: JSONL import (streamed, in bulk), JSONL and text export (streamed, a
page at a time), and the import of a whole SillyTavern user folder.

The format, and how it maps here, is in docs/migrating-from-sillytavern.md. What rpchat has no column for is kept:
the header's chat_metadata in ChatSession.metadata, each message's `extra` in Message.meta["extra"]
and its other keys in Message.meta["st"], each swipe's swipe_info in MessageAlternative.meta["st"].

Broken lines: a file with a line that is not a JSON object (or whose name, mes, is_user or is_system
has the wrong type) is refused whole, naming every broken line, and nothing is imported. With
`skip_broken_lines` the other lines are imported and the broken ones are reported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from characters.cards import CardError, json_loads, unstorable_text
from characters.models import Character, Lorebook
from characters.services import (
    ImageRejected,
    ImportResult,
    card_import,
    human_size,
    lorebook_import,
    open_image,
    read_limited,
)
from core.tokens import estimate_tokens
from settings_app import stpresets
from settings_app.models import Persona
from settings_app.services import preset_import

from .models import ChatMember, ChatSession, Message, MessageAlternative

BATCH_SIZE = 1000
EXPORT_PAGE_SIZE = 500
HASH_KEY = "rpchat_import_hash"
HEADER_KEY = "rpchat_header"
# Message keys with a column (or a dedicated place) in rpchat; every other key goes to meta["st"].
MAPPED_KEYS = frozenset(
    {"name", "is_user", "is_system", "send_date", "mes", "extra", "swipes", "swipe_id", "swipe_info"}
)
# extra.type values SillyTavern gives its own system messages (narrator, help, comments...).
SYSTEM_TYPES = frozenset(
    {"help", "welcome", "group", "empty", "generic", "narrator", "comment", "slash_commands",
     "formatting", "hotkeys", "macros", "welcome_prompt", "assistant_note"}
)  # fmt: skip
# A swipe's swipe_info usually repeats its message's extra; stored once, marked in the swipe.
SAME_EXTRA = "=message.extra"
NOTE_ROLES = {0: "system", 1: "user", 2: "assistant"}
MAX_BROKEN_SHOWN = 10
# Only a \u escape can put NUL or a lone surrogate into a parsed line; checked only then.
SUSPECT_ESCAPE = re.compile(rb"\\u(0000|[dD][89a-fA-F])")


class ChatImportError(Exception):
    """The chat file is refused; the message names the lines and what is wrong with them."""


# --- dates ----------------------------------------------------------------------------------------

MONTHS = {
    name: i
    for i, names in enumerate(
        [("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",),
         ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
         ("october", "oct"), ("november", "nov"), ("december", "dec")],
        start=1,
    )
    for name in names
}  # fmt: skip
# "October 18, 2024 8:52pm": SillyTavern's own (getMessageTimeStamp).
ST_DATE = re.compile(r"([A-Za-z]+)\.? (\d{1,2}), (\d{4}),? (\d{1,2}):(\d{2})(?::(\d{2}))? ?([AaPp][Mm])")
# "2024-10-18@20h52m17s" and "2024-10-18 @20h 52m 17s 123ms": humanizedISO8601DateTime and friends.
HUMANIZED = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2}) ?@ ?(\d{1,2})h ?(\d{1,2})m ?(\d{1,2})s(?: ?(\d{1,3}) ?ms)?"
)
# JavaScript's Date.toString(): "Fri Oct 18 2024 20:52:17 GMT+0200 (Central European Summer Time)".
JS_DATE = re.compile(
    r"[A-Za-z]{3} ([A-Za-z]{3}) (\d{1,2}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT([+-]\d{2})(\d{2})"
)


# Dates rpchat keeps: a day inside the calendar Python knows at both ends, so that every time zone
# (stored in UTC, shown in TIME_ZONE) can still convert them.
EARLIEST = dt.datetime(1, 1, 3, tzinfo=dt.UTC)
LATEST = dt.datetime(9999, 12, 29, tzinfo=dt.UTC)


def parse_send_date(value: Any) -> dt.datetime | None:
    """Every send_date form SillyTavern and its importers write, as an aware datetime; None if not
    recognised or too near the edges of the calendar. Times without a zone are read in
    settings.TIME_ZONE."""
    moment = _parse_date(value)
    if moment is None:
        return None
    try:
        return moment if EARLIEST <= moment.astimezone(dt.UTC) <= LATEST else None
    except OverflowError:  # "0001-01-01T00:00:00+05:00" is in the year 0 in UTC
        return None


def _parse_date(value: Any) -> dt.datetime | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str) and re.fullmatch(r"\d{9,16}(\.\d+)?", value.strip()):
        value = float(value)
    if isinstance(value, (int, float)):
        seconds = value / 1000 if abs(value) >= 1e11 else value  # epoch milliseconds or seconds
        try:
            return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if m := ST_DATE.fullmatch(text):
            month = MONTHS.get(m[1].lower())
            if month is None:
                return None
            hour = int(m[4]) % 12 + (12 if m[7].lower() == "pm" else 0)
            return _local(dt.datetime(int(m[3]), month, int(m[2]), hour, int(m[5]), int(m[6] or 0)))
        if m := HUMANIZED.fullmatch(text):
            y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
            return _local(dt.datetime(y, mo, d, h, mi, s, int((m[7] or "0").ljust(3, "0")) * 1000))
        if m := JS_DATE.fullmatch(text.split(" (")[0]):
            month = MONTHS.get(m[1].lower())
            if month is None:
                return None
            sign = 1 if m[7][0] == "+" else -1
            offset = dt.timedelta(hours=int(m[7][1:]), minutes=int(m[8])) * sign
            naive = dt.datetime(int(m[3]), month, int(m[2]), int(m[4]), int(m[5]), int(m[6]))
            return naive.replace(tzinfo=dt.timezone(offset))
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else _local(parsed)


def _local(naive: dt.datetime) -> dt.datetime:
    return timezone.make_aware(naive, timezone.get_default_timezone())


def format_send_date(moment: dt.datetime) -> str:
    """SillyTavern's own message time: "October 18, 2024 8:52pm", in settings.TIME_ZONE."""
    local = timezone.localtime(moment)
    hour = local.hour % 12 or 12
    suffix = "pm" if local.hour >= 12 else "am"
    return f"{local:%B} {local.day}, {local.year} {hour}:{local.minute:02d}{suffix}"


def humanized(moment: dt.datetime) -> str:
    """SillyTavern's humanizedDateTime: "2024-10-18@20h52m17s", in settings.TIME_ZONE."""
    local = timezone.localtime(moment)
    return f"{local:%Y-%m-%d}@{local.hour:02d}h{local.minute:02d}m{local.second:02d}s"


# --- import ---------------------------------------------------------------------------------------


def file_sha256(source: Path | BinaryIO) -> str:
    digest = hashlib.sha256()
    if isinstance(source, (str, Path)):
        with open(source, "rb") as fh:
            return file_sha256(fh)
    source.seek(0)
    while chunk := source.read(1 << 20):
        digest.update(chunk)
    source.seek(0)
    return digest.hexdigest()


def chat_imported(*, user, file_hash: str) -> ChatSession | None:
    """The user's live chat imported from a file with this content hash, if any."""
    # The user's chats through chat_user_recent_idx, then the JSON key: a user has few enough chats.
    return (
        ChatSession.objects.for_user(user)
        .filter(**{f"metadata__{HASH_KEY}": file_hash})
        .only("id", "code", "title")
        .first()
    )


@dataclass
class _Pending:
    message: Message
    swipes: list[tuple[str, dict]] = field(default_factory=list)


def chat_import_sillytavern(
    *,
    source: Path | BinaryIO,
    file_name: str,
    user,
    character: Character,
    members: list[Character] | None = None,
    avatars: dict[str, Character] | None = None,
    title: str = "",
    skip_broken_lines: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Import a SillyTavern chat file as one chat of `user` with `character`, atomically.

    `members` makes it a group chat (`avatars` maps card file names to members). Lines are read
    and inserted in batches, so memory stays flat at any length. A file this user already imported
    (same content hash) is skipped.
    """
    limit = settings.RPCHAT["MAX_CHAT_BYTES"]
    size = Path(source).stat().st_size if isinstance(source, (str, Path)) else getattr(source, "size", None)
    if isinstance(size, int) and size > limit:
        return ImportResult(file_name, "failed", _too_large(size, limit))
    file_hash = file_sha256(source)
    existing = chat_imported(user=user, file_hash=file_hash)
    if existing is not None:
        return ImportResult(
            file_name, "skipped", f"already imported as {existing.title or 'a chat'}", existing
        )
    options = {
        "file_name": file_name,
        "user": user,
        "character": character,
        "members": members,
        "avatars": avatars,
        "title": title,
        "skip_broken_lines": skip_broken_lines,
        "on_progress": on_progress,
        "file_hash": file_hash,
        "limit": limit,
    }
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as fh:
                session, report = _import_lines(fh, **options)
        else:
            session, report = _import_lines(source, **options)
    except ChatImportError as exc:
        return ImportResult(file_name, "failed", str(exc))
    warnings = []
    if report.broken_count:
        count, shown = report.describe_broken()
        warnings.append(f"skipped {count}: {shown}")
    if report.undated:
        warnings.append(f"{report.undated} message(s) had a send_date rpchat could not read; kept as written")
    return ImportResult(file_name, "imported", f"{report.count:,} messages", session, warnings)


def _too_large(size: int, limit: int) -> str:
    return f"the file is {human_size(size)}; the limit is {human_size(limit)} (RPCHAT_MAX_CHAT_BYTES)"


@dataclass
class _Report:
    count: int = 0
    undated: int = 0
    broken_count: int = 0
    # The first few broken lines, with why; a file of garbage must not fill memory with reasons.
    broken: list[tuple[int, str]] = field(default_factory=list)

    def add_broken(self, number: int, why: str) -> None:
        self.broken_count += 1
        if len(self.broken) < MAX_BROKEN_SHOWN:
            self.broken.append((number, why))

    def describe_broken(self) -> tuple[str, str]:
        shown = "; ".join(f"line {n}: {why}" for n, why in self.broken)
        if self.broken_count > len(self.broken):
            shown += f"; and {self.broken_count - len(self.broken)} more"
        return f"{self.broken_count} broken line(s)", shown


def _read_lines(fh: BinaryIO, max_line: int) -> Iterator[tuple[int, bytes | None, str]]:
    """(line number, bytes or None, why) for each line, never holding more than one line."""
    number = 0
    while True:
        line = fh.readline(max_line + 1)
        if not line:
            return
        number += 1
        if len(line) > max_line and not line.endswith(b"\n"):
            while (more := fh.readline(1 << 20)) and not more.endswith(b"\n"):
                pass
            yield number, None, f"longer than {human_size(max_line)} (RPCHAT_MAX_CHAT_LINE_BYTES)"
            continue
        yield number, line, ""


def _parse_line(line: bytes) -> tuple[dict | None, str]:
    try:
        obj = json_loads(line.rstrip(b"\r\n"))
    except UnicodeDecodeError:
        return None, "not UTF-8 text"
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno})"
    except ValueError as exc:  # a number no database stores
        return None, str(exc)
    except RecursionError:
        return None, "nested too deeply"
    if not isinstance(obj, dict):
        return None, "not a JSON object"
    if SUSPECT_ESCAPE.search(line) and (why := unstorable_text(obj)):
        return None, why
    for key, kind, label in (
        ("mes", str, "a string"),
        ("name", str, "a string"),
        ("is_user", bool, "true or false"),
        ("is_system", bool, "true or false"),
    ):
        if key in obj and obj[key] is not None and not isinstance(obj[key], kind):
            return None, f"{key} must be {label}"
    return obj, ""


def _is_header(obj: dict) -> bool:
    return "mes" not in obj and any(
        k in obj for k in ("user_name", "character_name", "chat_metadata", "create_date")
    )


def _import_lines(
    fh: BinaryIO,
    *,
    file_name: str,
    user,
    character: Character,
    members: list[Character] | None,
    avatars: dict[str, Character] | None,
    title: str,
    skip_broken_lines: bool,
    on_progress: Callable[[int], None] | None,
    file_hash: str,
    limit: int,
) -> tuple[ChatSession, _Report]:
    report = _Report()
    max_line = settings.RPCHAT["MAX_CHAT_LINE_BYTES"]
    by_name = {m.name: m for m in members or []}
    read = 0
    with transaction.atomic():
        session = ChatSession.objects.create(
            user=user,
            character=members[0] if members else character,
            title=(title or Path(file_name).stem)[:200],
            is_group=bool(members),
            metadata={HASH_KEY: file_hash},
        )
        if members:
            ChatMember.objects.bulk_create(
                ChatMember(session=session, character=m, position=i) for i, m in enumerate(members)
            )
        pending: list[_Pending] = []
        seq = 0
        first_at = last_at = None
        header_seen = False
        for number, line, unread in _read_lines(fh, max_line):
            read += len(line or b"")
            if read > limit:
                raise ChatImportError(_too_large(read, limit))
            if line is not None and not line.strip():
                continue
            obj, why = (None, unread) if line is None else _parse_line(line)
            if obj is None:
                report.add_broken(number, why)
                continue
            if not header_seen:
                header_seen = True
                if _is_header(obj):
                    first_at = _apply_header(session, obj, user)
                    continue
            if report.broken_count and not skip_broken_lines:
                continue  # refusing the file: keep reading only to count the broken lines
            seq += 1
            when = parse_send_date(obj.get("send_date"))
            if when is None:
                report.undated += 1 if "send_date" in obj else 0
                when = last_at or first_at or timezone.now()
            first_at = first_at or when
            last_at = when
            pending.append(_message_from(obj, session, seq, when, members, by_name, avatars))
            if len(pending) >= BATCH_SIZE:
                _flush(pending)
                pending = []
                if on_progress:
                    on_progress(read)
        if report.broken_count and (not skip_broken_lines or (seq == 0 and not header_seen)):
            count, shown = report.describe_broken()
            raise ChatImportError(f"{count}, nothing was imported: {shown}")
        if seq == 0 and not header_seen:
            raise ChatImportError("the file is empty")
        _flush(pending)
        report.count = seq
        now = timezone.now()
        # Counters once, at the end: the chat is invisible to others until the commit anyway.
        ChatSession.objects.filter(pk=session.pk).update(
            last_seq=seq,
            message_count=seq,
            created_at=first_at or now,
            last_message_at=last_at or first_at or now,
            metadata=session.metadata,
            persona=session.persona,
            author_note=session.author_note,
            author_note_depth=session.author_note_depth,
            author_note_frequency=session.author_note_frequency,
            author_note_role=session.author_note_role,
        )
    if on_progress:
        on_progress(read)
    session.refresh_from_db()
    return session, report


def _apply_header(session: ChatSession, header: dict, user) -> dt.datetime | None:
    """Keep the header on the session (metadata, persona, author's note); returns its create_date."""
    metadata = header.get("chat_metadata")
    rest = {k: v for k, v in header.items() if k != "chat_metadata"}
    if isinstance(metadata, dict):
        session.metadata = {**metadata, **session.metadata}
    elif "chat_metadata" in header:
        rest["chat_metadata"] = metadata
    session.metadata[HEADER_KEY] = rest
    user_name = header.get("user_name")
    if isinstance(user_name, str) and user_name:
        session.persona = Persona.objects.filter(user=user, name=user_name).first()
    for key, attr, read, _ in NOTE_FIELDS:
        value = read(session.metadata[key]) if key in session.metadata else None
        if value is not None:
            setattr(session, attr, value)
    return parse_send_date(header.get("create_date"))


def _small_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 32767


# chat_metadata's author's note keys: (key, ChatSession field, reader (None if unreadable), default).
NOTE_FIELDS = (
    ("note_prompt", "author_note", lambda v: v if isinstance(v, str) else None, ""),
    ("note_depth", "author_note_depth", lambda v: v if _small_int(v) else None, 4),
    ("note_interval", "author_note_frequency", lambda v: v if _small_int(v) else None, 1),
    (
        "note_role",
        "author_note_role",
        lambda v: NOTE_ROLES.get(v) if isinstance(v, int) and not isinstance(v, bool) else None,
        "system",
    ),
)


def _pack_info(info: Any, obj: dict) -> Any:
    if isinstance(info, dict) and "extra" in obj and info.get("extra") == obj["extra"] and "extra" in info:
        return {**info, "extra": SAME_EXTRA}
    return info


def _unpack_info(info: Any, extra: Any) -> Any:
    if isinstance(info, dict) and info.get("extra") == SAME_EXTRA:
        return {**info, "extra": extra}
    return info


def _reasoning_of(extra: Any) -> tuple[str, int | None]:
    """SillyTavern's reasoning in a message's (or a swipe's) `extra`: its text and its duration
    (milliseconds), when they have the types SillyTavern writes."""
    if not isinstance(extra, dict) or not isinstance(extra.get("reasoning"), str):
        return "", None
    duration = extra.get("reasoning_duration")
    ok = isinstance(duration, int | float) and not isinstance(duration, bool) and 0 <= duration < 2**31
    return extra["reasoning"], round(duration) if ok else None


def _without_reasoning(extra: Any) -> Any:
    """`extra` less the reasoning rpchat keeps in columns (put back by `_with_reasoning`)."""
    reasoning, ms = _reasoning_of(extra)
    if not reasoning:
        return extra
    dropped = ("reasoning", "reasoning_duration") if ms is not None else ("reasoning",)
    return {k: v for k, v in extra.items() if k not in dropped}


def _with_reasoning(extra: Any, reasoning: str, ms: int | None) -> Any:
    """`extra` as SillyTavern keeps it, with the reasoning rpchat stores in columns put back."""
    if not reasoning:
        return extra
    extra = dict(extra) if isinstance(extra, dict) else {}
    extra["reasoning"] = reasoning
    if ms is not None:
        extra["reasoning_duration"] = ms
    return extra


def _alt_reasoning(info: Any) -> dict:
    """A swipe's reasoning (from its swipe_info's extra), for its MessageAlternative's columns."""
    reasoning, ms = _reasoning_of(info.get("extra") if isinstance(info, dict) else None)
    return {"reasoning": reasoning, "reasoning_ms": ms} if reasoning else {}


def _message_from(obj, session, seq, when, members, by_name, avatars) -> _Pending:
    mes = obj.get("mes") or ""
    name = obj.get("name") or ""
    extra = obj.get("extra")
    st = {k: v for k, v in obj.items() if k not in MAPPED_KEYS}
    if "send_date" in obj and parse_send_date(obj["send_date"]) is None:
        st["send_date"] = obj["send_date"]
    for key in ("mes", "name", "is_user", "is_system"):
        if obj.get(key, "") is None:
            st[key] = None
    if len(name) > 200:
        st["name"] = name
    if obj.get("is_user"):
        role = Message.Role.USER
    elif isinstance(extra, dict) and extra.get("type") in SYSTEM_TYPES:
        role = Message.Role.SYSTEM
    else:
        role = Message.Role.ASSISTANT
    speaker_character = None
    if members and role == Message.Role.ASSISTANT:
        speaker_character = (avatars or {}).get(obj.get("original_avatar")) or by_name.get(name)
    swipes = obj.get("swipes")
    swipe_id = obj.get("swipe_id")
    info = obj.get("swipe_info")
    alternatives: list[tuple[str, dict]] = []
    index = 0
    if isinstance(swipes, list) and 2 <= len(swipes) <= 32767 and all(isinstance(s, str) for s in swipes):
        valid_id = (
            isinstance(swipe_id, int) and not isinstance(swipe_id, bool) and 0 <= swipe_id < len(swipes)
        )
        index = swipe_id if valid_id else (swipes.index(mes) if mes in swipes else 0)
        if isinstance(info, list) and len(info) == len(swipes):
            alternatives = [
                (s, {"st": _pack_info(i, obj), **_alt_reasoning(i)})
                for s, i in zip(swipes, info, strict=True)
            ]
        else:
            alternatives = [(s, {}) for s in swipes]
            if "swipe_info" in obj:
                st["swipe_info"] = info
    else:
        if "swipes" in obj:
            st["swipes"] = 1 if swipes == [mes] else swipes
        if "swipe_id" in obj:
            st["swipe_id"] = swipe_id
        if "swipe_info" in obj:
            st["swipe_info"] = [_pack_info(i, obj) for i in info] if isinstance(info, list) else info
    meta: dict[str, Any] = {"st": st}
    reasoning, reasoning_ms = _reasoning_of(extra)
    if "extra" in obj:
        # The reasoning has columns of its own; the export puts it back.
        meta["extra"] = _without_reasoning(extra)
    message = Message(
        session=session,
        seq=seq,
        role=role,
        speaker=name[:200],
        character=speaker_character,
        content=mes,
        token_count=estimate_tokens(mes),
        reasoning=reasoning,
        reasoning_tokens=estimate_tokens(reasoning),
        reasoning_ms=reasoning_ms,
        status=Message.Status.COMPLETE,
        hidden=bool(obj.get("is_system")),
        alternative_index=index,
        alternative_count=len(alternatives),
        meta=meta,
        created_at=when,
        updated_at=when,
    )
    return _Pending(message, alternatives)


def _flush(pending: list[_Pending]) -> None:
    if not pending:
        return
    insert_keeping_dates(Message, [p.message for p in pending])
    alternatives = [
        MessageAlternative(
            message_id=p.message.pk,
            index=i,
            content=text,
            token_count=estimate_tokens(text),
            reasoning=thought.get("reasoning", ""),
            reasoning_tokens=estimate_tokens(thought.get("reasoning", "")),
            reasoning_ms=thought.get("reasoning_ms"),
            meta={"st": meta["st"]} if "st" in meta else {},
            created_at=p.message.created_at,
        )
        for p in pending
        for i, (text, meta) in enumerate(p.swipes)
        for thought in [{k: v for k, v in meta.items() if k != "st"}]
    ]
    insert_keeping_dates(MessageAlternative, alternatives)


def insert_keeping_dates(model, objs: list) -> None:
    """bulk_create in batches; created_at is a plain default, so imported dates are kept."""
    if objs:
        model.objects.bulk_create(objs, batch_size=1000)


# --- export ---------------------------------------------------------------------------------------


def _user_name(session: ChatSession) -> str:
    if session.persona_id:
        return session.persona.name
    return session.user.get_username()


def chat_export_sillytavern(session: ChatSession) -> Iterator[str]:
    """The chat as SillyTavern JSONL, a page of messages per chunk: header line, then one line per
    message. SillyTavern loads it back; a chat imported from SillyTavern gives back what it held."""
    yield _dumps(_export_header(session))
    for messages, alternatives in _pages(session):
        lines = []
        for m in messages:
            lines.append("\n" + _dumps(_export_message(m, alternatives.get(m.pk))))
        yield "".join(lines)


def chat_export_text(session: ChatSession) -> Iterator[str]:
    """The chat as plain text, SillyTavern's txt export: "{name}: {mes}\\n\\n" per visible message."""
    for messages, _ in _pages(session, alternatives=False):
        chunk = []
        for m in messages:
            if m.hidden:
                continue
            extra = m.meta.get("extra")
            text = extra.get("display_text") if isinstance(extra, dict) else None
            chunk.append(f"{m.speaker or m.get_role_display()}: {text or m.content}\n\n")
        if chunk:
            yield "".join(chunk)


def _pages(session: ChatSession, *, alternatives: bool = True):
    """Keyset pages of the chat's messages (seq ascending) with their swipes: two queries a page."""
    after = 0
    while True:
        page = list(
            Message.objects.filter(session=session, seq__gt=after)
            .order_by("seq")
            .only(
                "id",
                "seq",
                "role",
                "speaker",
                "content",
                "hidden",
                "alternative_index",
                "alternative_count",
                "reasoning",
                "reasoning_ms",
                "meta",
                "created_at",
            )[:EXPORT_PAGE_SIZE]
        )
        if not page:
            return
        swipes: dict[int, list[MessageAlternative]] = {}
        with_swipes = [m.pk for m in page if m.alternative_count > 1]
        if alternatives and with_swipes:
            for alt in (
                MessageAlternative.objects.filter(message_id__in=with_swipes)
                .order_by("message_id", "index")
                .only("message_id", "index", "content", "reasoning", "reasoning_ms", "meta", "created_at")
            ):
                swipes.setdefault(alt.message_id, []).append(alt)
        yield page, swipes
        if len(page) < EXPORT_PAGE_SIZE:
            return
        after = page[-1].seq


def _export_header(session: ChatSession) -> dict:
    metadata = {k: v for k, v in session.metadata.items() if not k.startswith("rpchat_")}
    header = dict(session.metadata.get(HEADER_KEY) or {})
    if session.author_note or any(key in metadata for key, *_ in NOTE_FIELDS):
        for key, attr, read, default in NOTE_FIELDS:
            value = getattr(session, attr)
            current = read(metadata[key]) if key in metadata else None
            # A value rpchat could not read stays as written while the column is untouched.
            if key in metadata and (current == value or (current is None and value == default)):
                continue
            metadata[key] = {v: k for k, v in NOTE_ROLES.items()}[value] if key == "note_role" else value
    if session.is_group:
        header.setdefault("user_name", "unused")
        header.setdefault("character_name", "unused")
    else:
        header.setdefault("user_name", _user_name(session))
        header.setdefault("character_name", session.character.name)
    header.setdefault("create_date", humanized(session.created_at))
    if "chat_metadata" in header and not metadata:
        return header  # it was not an object; kept as written
    header["chat_metadata"] = metadata
    return header


def _export_message(m: Message, alternatives: list[MessageAlternative] | None) -> dict:
    meta = m.meta or {}
    st = dict(meta.get("st") or {})
    imported = "st" in meta
    extra = meta.get("extra", {})
    # Values SillyTavern had in a form rpchat stores differently (null, a name past 200 characters)
    # go back as they were while the message is unchanged.
    raw = {k: st.pop(k) for k in ("name", "is_user", "is_system", "mes") if k in st}
    name = raw["name"] if "name" in raw and (raw["name"] or "")[:200] == m.speaker else m.speaker
    out: dict[str, Any] = {
        "name": name,
        "is_user": None if "is_user" in raw and m.role != Message.Role.USER else m.role == Message.Role.USER,
        "is_system": None if "is_system" in raw and not m.hidden else m.hidden,
        "send_date": st.pop("send_date") if "send_date" in st else format_send_date(m.created_at),
        "mes": None if "mes" in raw and not m.content else m.content,
    }
    # The extra of an imported message's swipes, as SillyTavern wrote it (without the reasoning).
    base_extra = extra
    if "extra" in meta or not imported or m.reasoning:
        extra = out["extra"] = _with_reasoning(extra, m.reasoning, m.reasoning_ms)
    swipes = st.pop("swipes", None)
    swipe_id = st.pop("swipe_id", None)
    swipe_info = st.pop("swipe_info", None)
    out.update(st)
    if alternatives:
        out["swipes"] = [a.content for a in alternatives]
        out["swipe_id"] = m.alternative_index
        out["swipe_info"] = (
            swipe_info
            if swipe_info is not None
            else [
                _info_with_reasoning(
                    _unpack_info(a.meta["st"], base_extra) if "st" in a.meta else _new_info(a.created_at), a
                )
                for a in alternatives
            ]
        )
    elif swipes is not None or swipe_id is not None or swipe_info is not None:
        if swipes is not None:
            out["swipes"] = [m.content] if swipes == 1 else swipes
        if swipe_id is not None or swipes is not None:
            out["swipe_id"] = swipe_id if swipe_id is not None else 0
        if swipe_info is not None:
            out["swipe_info"] = (
                [_unpack_info(i, extra) for i in swipe_info] if isinstance(swipe_info, list) else swipe_info
            )
    elif not imported and m.role == Message.Role.ASSISTANT:
        # What SillyTavern writes for a generated message with one swipe.
        out["swipes"] = [m.content]
        out["swipe_id"] = 0
        out["swipe_info"] = [_info_with_reasoning(_new_info(m.created_at), m)]
    return out


def _info_with_reasoning(info: Any, source: Message | MessageAlternative) -> Any:
    """A swipe_info entry with the swipe's reasoning in its extra, as SillyTavern keeps it."""
    if not source.reasoning or not isinstance(info, dict):
        return info
    return {**info, "extra": _with_reasoning(info.get("extra"), source.reasoning, source.reasoning_ms)}


def _new_info(moment: dt.datetime) -> dict:
    return {"send_date": format_send_date(moment), "gen_started": None, "gen_finished": None, "extra": {}}


def _dumps(obj: dict) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --- a whole SillyTavern user folder ------------------------------------------------------------

CARD_SUFFIXES = frozenset({".png", ".apng", ".json", ".charx"})
KINDS = ("presets", "personas", "lorebooks", "cards", "chats")


@dataclass
class FolderReport:
    folder: Path
    results: dict[str, list[ImportResult]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def add(self, kind: str, result: ImportResult) -> ImportResult:
        self.results[kind].append(result)
        return result

    def count(self, kind: str, status: str) -> int:
        return sum(1 for r in self.results[kind] if r.status == status)


def sillytavern_user_folder(root: Path) -> Path:
    """The user folder (the one holding characters/ and chats/) at or under `root`."""
    root = Path(root)
    if (root / "characters").is_dir() or (root / "chats").is_dir():
        return root
    for candidate in (root / "default-user", root / "data" / "default-user"):
        if (candidate / "characters").is_dir():
            return candidate
    users = sorted(p for p in root.iterdir() if (p / "characters").is_dir()) if root.is_dir() else []
    if len(users) == 1:
        return users[0]
    if len(users) > 1:
        names = ", ".join(p.name for p in users)
        raise FileNotFoundError(
            f"{root} holds several SillyTavern users ({names}); give one of their folders"
        )
    raise FileNotFoundError(f"{root} is not a SillyTavern data folder (no characters/ or chats/ in it)")


def _files(folder: Path, suffixes: frozenset[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def sillytavern_folder_import(
    *,
    root: Path,
    user,
    skip_broken_lines: bool = False,
    progress: Callable[[int, str], None] | None = None,
) -> FolderReport:
    """Import a SillyTavern user folder for `user`: presets, personas, World Info books, cards, solo and
    group chats. Each file is imported atomically and what was imported before is skipped, so an
    interrupted import can be run again. `progress(bytes_done, label)` follows the bytes read."""
    base = sillytavern_user_folder(root)
    report = FolderReport(base)
    worlds, card_files, chat_dirs, groups = _folder_parts(base)

    def done(n: int, label: str) -> None:
        if progress:
            progress(n, label)

    for path, kind in _preset_files(base):
        report.add("presets", preset_import(source=path, file_name=_rel(path, base), owner=user, kind=kind))
        done(path.stat().st_size, path.name)
    _import_personas(base, user, report)
    books: dict[str, Lorebook] = {}
    for path in worlds:
        result = report.add("lorebooks", lorebook_import(source=path, file_name=_rel(path, base), owner=user))
        if result.object is not None:
            books[path.stem] = result.object
        done(path.stat().st_size, path.name)

    by_stem: dict[str, Character] = {}
    for path in card_files:
        result = report.add("cards", card_import(source=path, file_name=_rel(path, base), owner=user))
        if result.object is not None:
            by_stem[path.stem] = result.object
            if result.status == "imported":
                # SillyTavern links a World Info book to a character by name.
                world = (
                    result.object.extensions.get("world")
                    if isinstance(result.object.extensions, dict)
                    else None
                )
                if isinstance(world, str) and world in books:
                    result.object.lorebooks.add(books[world])
        done(path.stat().st_size, path.name)

    for folder in chat_dirs:
        character = by_stem.get(folder.name)
        for path in _files(folder, frozenset({".jsonl"})):
            if character is None:
                report.add(
                    "chats",
                    ImportResult(
                        _rel(path, base), "failed", f"no card characters/{folder.name}.png was imported"
                    ),
                )
                done(path.stat().st_size, path.name)
                continue
            result = _chat_file(path, base, user, character, done, skip_broken_lines=skip_broken_lines)
            _attach_chat_lorebook(result, books)
            report.add("chats", result)

    listed: set[str] = set()
    for path in groups:
        _import_group(path, base, user, by_stem, report, listed, done, books, skip_broken_lines)
    for path in _files(base / "group chats", frozenset({".jsonl"})):
        if path.stem not in listed:
            report.add(
                "chats", ImportResult(_rel(path, base), "failed", "no group in groups/ lists this chat")
            )
            done(path.stat().st_size, path.name)
    return report


def _preset_files(base: Path) -> list[tuple[Path, str]]:
    """The preset files of a user folder, each with the kind its folder holds."""
    return [
        (path, kind)
        for kind, folder in stpresets.FOLDERS.items()
        for path in _files(base / folder, frozenset({".json"}))
    ]


def _folder_parts(base: Path):
    worlds = _files(base / "worlds", frozenset({".json"}))
    card_files = _files(base / "characters", CARD_SUFFIXES)
    chat_dirs = (
        sorted(p for p in (base / "chats").iterdir() if p.is_dir()) if (base / "chats").is_dir() else []
    )
    groups = _files(base / "groups", frozenset({".json"}))
    return worlds, card_files, chat_dirs, groups


def sillytavern_folder_size(root: Path) -> int:
    """The bytes sillytavern_folder_import reads from this folder (a progress bar's total)."""
    base = sillytavern_user_folder(root)
    worlds, card_files, chat_dirs, _ = _folder_parts(base)
    chats = [p for d in chat_dirs for p in _files(d, frozenset({".jsonl"}))]
    chats += _files(base / "group chats", frozenset({".jsonl"}))
    presets = [path for path, _ in _preset_files(base)]
    return sum(p.stat().st_size for p in [*worlds, *card_files, *chats, *presets])


def _rel(path: Path, base: Path) -> str:
    return str(path.relative_to(base))


def _chat_file(path, base, user, character, done, **options) -> ImportResult:
    seen = 0

    def on_progress(read: int) -> None:
        nonlocal seen
        done(read - seen, path.name)
        seen = read

    result = chat_import_sillytavern(
        source=path, file_name=_rel(path, base), user=user, character=character, title=path.stem,
        on_progress=on_progress, **options,
    )  # fmt: skip
    done(path.stat().st_size - seen, path.name)
    return result


def _attach_chat_lorebook(result: ImportResult, books: dict[str, Lorebook]) -> None:
    """A chat's own World Info book (chat_metadata.world_info) goes with the chat."""
    if result.status == "imported" and result.object.metadata.get("world_info") in books:
        result.object.lorebooks.add(books[result.object.metadata["world_info"]])


def _import_group(path, base, user, by_stem, report, listed, done, books, skip_broken_lines) -> None:
    name = _rel(path, base)
    try:
        group = json_loads(
            read_limited(path, limit=settings.RPCHAT["MAX_CARD_BYTES"], setting="RPCHAT_MAX_CARD_BYTES")
        )
    except (CardError, ValueError) as exc:
        report.add("chats", ImportResult(name, "failed", f"the group file cannot be read: {exc}"))
        return
    if not isinstance(group, dict) or not isinstance(group.get("members"), list):
        report.add("chats", ImportResult(name, "failed", "the group file has no members list"))
        return
    avatars = {
        m: by_stem[Path(m).stem] for m in group["members"] if isinstance(m, str) and Path(m).stem in by_stem
    }
    members = list(dict.fromkeys(avatars.values()))
    chat_ids = [c for c in (group.get("chats") or [group.get("chat_id")]) if isinstance(c, str) and c]
    for chat_id in chat_ids:
        listed.add(chat_id)
        chat_path = base / "group chats" / f"{chat_id}.jsonl"
        if not chat_path.is_file():
            continue
        if not members:
            report.add(
                "chats",
                ImportResult(_rel(chat_path, base), "failed", f"none of the members of {name} was imported"),
            )
            done(chat_path.stat().st_size, chat_path.name)
            continue
        result = _chat_file(
            chat_path, base, user, members[0], done,
            members=members, avatars=avatars, skip_broken_lines=skip_broken_lines,
        )  # fmt: skip
        _attach_chat_lorebook(result, books)
        missing = [m for m in group["members"] if m not in avatars]
        if missing and result.status == "imported":
            result.warnings.append(f"members without an imported card: {', '.join(map(str, missing))}")
        title = group.get("name")
        if result.status == "imported" and isinstance(title, str) and title and not unstorable_text(title):
            ChatSession.objects.filter(pk=result.object.pk).update(title=title[:200])
        if result.status == "imported":
            _apply_group_turns(result.object, group, avatars)
        report.add("chats", result)


# SillyTavern's group_activation_strategy: natural, list, manual, pooled (rpchat has no pool: in turn).
GROUP_STRATEGIES = {0: "natural", 1: "list", 2: "manual", 3: "list"}


def _apply_group_turns(session: ChatSession, group: dict, avatars: dict) -> None:
    """The group's turn order and its disabled (muted) members."""
    strategy = group.get("activation_strategy")
    if strategy in GROUP_STRATEGIES and not isinstance(strategy, bool):
        ChatSession.objects.filter(pk=session.pk).update(turn_strategy=GROUP_STRATEGIES[strategy])
    disabled = group.get("disabled_members")
    muted = (
        {avatars[m].pk for m in disabled if isinstance(m, str) and m in avatars}
        if isinstance(disabled, list)
        else set()
    )
    if muted:
        ChatMember.objects.filter(session=session, character_id__in=muted).update(muted=True)


def _import_personas(base: Path, user, report: FolderReport) -> None:
    """SillyTavern personas (settings.json: power_user.personas and persona_descriptions)."""
    path = base / "settings.json"
    if not path.is_file():
        return
    try:
        data = json_loads(
            read_limited(path, limit=settings.RPCHAT["MAX_CARD_BYTES"], setting="RPCHAT_MAX_CARD_BYTES")
        )
    except (CardError, ValueError) as exc:
        report.add("personas", ImportResult("settings.json", "failed", f"cannot be read: {exc}"))
        return
    power = data.get("power_user") if isinstance(data, dict) else None
    personas = power.get("personas") if isinstance(power, dict) else None
    if not isinstance(personas, dict):
        return
    descriptions = power.get("persona_descriptions") or {}
    default = power.get("default_persona")
    for avatar, given in personas.items():
        label = f"settings.json: persona {given}"
        if not isinstance(given, str) or not given.strip():
            report.add("personas", ImportResult(label, "failed", "the persona has no name"))
            continue
        name = given.strip()[:100]
        about = descriptions.get(avatar) if isinstance(descriptions, dict) else None
        description = about.get("description") if isinstance(about, dict) else ""
        if why := unstorable_text([name, description]):
            report.add("personas", ImportResult(label, "failed", f"the persona cannot be imported: {why}"))
            continue
        if Persona.objects.filter(user=user, name=name).exists():
            report.add("personas", ImportResult(label, "skipped", "a persona with this name exists"))
            continue
        persona = Persona(
            user=user,
            name=name,
            description=description if isinstance(description, str) else "",
            is_default=avatar == default and not Persona.objects.filter(user=user, is_default=True).exists(),
        )
        warnings = _persona_avatar(persona, base / "User Avatars" / avatar)
        persona.save()
        report.add("personas", ImportResult(label, "imported", "", persona, warnings))


def _persona_avatar(persona: Persona, path: Path) -> list[str]:
    if not path.is_file():
        return []
    try:
        data = read_limited(path, limit=settings.RPCHAT["MAX_CARD_BYTES"], setting="RPCHAT_MAX_CARD_BYTES")
        open_image(data)
    except (CardError, ImageRejected) as exc:
        return [f"its picture {path.name} was not used: {exc}"]
    persona.avatar.save(f"{persona.code}{path.suffix.lower()}", ContentFile(data), save=False)
    return []
