import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from . import stpresets
from .models import Persona, Preset, UserPreferences
from .stpresets import PresetError


def persona_save(*, persona: Persona, picture: bytes | None = None, remove_picture: bool = False) -> Persona:
    """Save a persona; making it the default takes the default from the user's others. `picture`:
    a portrait already checked and re-encoded (core.images.portrait_from_upload)."""
    old = persona.avatar.name if persona.avatar else ""
    if picture is not None:
        persona.avatar.save(f"{persona.code}.png", ContentFile(picture), save=False)
    elif remove_picture:
        persona.avatar = ""
    with transaction.atomic():
        if persona.is_default:
            Persona.objects.filter(user=persona.user, is_default=True).exclude(pk=persona.pk).update(
                is_default=False
            )
        persona.save()
    if old and old != (persona.avatar.name if persona.avatar else ""):
        persona.avatar.storage.delete(old)
    return persona


# --- SillyTavern presets --------------------------------------------------------------------------


@dataclass
class PresetImportResult:
    """What happened to one preset file: imported, skipped (and why) or failed (and why)."""

    file_name: str
    status: str  # imported | skipped | failed
    reason: str = ""
    object: Preset | None = None
    presets: list[Preset] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.file_name}: {self.status}" + (f" ({self.reason})" if self.reason else "")

    def as_json(self) -> dict:
        return {"file": self.file_name, "status": self.status, "reason": self.reason, "warnings": []}


def _read_limited(source: bytes | Path | BinaryIO, limit: int) -> bytes:
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, (str, Path)):
        if os.stat(source).st_size > limit:
            raise PresetError(f"the file is larger than {limit:,} bytes (RPCHAT_MAX_CARD_JSON_BYTES)")
        data = Path(source).read_bytes()
    else:
        data = source.read(limit + 1)
    if len(data) > limit:
        raise PresetError(f"the file is larger than {limit:,} bytes (RPCHAT_MAX_CARD_JSON_BYTES)")
    return data


def preset_import(
    *, source: bytes | Path | BinaryIO, file_name: str, owner, kind: str | None = None
) -> PresetImportResult:
    """Import a SillyTavern preset file for `owner` (None: the instance's), its kind found from its
    keys unless `kind` is given (a folder of a user's data says it). A file holding several presets
    (SillyTavern's master export) imports each. The same file again is a skip; a changed file with
    the name of one already here replaces that one's settings, as SillyTavern does."""
    opts = settings.RPCHAT
    try:
        data = _read_limited(source, opts["MAX_CARD_JSON_BYTES"])
        obj = stpresets.json_object(data)
        stem = Path(file_name).stem
        if kind is None and stpresets.is_master_export(obj):
            parsed = [
                stpresets.parse_preset(
                    obj[section], kind=k, file_stem=stem, max_chars=opts["MAX_CARD_FIELD_CHARS"]
                )
                for section, k in MASTER_SECTIONS
                if isinstance(obj.get(section), dict)
            ]
        else:
            parsed = [
                stpresets.parse_preset(obj, kind=kind, file_stem=stem, max_chars=opts["MAX_CARD_FIELD_CHARS"])
            ]
    except PresetError as exc:
        return PresetImportResult(file_name, "failed", str(exc))
    parsed += [migrated for p in parsed if (migrated := _migrated_system_prompt(p))]
    digest = hashlib.sha256(data).hexdigest()
    done: list[tuple[Preset, str]] = []
    with transaction.atomic():
        for preset in parsed:
            done.append(_preset_save(preset, owner=owner, digest=digest if len(parsed) == 1 else ""))
    saved = [p for p, status in done if status != "skipped"]
    words = [
        f"{stpresets.KIND_LABELS[p.kind]} “{p.name}”" + (" (replaced)" if s == "replaced" else "")
        for p, s in done
    ]
    if not saved:
        return PresetImportResult(
            file_name, "skipped", "already imported: " + ", ".join(words), done[0][0], []
        )
    return PresetImportResult(file_name, "imported", ", ".join(words), saved[0], saved)


def _migrated_system_prompt(parsed: stpresets.ParsedPreset) -> stpresets.ParsedPreset | None:
    """Instruct templates from before SillyTavern 1.12.6 carry their system prompt; SillyTavern moves
    it into a system prompt named "[Migrated] <template>", and so does rpchat."""
    text = parsed.data.get("system_prompt")
    if parsed.kind != stpresets.INSTRUCT or not isinstance(text, str) or not text.strip():
        return None
    name = f"[Migrated] {parsed.name}"[:200]
    return stpresets.ParsedPreset(kind=stpresets.SYSPROMPT, name=name, data={"name": name, "content": text})


# SillyTavern's master export: its section names and the kind each holds.
MASTER_SECTIONS = (
    ("instruct", "instruct"),
    ("context", "context"),
    ("sysprompt", "sysprompt"),
    ("preset", "textgen"),
)


def _preset_save(parsed: stpresets.ParsedPreset, *, owner, digest: str) -> tuple[Preset, str]:
    existing = (
        Preset.objects.select_for_update().filter(owner=owner, kind=parsed.kind, name=parsed.name).first()
    )
    if existing is not None:
        if (digest and existing.source_hash == digest) or existing.data == parsed.data:
            return existing, "skipped"
        existing.data = parsed.data
        existing.source_hash = digest
        existing.save(update_fields=["data", "source_hash", "updated_at"])
        return existing, "replaced"
    try:
        with transaction.atomic():
            preset = Preset.objects.create(
                owner=owner, kind=parsed.kind, name=parsed.name, data=parsed.data, source_hash=digest
            )
    except IntegrityError:  # the same name imported at the same moment (another tab, another worker)
        return _preset_save(parsed, owner=owner, digest=digest)
    return preset, "imported"


def preset_export(*, preset: Preset) -> bytes:
    """The preset as the SillyTavern file it came from (its current name and settings)."""
    return stpresets.export_json(preset.data, name=preset.name, kind=preset.kind)


def preferences_save(*, user, **changes) -> UserPreferences:
    """Change some of the user's preferences (theme=, demo_banner_dismissed=) on every device."""
    prefs, _ = UserPreferences.objects.update_or_create(user_id=user.pk, defaults=changes)
    user.preferences = prefs  # this request's user sees the change too
    return prefs
