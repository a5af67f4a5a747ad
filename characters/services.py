"""Writes on characters: the editor's create, update and duplicate, avatars and thumbnails, card
import and export, lorebook import and export."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from PIL import Image, ImageOps

from core.images import ImageRejected, open_image

from . import cards, lorekeys, revisions
from .cards import CardError
from .models import Character, Lorebook, LorebookEntry, Revision, Tag

# The gallery's picture: the card's 2:3 frame, large enough for a gallery card on a phone's
# high-density screen, as WebP (a drawn or painted portrait is 10 to 40 KB).
THUMBNAIL_SIZE = (300, 450)
THUMBNAIL_SUFFIX = "-2x3.webp"
# A current thumbnail's stored name (storage may add a random part before the extension).
_CURRENT_THUMBNAIL = re.compile(r"-2x3(_[A-Za-z0-9]+)?\.webp$")
# The picture of an exported card whose character has none (SillyTavern's own size).
PLACEHOLDER_SIZE = (400, 600)

ENTRY_ATTRS = (
    "uid", "name", "comment", "keys", "secondary_keys", "content", "enabled", "constant", "selective",
    "selective_logic", "case_sensitive", "use_regex", "insertion_order", "priority", "position",
    "extensions",
)  # fmt: skip


def thumbnail_of(image: Image.Image) -> bytes:
    """The picture gallery cards, chat lists and messages show: cropped to 2:3 around the middle
    across and the upper part down (where a portrait's face is), THUMBNAIL_SIZE, WebP."""
    thumb = image.convert("RGBA") if image.mode not in ("RGB", "RGBA") else image
    thumb = ImageOps.fit(thumb, THUMBNAIL_SIZE, method=Image.Resampling.LANCZOS, centering=(0.5, 0.3))
    buffer = io.BytesIO()
    thumb.save(buffer, format="WEBP", quality=82, method=4)
    return buffer.getvalue()


def thumbnail_is_current(character: Character) -> bool:
    """Whether the stored thumbnail was made at today's size (older ones were 128 px squares)."""
    return not character.avatar or bool(_CURRENT_THUMBNAIL.search(character.thumbnail.name or ""))


def character_set_avatar(*, character: Character, data: bytes, save: bool = True) -> None:
    """Store `data` as the avatar and make the thumbnail now, so no request ever decodes a PNG."""
    image = open_image(data)
    character.avatar.save(f"{character.code}.png", ContentFile(data), save=False)
    character.thumbnail.save(
        f"{character.code}{THUMBNAIL_SUFFIX}", ContentFile(thumbnail_of(image)), save=False
    )
    if save:
        character.save(update_fields=["avatar", "thumbnail", "updated_at"])


def character_refresh_thumbnail(*, character: Character) -> bool:
    """Make the thumbnail again from the stored avatar, at today's size; False when the avatar
    file is missing or unreadable (the old thumbnail then stays)."""
    try:
        with character.avatar.open("rb") as file:
            image = open_image(file.read())
    except (FileNotFoundError, ImageRejected):
        return False
    old = character.thumbnail.name
    character.thumbnail.save(
        f"{character.code}{THUMBNAIL_SUFFIX}", ContentFile(thumbnail_of(image)), save=False
    )
    Character.objects.filter(pk=character.pk).update(
        thumbnail=character.thumbnail.name, updated_at=timezone.now()
    )
    if old and old != character.thumbnail.name:
        character.thumbnail.storage.delete(old)
    return True


def _forget_files(character: Character) -> None:
    for image in (character.avatar, character.thumbnail):
        if image:
            image.storage.delete(image.name)


def character_create(*, owner, values: dict, avatar: bytes | None = None) -> Character:
    """A character written in the editor: `values` are column values and "tags" (a list of names);
    `avatar` a picture already through avatar_from_upload. Version 1, private unless told."""
    values = dict(values)
    tag_names = values.pop("tags", [])
    character = Character(owner=owner, **values)
    if avatar:
        character_set_avatar(character=character, data=avatar, save=False)
    try:
        with transaction.atomic():
            character.save()
            if tag_names:
                character.tags.add(*tags_for(tag_names))
    except BaseException:
        _forget_files(character)
        raise
    return character


def character_update(
    *, character: Character, author, values: dict, expected_revision: int | None, avatar: bytes | None = None
) -> Revision | None:
    """Save the editor's changed `values` (columns and "tags") and a new avatar, as one revision.

    Raises revisions.StaleEdit, changing nothing, when `expected_revision` (the version the user
    edited) is no longer the saved one; None is given back for expected_revision to overwrite.
    Returns the revision written, or None when nothing changed.
    """
    values = dict(values)
    if avatar:
        character_set_avatar(character=character, data=avatar, save=False)
        values["avatar"], values["thumbnail"] = character.avatar.name, character.thumbnail.name
    try:
        with transaction.atomic():
            before = revisions.snapshot(character, expected=expected_revision)
            after = revisions.Snapshot(
                model=Character, pk=character.pk, revision=before.revision, fields=dict(before.fields)
            )
            tag_names = values.pop("tags", None)
            if tag_names is not None:
                tags = tags_for(tag_names)
                after.fields["tags"] = revisions.sorted_tags(t.name for t in tags)
            after.fields.update(values)
            if revisions.changes_between(before, after):
                Character.objects.filter(pk=character.pk).update(**values, updated_at=timezone.now())
                if tag_names is not None and after.fields["tags"] != before.fields["tags"]:
                    character.tags.set(tags)
            return revisions.record(character, before=before, after=after, author=author)
    except BaseException:
        if avatar:
            _forget_files(character)
        raise


def character_duplicate(*, character: Character, owner) -> Character:
    """A private copy of `character` owned by `owner`: every field, the picture, tags and its own
    lorebook; the global lorebooks it brings along only when they are `owner`'s own."""
    name = character.name if character.owner_id != owner.pk else f"{character.name} (copy)"
    copy = Character(
        owner=owner,
        visibility=Character.Visibility.PRIVATE,
        name=name[:200],
        label=character.label,
        card_extra=character.card_extra,
        **{
            f: getattr(character, f)
            for f in revisions.CHARACTER_FIELDS
            if f not in ("name", "visibility", "avatar", "thumbnail")
        },
    )
    if character.avatar:
        try:
            with character.avatar.open("rb") as fh:
                data = fh.read()
            character_set_avatar(character=copy, data=data, save=False)
        except (FileNotFoundError, ImageRejected):
            pass  # the copy goes without the picture rather than not at all
    try:
        with transaction.atomic():
            copy.save()
            copy.tags.set(character.tags.all())
            copy.lorebooks.set(character.lorebooks.filter(owner=owner))
            book = Lorebook.objects.filter(character=character).first()
            if book is not None:
                new_book = Lorebook.objects.create(
                    owner=owner,
                    character=copy,
                    **{f: getattr(book, f) for f in revisions.LOREBOOK_FIELDS},
                    book_extra={k: v for k, v in book.book_extra.items() if k != "source_hash"},
                )
                LorebookEntry.objects.bulk_create(
                    (
                        LorebookEntry(lorebook=new_book, **e)
                        for e in book.entries.order_by("id").values(*revisions.ENTRY_FIELDS)
                    ),
                    batch_size=500,
                )
    except BaseException:
        _forget_files(copy)
        raise
    return copy


def character_soft_delete(*, character: Character) -> None:
    """Hide the character everywhere at once; `manage.py prune` purges it after the grace period."""
    Character.objects.filter(pk=character.pk).update(deleted_at=timezone.now())


def character_restore(*, character: Character) -> None:
    Character.objects.filter(pk=character.pk).update(deleted_at=None)


# --- reading files within limits ----------------------------------------------------------------


def human_size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def too_large(size: int, limit: int, setting: str) -> str:
    return f"the file is {human_size(size)}; the limit is {human_size(limit)} ({setting})"


def read_limited(source: bytes | Path | BinaryIO, *, limit: int, setting: str) -> bytes:
    """The bytes of a path, an open file or bytes, refusing anything over `limit` before reading it
    (a path or an upload knows its size) or after reading one byte past it (a stream does not)."""
    if isinstance(source, bytes):
        if len(source) > limit:
            raise CardError(too_large(len(source), limit, setting))
        return source
    if isinstance(source, (str, Path)):
        size = os.stat(source).st_size
        if size > limit:
            raise CardError(too_large(size, limit, setting))
        with open(source, "rb") as fh:
            return read_limited(fh, limit=limit, setting=setting)
    size = getattr(source, "size", None)
    if isinstance(size, int) and size > limit:
        raise CardError(too_large(size, limit, setting))
    data = source.read(limit + 1)
    if len(data) > limit:
        raise CardError(f"the file is larger than {human_size(limit)} ({setting})")
    return data


# --- card import ----------------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What happened to one file: imported, skipped (and why) or failed (and why)."""

    file_name: str
    status: str  # imported | skipped | failed
    reason: str = ""
    object: object = None
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.file_name}: {self.status}"
        if self.reason:
            text += f" ({self.reason})"
        return text

    def as_json(self) -> dict:
        return {
            "file": self.file_name,
            "status": self.status,
            "reason": self.reason,
            "warnings": self.warnings,
        }


def card_import(
    *, source: bytes | Path | BinaryIO, file_name: str, owner, public: bool = False
) -> ImportResult:
    """Import one card file (PNG, APNG, JSON or CHARX) as a character of `owner`, atomically.

    A file this owner already imported (same content hash) is skipped, so a stopped import can be
    run again. Without an owner the character belongs to the instance and is public.
    """
    try:
        data = read_limited(source, limit=settings.RPCHAT["MAX_CARD_BYTES"], setting="RPCHAT_MAX_CARD_BYTES")
    except CardError as exc:
        return ImportResult(file_name, "failed", str(exc))
    digest = hashlib.sha256(data).hexdigest()
    existing = character_imported(owner=owner, source_hash=digest)
    if existing is not None:
        return ImportResult(file_name, "skipped", f"already imported as {existing.name}", existing)
    opts = settings.RPCHAT
    try:
        card = cards.read_card(
            data,
            max_unpacked=opts["MAX_CHARX_UNPACKED_BYTES"],
            limits=cards.ReadLimits(
                json_bytes=opts["MAX_CARD_JSON_BYTES"], icon_bytes=opts["MAX_CARD_BYTES"]
            ),
        )
        cards.check_sizes(card, max_chars=opts["MAX_CARD_FIELD_CHARS"], max_tags=opts["MAX_CARD_TAGS"])
        same = character_unchanged(owner=owner, card=card)
        if same is not None:
            return ImportResult(file_name, "skipped", f"the same card as {same.name}, already here", same)
        character = _card_save(card, owner=owner, source_hash=digest, public=public or owner is None)
    except CardError as exc:
        return ImportResult(file_name, "failed", str(exc))
    except ImageRejected as exc:
        return ImportResult(file_name, "failed", f"the avatar cannot be used: {exc}")
    return ImportResult(file_name, "imported", "", character, card.warnings + _key_notes(card.book))


def _key_notes(book: cards.ParsedBook | None) -> list[str]:
    """What the import tells the owner about regex keys its replies will skip."""
    entries = [LorebookEntry(**entry.values) for entry in book.entries] if book else []
    return lorekeys.import_notes(entries)


def character_imported(*, owner, source_hash: str) -> Character | None:
    """The owner's live character imported from a file with this content hash, if any."""
    return (
        Character.objects.filter(owner=owner, source_hash=source_hash, deleted_at__isnull=True)
        .only("id", "code", "name")
        .first()
    )


# How many of the owner's characters with the card's name are compared with it.
SAME_NAME_CANDIDATES = 5


def character_unchanged(*, owner, card: cards.ParsedCard) -> Character | None:
    """The owner's character this card is an unchanged export of, if any: a card rpchat wrote
    (or any file with the same content) read back gives the same fields, tags, book and kept keys
    as the character exported again now. The avatar is not compared."""
    spec = card.card_extra.get("spec")
    if spec not in (cards.SPEC_V2, cards.SPEC_V3):
        return None
    candidates = Character.objects.filter(
        owner=owner, name=card.values["name"], deleted_at__isnull=True
    ).order_by("-id")[:SAME_NAME_CANDIDATES]
    wanted = _comparable(card)
    for character in candidates:
        again = cards.parse_card(
            cards.json_loads(cards.card_json(card_build(character=character, spec=spec)))
        )
        if _comparable(again) == wanted:
            return character
    return None


def _comparable(card: cards.ParsedCard) -> dict:
    data = dataclasses.asdict(card)
    data.pop("avatar")
    data.pop("warnings")
    return data


def _card_save(card: cards.ParsedCard, *, owner, source_hash: str, public: bool) -> Character:
    character = Character(
        owner=owner,
        visibility=Character.Visibility.PUBLIC if public else Character.Visibility.PRIVATE,
        source_hash=source_hash,
        card_extra=card.card_extra,
        **card.values,
    )
    if card.avatar:
        character_set_avatar(character=character, data=_as_png(card.avatar), save=False)
    try:
        with transaction.atomic():
            character.save()
            tags = tags_for(cards.clean_tags(card.tags))
            if tags:
                character.tags.add(*tags)
            if card.book is not None:
                lorebook_create(book=card.book, owner=owner, character=character)
    except BaseException:
        # The files were written before the rows; nothing must stay behind from a failed import.
        for image in (character.avatar, character.thumbnail):
            if image:
                image.storage.delete(image.name)
        raise
    return character


def _as_png(data: bytes) -> bytes:
    """CHARX icons and data: URLs may be JPEG or WebP; avatars are stored as PNG."""
    if data.startswith(cards.PNG_SIGNATURE):
        return data
    image = open_image(data)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def tags_for(names: list[str]) -> list[Tag]:
    """Tag rows for names, matched case-insensitively, created when missing."""
    if not names:
        return []
    found = {
        t.lname: t
        for t in Tag.objects.annotate(lname=Lower("name")).filter(lname__in=[n.lower() for n in names])
    }
    tags = []
    for name in names:
        tag = found.get(name.lower())
        if tag is None:
            try:
                with transaction.atomic():
                    tag = Tag.objects.create(name=name)
            except IntegrityError:  # made by a concurrent import
                tag = Tag.objects.get(name__iexact=name)
            found[name.lower()] = tag
        tags.append(tag)
    return tags


def lorebook_create(
    *,
    book: cards.ParsedBook,
    owner,
    character: Character | None = None,
    name: str = "",
    source_hash: str = "",
) -> Lorebook:
    """A lorebook and its entries from a parsed book (a card's own book when `character` is given)."""
    limit = settings.RPCHAT["MAX_LOREBOOK_ENTRIES"]
    if len(book.entries) > limit:
        raise CardError(
            f"the lorebook has {len(book.entries):,} entries; the limit is {limit:,} (RPCHAT_MAX_LOREBOOK_ENTRIES)"
        )
    values = dict(book.values)
    if name:
        values["name"] = name
    extra = dict(book.extra)
    if source_hash:
        extra["source_hash"] = source_hash
    lorebook = Lorebook.objects.create(owner=owner, character=character, book_extra=extra, **values)
    LorebookEntry.objects.bulk_create(
        (LorebookEntry(lorebook=lorebook, entry_extra=e.extra, **e.values) for e in book.entries),
        batch_size=500,
    )
    return lorebook


# --- card export ----------------------------------------------------------------------------------


def card_values(character: Character) -> dict:
    return {f.attr: getattr(character, f.attr) for f in cards.CARD_FIELDS}


def _book_parts(lorebook: Lorebook) -> tuple[dict, dict, list[tuple[dict, dict]]]:
    values = {f.attr: getattr(lorebook, f.attr) for f in cards.BOOK_FIELDS}
    entries = [
        ({a: getattr(e, a) for a in ENTRY_ATTRS}, e.entry_extra)
        for e in lorebook.entries.order_by("id").only(*ENTRY_ATTRS, "entry_extra", "lorebook_id")
    ]
    return values, lorebook.book_extra, entries


def card_build(*, character: Character, spec: str) -> dict:
    """The character as a card object in `spec` (chara_card_v2 or chara_card_v3)."""
    lorebook = Lorebook.objects.filter(character=character).first()
    book = None
    if lorebook is not None:
        values, extra, entries = _book_parts(lorebook)
        book = cards.build_book(values=values, extra=extra, entries=entries)
    return cards.build_card(
        values=card_values(character),
        tags=[t.name for t in character.tags.all()],
        card_extra=character.card_extra,
        book=book,
        spec=spec,
    )


def card_export_json(*, character: Character) -> bytes:
    """A JSON card: V3 when the character came from a V3 card, else V2 (read by everything)."""
    spec = cards.SPEC_V3 if character.card_extra.get("spec") == cards.SPEC_V3 else cards.SPEC_V2
    return cards.card_json(card_build(character=character, spec=spec))


def card_export_png(*, character: Character) -> bytes:
    """A PNG card as SillyTavern writes one: the avatar with `chara` (V2) and `ccv3` (V3) chunks."""
    v2 = card_build(character=character, spec=cards.SPEC_V2)
    v3 = card_build(character=character, spec=cards.SPEC_V3)
    image = _avatar_png(character)
    try:
        return cards.png_with_card(image, v2=v2, v3=v3)
    except CardError:  # a damaged stored avatar: the card still goes out, on a plain picture
        return cards.png_with_card(_placeholder_png(), v2=v2, v3=v3)


def _avatar_png(character: Character) -> bytes:
    if character.avatar:
        try:
            with character.avatar.open("rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            data = b""
        if data.startswith(cards.PNG_SIGNATURE):
            return data
        if data:
            try:
                return _as_png(data)  # an avatar uploaded in another format (admin)
            except ImageRejected:
                pass
    return _placeholder_png()


def _placeholder_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", PLACEHOLDER_SIZE, (92, 99, 112)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- lorebooks ------------------------------------------------------------------------------------


def lorebook_import(*, source: bytes | Path | BinaryIO, file_name: str, owner) -> ImportResult:
    """Import a World Info, lorebook_v3 or bare character_book file as a global lorebook, atomically.

    The same file imported again by the same owner is skipped.
    """
    try:
        data = read_limited(source, limit=settings.RPCHAT["MAX_CARD_BYTES"], setting="RPCHAT_MAX_CARD_BYTES")
        digest = hashlib.sha256(data).hexdigest()
        existing = (
            Lorebook.objects.filter(owner=owner, character__isnull=True, book_extra__source_hash=digest)
            .only("id", "name")
            .first()
        )
        if existing is not None:
            return ImportResult(file_name, "skipped", f"already imported as {existing.name}", existing)
        book = cards.read_lorebook(data)
        cards.check_book_sizes(book, max_chars=settings.RPCHAT["MAX_CARD_FIELD_CHARS"])
    except CardError as exc:
        return ImportResult(file_name, "failed", str(exc))
    name = book.values["name"] or Path(file_name).stem[:200] or "Lorebook"
    with transaction.atomic():
        lorebook = lorebook_create(book=book, owner=owner, name=name, source_hash=digest)
    return ImportResult(file_name, "imported", "", lorebook, _key_notes(book))


LOREBOOK_FORMATS = ("world_info", "lorebook_v3")


def lorebook_export(*, lorebook: Lorebook, fmt: str) -> bytes:
    """A lorebook as a SillyTavern World Info file or a V3 lorebook_v3 file."""
    values, extra, entries = _book_parts(lorebook)
    if fmt == "world_info":
        obj = cards.build_world_info(values=values, extra=extra, entries=entries)
    elif fmt == "lorebook_v3":
        obj = cards.build_lorebook_v3(values=values, extra=extra, entries=entries)
    else:
        raise ValueError(f"Unknown lorebook format {fmt!r}.")
    return cards.card_json(obj)
