"""Full-text search over the characters a user may see, the same on SQLite and PostgreSQL.

SQLite matches in the FTS5 table `characters_character_fts`, PostgreSQL through the GIN index
`character_text_fts_idx` (migration 0003_character_search). Results are ranked: a match in the
name counts most, then the creator, then the card text.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Substr
from django.utils.safestring import SafeString

from core.databases import mapped_reads
from core.search import Term, fts5_expression, highlight, parse_query, pg_tsquery

from .models import Character, Tag

FIELDS = ("name", "nickname", "creator", "description", "scenario", "creator_notes")
# The indexed expression of character_text_fts_idx; a query must repeat it exactly.
PG_DOCUMENT = "to_tsvector('simple'::regconfig, " + " || ' ' || ".join(FIELDS) + ")"
# bm25 column weights on SQLite, in FIELDS order; ts_rank weight classes on PostgreSQL.
SQLITE_WEIGHTS = "10.0, 10.0, 3.0, 1.0, 1.0, 0.5"
PG_RANKED = (
    "setweight(to_tsvector('simple', name || ' ' || nickname), 'A') || "
    "setweight(to_tsvector('simple', creator), 'B') || "
    "setweight(to_tsvector('simple', description || ' ' || scenario || ' ' || creator_notes), 'C')"
)
MAX_LIMIT = 50
# A result's snippet is cut from the description's first this many characters: a list of results
# never reads a whole card.
SNIPPET_SOURCE_CHARS = 10_000


@dataclass(frozen=True)
class CharacterHit:
    code: uuid.UUID
    name: str
    label: str
    has_thumbnail: bool
    snippet: SafeString


def matching_ids(terms: list[Term]) -> RawSQL:
    """A subquery of the ids of characters matching `terms`, for `id__in` (visibility not applied)."""
    if connection.vendor == "postgresql":
        tsquery, params = pg_tsquery(terms)
        # PG_DOCUMENT and the tsquery's SQL are ours; the search terms are parameters.
        return RawSQL(f"SELECT id FROM characters_character WHERE {PG_DOCUMENT} @@ {tsquery}", params)  # noqa: S608, S611
    return RawSQL(
        "SELECT rowid FROM characters_character_fts WHERE characters_character_fts MATCH %s",
        [fts5_expression(terms)],
    )


def text_filter(query: str) -> Q | None:
    """The gallery's `q`: a name or nickname containing it, or card text matching it in full text."""
    query = query.strip()
    if not query:
        return None
    by_name = Q(name__icontains=query) | Q(nickname__icontains=query)
    terms = parse_query(query)
    return by_name | Q(id__in=matching_ids(terms)) if terms else by_name


def search_characters(*, user, query: str, limit: int = 10) -> list[CharacterHit]:
    """Characters `user` may see whose card matches `query`, best match first. One query."""
    terms = parse_query(query)
    if not terms:
        return []
    limit = max(1, min(limit, MAX_LIMIT))
    matching = Character.objects.visible_to(user).filter(id__in=matching_ids(terms))
    if connection.vendor == "postgresql":
        tsquery, params = pg_tsquery(terms)
        score = RawSQL(f"ts_rank({PG_RANKED}, {tsquery})", params)  # noqa: S611 - terms are parameters
        ranked = matching.annotate(score=score).order_by("-score", "name", "id")
    else:
        # bm25 is lower for better matches; it needs the MATCH in its own (correlated) query.
        score = RawSQL(  # noqa: S611 - SQLITE_WEIGHTS is ours; the expression is a parameter
            f"SELECT bm25(characters_character_fts, {SQLITE_WEIGHTS}) FROM characters_character_fts "  # noqa: S608
            "WHERE characters_character_fts MATCH %s AND rowid = characters_character.id",
            [fts5_expression(terms)],
        )
        ranked = matching.annotate(score=score).order_by("score", "name", "id")
    query_set = ranked.only("id", "code", "name", "label", "thumbnail").annotate(
        description_start=Substr("description", 1, SNIPPET_SOURCE_CHARS)
    )[:limit]
    # Ranks every matching card: 18 ms to 8 ms through a map, for a word on 11,000 cards.
    with mapped_reads(query_set.db):
        rows = list(query_set)
    return [
        CharacterHit(
            code=c.code,
            name=c.name,
            label=c.label,
            has_thumbnail=bool(c.thumbnail),
            snippet=highlight(c.description_start, terms, width=140),
        )
        for c in rows
    ]


def clean_filters(q: str = "", tag: str = "", label: str = "") -> tuple[str, str, str]:
    """The gallery's (and the API's) q, tag and label, trimmed."""
    return q.strip()[:100], tag.strip()[:60], label.strip()[:60]


class GalleryQuery:
    """The gallery's list, by name: the characters `user` may see, filtered, with the columns a
    card shows, sliced like a queryset (`gallery[offset:offset + n]` is one query). The gallery
    page, the API and explain_queries page through it.

    "Public, or mine" ordered by name cannot be read from one index: a user who owns a few of a big
    instance's characters, most of them other people's private ones, would walk past all of those.
    So the page is chosen among two index-served branches, each cut to the rows the page could need:
    the public characters by name (character_public_name_idx) and the user's own non-public ones by
    name (character_owner_name_idx), `UNION ALL` of their ids in a subquery; the outer query reads
    those few rows by primary key and orders them (at most 2 x (offset + n) rows, whatever the
    instance's size).
    """

    def __init__(self, *, user, q: str = "", tag: str = "", label: str = ""):
        self.user = user
        self.filters = {"q": q, "tag": tag, "label": label}

    def count(self) -> int:
        """How many characters the list holds (its two branches are disjoint): for a page past
        the end only, which must say which page is the last."""
        return sum(branch.count() for branch in self._branches(None))

    def _branches(self, limit: int | None) -> list:
        visible = filter_characters(
            Character.objects.filter(is_active=True, deleted_at__isnull=True), **self.filters
        )
        branches = [visible.filter(visibility=Character.Visibility.PUBLIC)]
        if self.user.is_authenticated:
            branches.append(
                visible.filter(owner_id=self.user.pk).exclude(visibility=Character.Visibility.PUBLIC)
            )
        if limit is None:
            return branches
        return [b.order_by("name", "id").values("id")[:limit] for b in branches]

    def __getitem__(self, item: slice):
        if not isinstance(item, slice) or item.step is not None or item.stop is None:
            raise TypeError("GalleryQuery is read a page at a time: gallery[start:stop].")
        start = item.start or 0
        parts, params = [], []
        for branch in self._branches(item.stop):
            sql, branch_params = branch.query.sql_with_params()
            # Each branch keeps its ORDER BY and LIMIT inside a derived table: SQLite refuses them
            # directly in a member of a compound SELECT.
            parts.append(f"SELECT id FROM ({sql}) AS branch_{len(parts)}")  # noqa: S608 - Django's own SQL, parameters apart
            params += branch_params
        ids = RawSQL(" UNION ALL ".join(parts), params)  # noqa: S611 - as above
        # The filters again on the few rows found: the same rows, and cachalot, which does not
        # read table names inside RawSQL, sees every table the page depends on (a tag's).
        outer = filter_characters(Character.objects.filter(pk__in=ids), **self.filters)
        return outer.for_list().order_by("name", "id")[start : item.stop]


# The tables the gallery's cards and filters read: what they are cached by (core.table_cache), in
# the gallery page and the API's list alike.
GALLERY_TABLES = (Character, Tag, Character.tags.through)


def gallery_characters(*, user, q: str = "", tag: str = "", label: str = "") -> GalleryQuery:
    """The gallery's list (GalleryQuery): slice it for a page."""
    return GalleryQuery(user=user, q=q, tag=tag, label=label)


def filter_characters(characters, *, q: str, tag: str, label: str):
    """The gallery's and the API's filters (explain_queries checks this very queryset)."""
    if q:
        # Names and nicknames by substring, as users expect while typing; card text in full text.
        characters = characters.filter(text_filter(q))
    if tag:
        characters = characters.filter(tags__name__iexact=tag)
    if label:
        characters = characters.filter(label=label)
    return characters
