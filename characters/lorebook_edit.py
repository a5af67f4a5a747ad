"""Writing lorebooks in the pages: books and their entries, saved one change at a time.

Every save names the version its form was made from and is refused when the row has moved on since
(another tab, another device), so an edit never silently overwrites one the user did not see. A book
is copied with one bulk write of its entries, however many there are.
"""

from __future__ import annotations

from cachalot import api as cachalot_api
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from . import revisions
from .models import Character, Lorebook, LorebookEntry

# SillyTavern's World Info positions (the entry's `position` number, kept in extensions); the
# column keeps the two a V2 card can say.
POSITIONS = (
    (0, "Before the character"),
    (1, "After the character"),
    (2, "Before the author's note"),
    (3, "After the author's note"),
    (4, "In the chat, at a depth"),
    (5, "Before the example messages"),
    (6, "After the example messages"),
)
ROLES = ((0, "System"), (1, "User"), (2, "Assistant"))


class StaleEdit(Exception):
    """The row changed after the form was made; `current` is its version now."""

    def __init__(self, current: int):
        super().__init__("changed since the form was opened")
        self.current = current


def editable_lorebooks(user):
    """Books `user` may change: their global books and the books of their own characters; staff
    may change every book."""
    books = Lorebook.objects.all()
    if user.is_staff:
        return books
    return books.filter(Q(owner=user) | Q(character__owner=user))


def editable_characters(user):
    """Characters whose World Info `user` may set."""
    characters = Character.objects.filter(deleted_at__isnull=True)
    return characters if user.is_staff else characters.filter(owner=user)


@transaction.atomic
def world_info_set(*, character: Character, books, author=None) -> None:
    """The global books `character` brings into every chat; kept as a revision of the character."""
    before = revisions.snapshot(character)
    character.lorebooks.set(books)
    # The character page is cached by its updated_at: it shows which books are attached.
    Character.objects.filter(pk=character.pk).update(updated_at=timezone.now())
    revisions.record(character, before=before, author=author)


def _touch(book: Lorebook) -> None:
    # An UPDATE through the ORM, so cachalot forgets the lorebook queries cached before it.
    Lorebook.objects.filter(pk=book.pk).update(updated_at=timezone.now())


@transaction.atomic
def book_save(*, book: Lorebook, expected_version: int | None, author=None) -> Lorebook:
    """Create `book` (no pk) or save its settings; refused when `expected_version` is stale.
    A change is kept as a revision (characters/revisions.py)."""
    if book.pk is None:
        book.version = 1
        book.save()
        return book
    current = Lorebook.objects.select_for_update().values_list("version", flat=True).get(pk=book.pk)
    if expected_version != current:
        raise StaleEdit(current)
    before = revisions.snapshot(book, entry_ids=[])
    book.version = current + 1
    book.save()
    revisions.record(book, before=before, author=author)
    return book


@transaction.atomic
def book_duplicate(*, book: Lorebook, owner) -> Lorebook:
    """A global copy of `book` owned by `owner`, its entries written in one bulk insert."""
    copy = Lorebook.objects.create(
        owner=owner,
        name=f"Copy of {book.name or book}"[:200],
        description=book.description,
        scan_depth=book.scan_depth,
        token_budget=book.token_budget,
        recursive_scanning=book.recursive_scanning,
        extensions=book.extensions,
        book_extra={k: v for k, v in book.book_extra.items() if k != "source_hash"},
    )
    _copy_entries(source=book, target=copy)
    return copy


def _copy_entries(*, source: Lorebook, target: Lorebook) -> None:
    """Every entry of `source` into `target` in one INSERT ... SELECT: one statement for any size
    of book, where bulk_create needs one per 49 rows on SQLite (its 999-parameter limit)."""
    columns = [
        f.column
        for f in LorebookEntry._meta.concrete_fields
        if f.attname not in ("id", "lorebook_id", "version")
    ]
    quote = connection.ops.quote_name
    names = ", ".join(quote(c) for c in columns)
    table = quote(LorebookEntry._meta.db_table)
    book_column = quote(LorebookEntry._meta.get_field("lorebook").column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({book_column}, {quote('version')}, {names}) "  # noqa: S608 - model names
            f"SELECT %s, 1, {names} FROM {table} WHERE {book_column} = %s",
            [target.pk, source.pk],
        )
    # Written past the ORM: tell cachalot the table changed.
    cachalot_api.invalidate(LorebookEntry)


def book_delete(*, book: Lorebook) -> None:
    book.delete()


@transaction.atomic
def entry_save(*, entry: LorebookEntry, expected_version: int | None, author=None) -> LorebookEntry:
    """Create `entry` (no pk) or save it; refused when `expected_version` is stale or the book is
    full. The change is kept as a revision of the book holding only this entry."""
    book = entry.lorebook
    before = revisions.snapshot(book, entry_ids=[entry.pk] if entry.pk else [])
    if entry.pk is None:
        limit = settings.RPCHAT["MAX_LOREBOOK_ENTRIES"]
        if LorebookEntry.objects.filter(lorebook=book).count() >= limit:
            raise ValueError(f"The lorebook already has {limit:,} entries, the most one may have.")
        entry.version = 1
        entry.save()
    else:
        current = LorebookEntry.objects.select_for_update().values_list("version", flat=True).get(pk=entry.pk)
        if expected_version != current:
            raise StaleEdit(current)
        entry.version = current + 1
        entry.save()
    _touch(book)
    revisions.record(book, before=before, author=author, entry_ids=[entry.pk])
    return entry


@transaction.atomic
def entry_delete(*, entry: LorebookEntry, author=None) -> None:
    before = revisions.snapshot(entry.lorebook, entry_ids=[entry.pk])
    entry.delete()
    _touch(entry.lorebook)
    revisions.record(entry.lorebook, before=before, author=author)


def entries_page_queryset(book: Lorebook, *, q: str, sort: str):
    """The book's entries for the editor's list, filtered by `q` (title, keys or content)."""
    entries = LorebookEntry.objects.filter(lorebook=book)
    if q:
        entries = entries.filter(
            Q(comment__icontains=q) | Q(name__icontains=q) | Q(keys__icontains=q) | Q(content__icontains=q)
        )
    order = {
        "title": ("comment", "name", "id"),
        "newest": ("-id",),
    }.get(sort, ("insertion_order", "id"))
    return entries.order_by(*order)
