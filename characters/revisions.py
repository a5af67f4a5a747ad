"""Revisions of characters and lorebooks: every recorded save keeps who, when and only what changed.

An object (Character or Lorebook) carries `revision`, the number of its latest version. A save
names the version it edited; `snapshot(..., expected=n)` refuses it with StaleEdit when another
save came first, and `record` moves the number on with a compare-and-swap, so two tabs never both
win. Each save that changes something writes one Revision row holding only the changes:

    character: {"fields": {name: [old, new], ...}}   (tags as names, World Info books as ids, the
                                                      picture as its file name)
    lorebook:  {"fields": {...},
                "entries": {"added": {id: values}, "removed": {id: values},
                            "changed": {id: {name: [old, new]}}}}

Version 1 is the object as created or imported (no row). Any earlier version is rebuilt from the
current state by undoing newer rows, newest first; a restore writes that state back and is itself
a new revision, so nothing is ever lost to a restore either.

Usage, inside the transaction that saves the object (a lorebook editor, say):

    from characters import revisions

    with transaction.atomic():
        before = revisions.snapshot(lorebook, expected=form_revision)  # raises StaleEdit
        ...  # write the book's columns and its entries (bulk_create / bulk_update / one delete)
        revisions.record(lorebook, before=before, author=request.user)  # one INSERT, or None

    revisions.history(lorebook)                  # QuerySet of Revision, newest first, no `changes`
    revisions.restore(lorebook, number=3, author=request.user)   # a new Revision (or None)
    revisions.diffs(revision)                    # readable diffs (FieldDiff) for a template:
                                                 # {% include "characters/revision_diffs.html" %}

`snapshot(lorebook)` reads the book in one query and its entries in one more (a 1,000-entry book is
two SELECTs and the revision one INSERT). When a save touches only some entries, pass their ids:
`snapshot(book, entry_ids=[id])` before and `record(..., entry_ids=[id, new_id])` after (with the
ids of entries it created); `entry_ids=[]` reads the book's own fields only. The lorebook editor's
saves (characters/lorebook_edit.py) do this; its own `version` counters (stale forms) are not part
of a revision, and a restore moves them on. Characters go through the same functions:
characters.services.character_update is the editor's save. The History pages of both are in
characters/editor.py.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from .models import Character, Lorebook, LorebookEntry, Revision

# What a character revision tracks: the card's columns, visibility, the picture; and (read apart)
# its tags and World Info books.
CHARACTER_FIELDS = (
    "name", "nickname", "description", "personality", "scenario", "first_message",
    "alternate_greetings", "example_dialogue", "system_prompt", "post_history_instructions",
    "creator_notes", "creator", "character_version", "extensions", "visibility", "avatar", "thumbnail",
)  # fmt: skip
LOREBOOK_FIELDS = ("name", "description", "scan_depth", "token_budget", "recursive_scanning", "extensions")
# Every column of an entry but its keys and its edit counter (`version`, which the lorebook editor's
# stale-form check owns and a restore only moves forward); new columns are tracked without a change here.
ENTRY_FIELDS = tuple(
    f.attname for f in LorebookEntry._meta.concrete_fields if f.name not in ("id", "lorebook", "version")
)

LABELS = {
    "name": "Name",
    "nickname": "Nickname",
    "description": "Description",
    "personality": "Personality",
    "scenario": "Scenario",
    "first_message": "First message",
    "alternate_greetings": "Alternate greetings",
    "example_dialogue": "Example dialogue",
    "system_prompt": "System prompt",
    "post_history_instructions": "Post-history instructions",
    "creator_notes": "Creator's notes",
    "creator": "Creator",
    "character_version": "Character version",
    "extensions": "Extensions (character's note, talkativeness, ...)",
    "visibility": "Visibility",
    "avatar": "Picture",
    "tags": "Tags",
    "lorebooks": "World Info (lorebooks brought into every chat)",
    "scan_depth": "Scan depth",
    "token_budget": "Token budget",
    "recursive_scanning": "Recursive scanning",
}
# Fields never shown as a diff of their own (the picture's thumbnail follows the picture).
HIDDEN = {"thumbnail"}


class StaleEdit(Exception):
    """Another save came first: the edit was made on version `edited`, the object is at `current`."""

    def __init__(self, *, edited: int, current: int):
        super().__init__(f"edited version {edited}, but the saved version is {current}")
        self.edited = edited
        self.current = current


class RevisionGap(Exception):
    """An earlier version cannot be rebuilt: a row between it and now is missing."""


@dataclass
class Snapshot:
    """An object's tracked values at one version (entries keyed by their id as a string)."""

    model: type[models.Model]
    pk: int
    revision: int
    fields: dict[str, Any]
    entries: dict[str, dict[str, Any]] | None = None
    entry_ids: list[int] | None = None  # the entries read, when only some were


def _kind(obj_or_model) -> type[models.Model]:
    model = obj_or_model if isinstance(obj_or_model, type) else type(obj_or_model)
    if issubclass(model, Character):
        return Character
    if issubclass(model, Lorebook):
        return Lorebook
    raise TypeError(f"{model.__name__} has no revisions")


def _owner_filter(model, pk: int) -> dict:
    return {"character_id": pk} if model is Character else {"lorebook_id": pk}


def snapshot(obj: Character | Lorebook, *, expected: int | None = None, entry_ids=None) -> Snapshot:
    """The object's tracked values, its row locked for the rest of the transaction (PostgreSQL).

    With `expected`, raises StaleEdit unless the saved version is still that one.
    """
    model = _kind(obj)
    names = CHARACTER_FIELDS if model is Character else LOREBOOK_FIELDS
    row = model.objects.select_for_update().filter(pk=obj.pk).values(*names, "revision").get()
    revision = row.pop("revision")
    if expected is not None and expected != revision:
        raise StaleEdit(edited=expected, current=revision)
    # An instance saved whole after this (a ModelForm's, say) writes the number back unchanged.
    obj.revision = revision
    snap = Snapshot(model=model, pk=obj.pk, revision=revision, fields=row)
    if model is Character:
        row["tags"] = sorted_tags(
            Character.tags.through.objects.filter(character_id=obj.pk).values_list("tag__name", flat=True)
        )
        # Its World Info: the global books it brings into every chat, by id.
        row["lorebooks"] = sorted(
            Character.lorebooks.through.objects.filter(character_id=obj.pk).values_list(
                "lorebook_id", flat=True
            )
        )
    else:
        snap.entry_ids = sorted(int(i) for i in entry_ids) if entry_ids is not None else None
        snap.entries = _entries(obj.pk, snap.entry_ids)
    return snap


def sorted_tags(names) -> list[str]:
    """Tag names in the order a revision stores them (Python's, not the database's collation)."""
    return sorted(names, key=lambda name: (name.lower(), name))


def _entries(lorebook_id: int, ids: list[int] | None) -> dict[str, dict]:
    rows = LorebookEntry.objects.filter(lorebook_id=lorebook_id)
    if ids is not None:
        rows = rows.filter(pk__in=ids)
    return {str(r.pop("id")): r for r in rows.order_by("id").values("id", *ENTRY_FIELDS)}


def changes_between(before: Snapshot, after: Snapshot) -> dict:
    """What a revision stores: the changed fields (old, new) and the added, removed and changed entries."""
    changes: dict[str, Any] = {}
    fields = {k: [v, after.fields[k]] for k, v in before.fields.items() if after.fields.get(k) != v}
    if fields:
        changes["fields"] = fields
    if before.entries is not None and after.entries is not None:
        added = {k: v for k, v in after.entries.items() if k not in before.entries}
        removed = {k: v for k, v in before.entries.items() if k not in after.entries}
        changed = {}
        for k, old in before.entries.items():
            new = after.entries.get(k)
            if new is not None and new != old:
                changed[k] = {f: [old.get(f), new.get(f)] for f in ENTRY_FIELDS if old.get(f) != new.get(f)}
        entries = {
            name: part
            for name, part in (("added", added), ("removed", removed), ("changed", changed))
            if part
        }
        if entries:
            changes["entries"] = entries
    return changes


def summary_of(changes: dict) -> str:
    """A short line for the History list: which fields, how many entries."""
    parts = [LABELS.get(f, f.replace("_", " ")) for f in changes.get("fields", {}) if f not in HIDDEN]
    entries = changes.get("entries", {})
    for name in ("added", "changed", "removed"):
        n = len(entries.get(name, {}))
        if n:
            parts.append(f"{n} {'entry' if n == 1 else 'entries'} {name}")
    text = ", ".join(parts) or "no visible change"
    return text if len(text) <= 300 else text[:299] + "…"


def record(
    obj: Character | Lorebook,
    *,
    before: Snapshot,
    author=None,
    after: Snapshot | None = None,
    restored_from: int | None = None,
    entry_ids=None,
) -> Revision | None:
    """Write the revision between `before` and now (or `after`, when the caller knows it).

    `entry_ids`: which entries to read after the save, when `before` read only some and the save
    created more. Nothing changed: nothing written, None. Otherwise the object's `revision` moves from
    before.revision to the next number (StaleEdit if it moved meanwhile, which rolls back the
    transaction's writes) and one Revision row is inserted. Call inside the saving transaction.
    """
    if after is None:
        # The entries read before, or `entry_ids` (those and any the save created).
        after = snapshot(obj, entry_ids=entry_ids if entry_ids is not None else before.entry_ids)
    changes = changes_between(before, after)
    if not changes:
        return None
    number = before.revision + 1
    moved = before.model.objects.filter(pk=before.pk, revision=before.revision).update(revision=number)
    if not moved:
        current = before.model.objects.filter(pk=before.pk).values_list("revision", flat=True).first()
        raise StaleEdit(edited=before.revision, current=current or 0)
    obj.revision = number
    return Revision.objects.create(
        number=number,
        author=author if getattr(author, "is_authenticated", False) else None,
        summary=summary_of(changes),
        restored_from=restored_from,
        changes=changes,
        **_owner_filter(before.model, before.pk),
    )


def history(obj: Character | Lorebook) -> models.QuerySet:
    """The object's revisions, newest first, with their authors and without the stored changes."""
    model = _kind(obj)
    return (
        Revision.objects.filter(**_owner_filter(model, obj.pk))
        .select_related("author")
        .only("id", "number", "created_at", "summary", "restored_from", "author__id", "author__username")
        .order_by("-number")
    )


def picture_files(character: Character) -> set[str]:
    """The names of every picture file the character's revisions refer to (the pictures it had
    before), for purging them with the character: one query, reading only those keys."""
    names: set[str] = set()
    rows = Revision.objects.filter(character=character, changes__fields__has_key="avatar").values_list(
        "changes__fields__avatar", "changes__fields__thumbnail"
    )
    for pair in rows:
        for values in pair:
            names.update(v for v in values or () if isinstance(v, str) and v)
    return names


def rebuild(current: Snapshot, number: int) -> Snapshot:
    """The object as it was at version `number`, from `current` and the rows since (one query)."""
    if not 1 <= number <= current.revision:
        raise RevisionGap(f"there is no version {number}")
    rows = list(
        Revision.objects.filter(**_owner_filter(current.model, current.pk), number__gt=number)
        .order_by("-number")
        .values_list("number", "changes")
    )
    if [n for n, _ in rows] != list(range(current.revision, number, -1)):
        raise RevisionGap(f"version {number} cannot be rebuilt: a version after it was not recorded")
    target = Snapshot(
        model=current.model,
        pk=current.pk,
        revision=number,
        fields=copy.deepcopy(current.fields),
        entries=copy.deepcopy(current.entries) if current.entries is not None else None,
    )
    for _, changes in rows:
        for name, (old, _new) in changes.get("fields", {}).items():
            if name in target.fields:
                target.fields[name] = old
        if target.entries is None:
            continue
        entries = changes.get("entries", {})
        for key in entries.get("added", {}):
            target.entries.pop(key, None)
        for key, values in entries.get("removed", {}).items():
            target.entries[key] = copy.deepcopy(values)
        for key, fields in entries.get("changed", {}).items():
            if key in target.entries:
                for name, (old, _new) in fields.items():
                    target.entries[key][name] = old
    return target


def restore(obj: Character | Lorebook, *, number: int, author=None) -> Revision | None:
    """Bring version `number` back as a new revision (None when it equals the current one)."""
    with transaction.atomic():
        current = snapshot(obj)
        target = rebuild(current, number)
        if current.model is Character:
            _apply_character(current, target)
        else:
            _apply_lorebook(current, target)
        target.revision = current.revision
        return record(obj, before=current, after=target, author=author, restored_from=number)


def _apply_character(current: Snapshot, target: Snapshot) -> None:
    from .services import tags_for  # services saves through this module

    columns = {
        k: v
        for k, v in target.fields.items()
        if k not in ("tags", "lorebooks") and current.fields.get(k) != v
    }
    Character.objects.filter(pk=current.pk).update(**columns, updated_at=timezone.now())
    if target.fields["tags"] != current.fields["tags"]:
        Character.tags.through.objects.filter(character_id=current.pk).delete()
        Character.tags.through.objects.bulk_create(
            Character.tags.through(character_id=current.pk, tag_id=t.pk)
            for t in tags_for(target.fields["tags"])
        )
    if target.fields.get("lorebooks", []) != current.fields.get("lorebooks", []):
        # Books deleted since stay out.
        Character.lorebooks.through.objects.filter(character_id=current.pk).delete()
        Character.lorebooks.through.objects.bulk_create(
            Character.lorebooks.through(character_id=current.pk, lorebook_id=pk)
            for pk in Lorebook.objects.filter(pk__in=target.fields.get("lorebooks", [])).values_list(
                "pk", flat=True
            )
        )


def _apply_lorebook(current: Snapshot, target: Snapshot) -> None:
    columns = {k: v for k, v in target.fields.items() if current.fields.get(k) != v}
    # The editor's forms opened before the restore are stale now: move their counters on.
    Lorebook.objects.filter(pk=current.pk).update(
        **columns, updated_at=timezone.now(), version=models.F("version") + 1
    )
    gone = [int(k) for k in current.entries if k not in target.entries]
    if gone:
        # One DELETE, without the per-entry signal (it touches updated_at, done above).
        rows = LorebookEntry.objects.filter(lorebook_id=current.pk, pk__in=gone)
        rows._raw_delete(rows.db)
    # Entries deleted since come back under their old ids (never reused), so the history still fits.
    back = [
        LorebookEntry(id=int(k), lorebook_id=current.pk, **values)
        for k, values in target.entries.items()
        if k not in current.entries
    ]
    LorebookEntry.objects.bulk_create(back, batch_size=500)
    changed, columns = [], set()
    for k, values in target.entries.items():
        now = current.entries.get(k)
        if now is not None and now != values:
            changed.append(LorebookEntry(id=int(k), lorebook_id=current.pk, **values))
            columns.update(f for f in ENTRY_FIELDS if now.get(f) != values.get(f))
    if changed:
        # Only the columns that differ: Django builds a CASE per column and row.
        LorebookEntry.objects.bulk_update(changed, sorted(columns), batch_size=500)
        LorebookEntry.objects.filter(pk__in=[e.pk for e in changed]).update(version=models.F("version") + 1)


# --- readable diffs ---------------------------------------------------------------------------------

# Past this many words on either side of a change, the diff shows the two texts whole instead of
# matching words (difflib's matching is quadratic at worst).
DIFF_WORDS = 2000
_WORD = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass
class FieldDiff:
    """One changed field: its label and the pieces to show, each (op, text) with op in
    "same", "del", "ins" (a template shows "del" struck out and "ins" underlined)."""

    label: str
    pieces: list[tuple[str, str]] = field(default_factory=list)
    old: str = ""
    new: str = ""


def as_text(value: Any) -> str:
    """A stored value as the text a diff compares: lists one item a paragraph, objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "\n\n".join(f"{i}. {v}" for i, v in enumerate(value, 1))
    return json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True)


def text_diff(old: str, new: str) -> list[tuple[str, str]]:
    """Word-level pieces turning `old` into `new`; bounded: shared ends are cut off in one pass
    and a middle longer than DIFF_WORDS words on either side is shown as removed then added."""
    a, b = _WORD.findall(old), _WORD.findall(new)
    start = 0
    while start < len(a) and start < len(b) and a[start] == b[start]:
        start += 1
    end = 0
    while end < len(a) - start and end < len(b) - start and a[-1 - end] == b[-1 - end]:
        end += 1
    head, tail = "".join(a[:start]), "".join(a[len(a) - end :]) if end else ""
    mid_a, mid_b = a[start : len(a) - end], b[start : len(b) - end]
    pieces: list[tuple[str, str]] = [("same", head)] if head else []
    if len(mid_a) > DIFF_WORDS or len(mid_b) > DIFF_WORDS:
        pieces += [("del", "".join(mid_a)), ("ins", "".join(mid_b))]
    else:
        matcher = SequenceMatcher(None, mid_a, mid_b, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                pieces.append(("same", "".join(mid_a[i1:i2])))
                continue
            if i2 > i1:
                pieces.append(("del", "".join(mid_a[i1:i2])))
            if j2 > j1:
                pieces.append(("ins", "".join(mid_b[j1:j2])))
    if tail:
        pieces.append(("same", tail))
    return [(op, text) for op, text in pieces if text]


def diffs(revision: Revision, *, book_names: dict[int, str] | None = None) -> list[FieldDiff]:
    """The revision's changes as readable diffs: one per field, then one per entry of a lorebook.
    `book_names` names World Info books by id (see book_ids)."""
    book_names = book_names or {}
    changes = revision.changes or {}
    out = []
    for name, (old, new) in changes.get("fields", {}).items():
        if name in HIDDEN:
            continue
        if name == "avatar":
            out.append(
                FieldDiff(LABELS["avatar"], [("ins", "A new picture.")] if new else [("del", "Removed.")])
            )
            continue
        if name == "lorebooks":  # a set of books: which went, which came
            gone = [
                ("del", f"{book_names.get(pk, f'book #{pk}')} ") for pk in old or () if pk not in (new or ())
            ]
            came = [
                ("ins", f"{book_names.get(pk, f'book #{pk}')} ") for pk in new or () if pk not in (old or ())
            ]
            out.append(FieldDiff(LABELS[name], gone + came))
            continue
        old_text, new_text = as_text(old), as_text(new)
        out.append(FieldDiff(LABELS.get(name, name), text_diff(old_text, new_text), old_text, new_text))
    entries = changes.get("entries", {})
    for key, values in entries.get("added", {}).items():
        out.append(
            FieldDiff(f"Entry added: {_entry_title(values, key)}", [("ins", as_text(values.get("content")))])
        )
    for key, values in entries.get("removed", {}).items():
        out.append(
            FieldDiff(
                f"Entry removed: {_entry_title(values, key)}", [("del", as_text(values.get("content")))]
            )
        )
    for key, fields in entries.get("changed", {}).items():
        for name, (old, new) in fields.items():
            out.append(
                FieldDiff(f"Entry {key}: {name.replace('_', ' ')}", text_diff(as_text(old), as_text(new)))
            )
    return out


def book_ids(revision: Revision) -> set[int]:
    """The World Info books a character revision names, to look their names up in one query."""
    old, new = (revision.changes or {}).get("fields", {}).get("lorebooks", [[], []])
    return {pk for pk in [*(old or ()), *(new or ())] if isinstance(pk, int)}


def _entry_title(values: dict, key: str) -> str:
    keys = values.get("keys") or []
    return values.get("name") or values.get("comment") or ", ".join(map(str, keys[:3])) or f"#{key}"
