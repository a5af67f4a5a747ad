"""The characters app's hot queries, checked by `manage.py explain_queries` (see core.hot_queries)."""

from django.conf import settings
from django.db.models import Count

from core.hot_queries import admin_changelist_queryset, hot_query

from .models import Character, Lorebook, LorebookEntry
from .search import gallery_characters


def _largest_owner():
    """The user who owns the most characters: the gallery that has the most to page through."""
    from django.contrib.auth import get_user_model

    row = Character.objects.values("owner").annotate(n=Count("id")).order_by("-n").first()
    if row is None or row["owner"] is None:
        return None
    return get_user_model().objects.get(pk=row["owner"])


def _smallest_owner():
    """A user who owns the fewest characters: on a big instance, the gallery that once walked past
    every other user's private characters to find their few."""
    from django.contrib.auth import get_user_model

    row = (
        Character.objects.exclude(owner=None)
        .values("owner")
        .annotate(n=Count("id"))
        .order_by("n", "owner")
        .first()
    )
    return None if row is None else get_user_model().objects.get(pk=row["owner"])


def _gallery(*, owner=_largest_owner, **filters):
    user = owner()
    if user is None:
        return None
    size = settings.RPCHAT["GALLERY_PAGE_SIZE"]
    return gallery_characters(user=user, **filters)[: size + 1]


# GalleryQuery reads its two branches in index order, each cut at the page; what is sorted is those
# few rows (2 x (offset + page size + 1) at most), never the table.
PAGE_SORT = "the outer query sorts only the rows of its two LIMITed, index-ordered branches"


@hot_query("gallery: first page", used_by="characters.views.gallery", allow_sort=PAGE_SORT)
def gallery_first_page():
    return _gallery()


@hot_query(
    "gallery: a user with few characters",
    used_by="characters.views.gallery (characters.search.GalleryQuery)",
    allow_sort=PAGE_SORT,
)
def gallery_few_characters():
    return _gallery(owner=_smallest_owner)


@hot_query(
    "gallery: search by name",
    used_by="characters.views.gallery ?q=",
    allow_scan="a substring (icontains) cannot use a b-tree index; full-text search replaces it",
    allow_sort="the matches of a substring search are sorted by name",
)
def gallery_search():
    return _gallery(q="ar")


@hot_query("gallery: filter by label", used_by="characters.views.gallery ?label=", allow_sort=PAGE_SORT)
def gallery_label():
    label = Character.objects.exclude(label="").values_list("label", flat=True).first()
    return _gallery(label=label) if label else None


@hot_query(
    "gallery: filter by tag",
    used_by="characters.views.gallery ?tag=",
    allow_sort="the tag's characters are found through the tag table, then sorted by name",
)
def gallery_tag():
    tag = Character.tags.through.objects.values_list("tag__name", flat=True).first()
    return _gallery(tag=tag) if tag else None


@hot_query("lorebook: a book's enabled entries", used_by="prompt building (lore_book_enabled_order_idx)")
def lorebook_entries():
    book = Lorebook.objects.annotate(n=Count("entries")).order_by("-n").first()
    if book is None:
        return None
    return LorebookEntry.objects.filter(lorebook=book, enabled=True).order_by("insertion_order", "id")


@hot_query("admin: characters list", used_by="CharacterAdmin changelist")
def admin_characters():
    return admin_changelist_queryset(Character)
