"""Long-term memory: pinned facts, summaries of old stretches, and recall of what fell out of the window.

Prompt building (`recall`) is cheap and deterministic, a constant number of queries whatever the
chat's length:

1. the chat's memory settings and its pinned facts (two small indexed reads);
2. when older messages fell out of the context window: the words of the newest messages (names,
   numbers and long words first, common words left out) are looked up in the full-text index the
   message search uses (FTS5 on SQLite, the tsvector table on PostgreSQL), in one statement: per
   word, the newest matching messages of this chat older than the window, a bounded number each;
3. one read of the summaries of the stretches those messages fall in.

Candidates are scored by the words they match (a word matching fewer messages weighs more) times a
recency factor; the best fit the memory share of the budget, and go into one block at a fixed
position (right after the system prompt), pinned facts first, then the rest in chat order, so the
same memories give the same text.

Summaries are written by a background task (chats/tasks.py, django-tasks) as stretches of
STRETCH messages fall out of the window, never in the request that sends a message. A failed
summary is retried later and never blocks a reply. An edit, delete, hide or swipe inside a
summarized stretch marks its summary stale (left out of prompts) and queues its rewrite.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, F, Q, Sum
from django.utils import timezone

from core.prepared import PreparedQuery
from core.search import Term, fts5_expression, pg_tsquery
from core.tokens import estimate_tokens

from .models import ChatMemory, ChatSession, Memory, Message, PinnedFact, WitnessSpan

logger = logging.getLogger(__name__)

# Messages per summarized stretch; stretches are aligned on seq (1-20, 21-40, ...) so a branch
# shares its parent's stretches up to its branch point.
STRETCH = 20
# Recall: at most this many words, and per word the newest this-many matches older than the window.
MAX_WORDS = 6
PER_WORD = 12
NEWEST_MESSAGES = 2  # the newest messages whose words are looked up
# With at most this many messages before the window they are read and matched here, not in the index.
SCAN_BELOW = 400
MIN_WORD = 3
MAX_WORD = 40
MAX_FACT_CHARS = 2000
MAX_SUMMARY_CHARS = 4000
RECALLED_MESSAGE_CHARS = 700
# Stretches one task writes before handing the rest to a task of its own.
STRETCHES_PER_TASK = 8
# Summaries are kept for the newest this-many stretches before the window (10,000 messages).
BACKLOG = 500
SUMMARY_TOKENS = 160
LOCK_KEY = "memory-lock:{}"
AGAIN_KEY = "memory-again:{}"

_WORD = re.compile(r"[^\W_]+")
# Words that carry no memory: the commonest English words and roleplay filler.
STOPWORDS = frozenset(
    """
    the and but for nor yet with from into onto over under about above after again against all
    also any are aren because been before being below between both can cannot could did does
    doing down during each few further had has have having her here hers herself him himself his
    how its itself just let like more most much must myself not now off once only other ought our
    ours ourselves out own same she should some such than that that's their theirs them
    themselves then there these they this those through too until upon very was way were what
    when where which while who whom why will with would you your yours yourself yourselves yes
    okay well really maybe still even ever never always something anything nothing everything
    someone anyone one two tell told say said says know think want see look looks looked come
    came going get got make made take took give gave back away again here there tonight today
    tomorrow yesterday right left good great little big old new long first last next just
    """.split()  # noqa: SIM905 - a list of 160 words reads better as text
)


@dataclass
class Recalled:
    """One item of the memory block, with why it is there (for the prompt inspector)."""

    kind: str  # "fact", "summary", "message"
    text: str
    tokens: int
    start_seq: int | None = None
    end_seq: int | None = None
    matched: list[str] = field(default_factory=list)
    score: float = 0.0
    recency: float = 0.0
    why: str = ""
    included: bool = True

    def as_meta(self) -> dict:
        return {
            "kind": self.kind,
            "start_seq": self.start_seq,
            "end_seq": self.end_seq,
            "matched": self.matched,
            "score": round(self.score, 3),
            "recency": round(self.recency, 3),
            "why": self.why,
            "tokens": self.tokens,
            "included": self.included,
            "preview": self.text[:200],
        }


@dataclass
class MemoryBlock:
    enabled: bool = True
    share: int = 20
    budget: int = 0
    items: list[Recalled] = field(default_factory=list)
    words: list[str] = field(default_factory=list)
    text: str = ""
    tokens: int = 0
    settings: ChatMemory | None = None

    def compose(self) -> None:
        """Choose what fits the budget (facts first, then by score) and write the block's text:
        facts, then the rest in chat order, so the same memories always give the same text."""
        spent = 0
        for item in self.items:
            if item.why == "back in the window":
                continue
            item.included = spent + item.tokens <= self.budget
            if item.included:
                spent += item.tokens
        chosen = [i for i in self.items if i.included]
        self.text, self.tokens = "", 0
        if not chosen:
            return
        facts = [i.text for i in chosen if i.kind == "fact"]
        old = sorted(
            (i for i in chosen if i.kind != "fact"), key=lambda i: (i.start_seq, i.kind != "summary")
        )
        sections = []
        if facts:
            sections.append("Facts to keep in mind:\n" + "\n".join(f"- {t}" for t in facts))
        if old:
            sections.append(
                "Earlier in this story:\n"
                + "\n".join(
                    f"- (messages {i.start_seq}–{i.end_seq}, summary) {i.text}"
                    if i.kind == "summary"
                    else f"- (message {i.start_seq}) {i.text}"
                    for i in old
                )
            )
        self.text = "[Memory]\n" + "\n\n".join(sections)
        self.tokens = estimate_tokens(self.text) + 4

    def drop_from(self, seq: int) -> bool:
        """Leave out recalled messages at or after `seq` (the history holds them); True if any."""
        dropped = False
        for item in self.items:
            if item.kind == "message" and item.included and item.start_seq >= seq:
                item.included, item.why, dropped = False, "back in the window", True
        if dropped:
            kept = [i for i in self.items if i.why != "back in the window"]
            others = [i for i in self.items if i.why == "back in the window"]
            self.items = kept
            self.compose()
            self.items = kept + others
        return dropped

    def as_meta(self) -> dict:
        return {
            "enabled": self.enabled,
            "share": self.share,
            "budget": self.budget,
            "tokens": self.tokens,
            "words": self.words,
            "items": [i.as_meta() for i in self.items],
        }


def stretch_of(seq: int) -> tuple[int, int]:
    start = ((seq - 1) // STRETCH) * STRETCH + 1
    return start, start + STRETCH - 1


def settings_and_facts(session: ChatSession) -> tuple[ChatMemory, list[tuple[str, int, int | None]]]:
    """The chat's memory settings and its pinned facts (text, tokens, seq), in one query."""
    memory_table, fact_table = ChatMemory._meta.db_table, PinnedFact._meta.db_table
    sql = (  # constant SQL: table names from the models, the chat's key bound
        f"SELECT m.enabled, m.share, f.text, f.token_count, f.seq FROM (SELECT 1 AS one) o "  # noqa: S608
        f"LEFT JOIN {memory_table} m ON m.session_id = %s "
        f"LEFT JOIN {fact_table} f ON f.session_id = %s ORDER BY f.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [session.pk, session.pk])
        rows = cursor.fetchall()
    mem = ChatMemory(session_id=session.pk)
    if rows and rows[0][0] is not None:
        mem.enabled, mem.share = bool(rows[0][0]), rows[0][1]
    facts = [(text, tokens, seq) for _, _, text, tokens, seq in rows if text is not None]
    return mem, facts


def memory_settings(session: ChatSession) -> ChatMemory:
    """The chat's memory settings (an unsaved default when it has none yet)."""
    found = ChatMemory.objects.filter(session_id=session.pk).first()
    return found or ChatMemory(session_id=session.pk)


# --- recall, at prompt building --------------------------------------------------------------------


def query_words(texts: list[str]) -> list[str]:
    """The words worth looking up from the newest messages (newest first): numbers and names
    first, the newest message's before the one before it, longer words before shorter.

    A capitalized word that does not start a sentence counts as a name. Linear in the text; at
    most MAX_WORDS, in a deterministic order.
    """
    seen: dict[str, tuple] = {}
    for t_index, whole in enumerate(texts):
        text = whole[:4000]
        for position, match in enumerate(_WORD.finditer(text)):
            word = match.group()
            lower = word.lower()
            if lower in STOPWORDS or lower in seen:
                continue
            before = text[: match.start()].rstrip(" \t\"'*_“‘(")
            sentence_start = not before or before[-1] in ".!?…:\n"
            if word.isdigit():
                if len(word) < 2 or len(word) > MAX_WORD:
                    continue
                rank = 0
            elif len(word) < MIN_WORD or len(word) > MAX_WORD:
                continue
            elif word[0].isupper() and not sentence_start:
                rank = 1  # a name, most likely
            else:
                rank = 2
            seen[lower] = (rank, t_index, -len(word), position)
    ordered = sorted(seen, key=lambda w: seen[w])
    return ordered[:MAX_WORDS]


def _sqlite_recall_sql(session_id: int, words: list[str], before_id: int) -> tuple[str, list]:
    parts, params = [], []
    for i, word in enumerate(words):
        match = f'scope : "s{session_id}" AND content : ({fts5_expression([Term(word)])})'
        parts.append(
            f"SELECT {i} AS w, id FROM (SELECT rowid AS id FROM chats_message_fts "  # noqa: S608
            "WHERE chats_message_fts MATCH %s AND rowid < %s ORDER BY rowid DESC LIMIT %s)"
        )
        params += [match, before_id, PER_WORD]
    return " UNION ALL ".join(parts), params


def _postgres_recall_sql(session_id: int, words: list[str], before_id: int) -> tuple[str, list]:
    parts, params = [], []
    for i, word in enumerate(words):
        tsquery, tparams = pg_tsquery([Term(word)])
        parts.append(
            f"(SELECT {i} AS w, message_id AS id FROM chats_message_search "  # noqa: S608
            f"WHERE document @@ ({tsquery} && %s::tsquery) AND message_id < %s "
            "ORDER BY message_id DESC LIMIT %s)"
        )
        params += [*tparams, f"'scope s{session_id}'", before_id, PER_WORD]
    return " UNION ALL ".join(parts), params


# Each candidate comes with the summary of its stretch, when there is a fresh one: no read of its own.
_SUMMARY_JOIN = (
    "LEFT JOIN chats_memory s ON s.session_id = m.session_id "
    f"AND s.start_seq = ((m.seq - 1) / {STRETCH}) * {STRETCH} + 1 AND s.status = 'written' AND s.stale = %s"
)
_SUMMARY_COLUMNS = "s.end_seq, s.text, s.token_count, s.witnesses"


def _scanned(session_id: int, words: list[str], *, before_seq: int) -> list[tuple]:
    """What _candidates finds, for a chat with few messages before the window: one read of them
    (at most SCAN_BELOW rows) and one compiled pattern over their text, cheaper there than asking
    the full-text index, whose lists for common words span every chat of the instance."""
    sql = (  # constant SQL: every value is a bound parameter
        f"SELECT m.id, m.seq, m.content, m.token_count, m.speaker, {_SUMMARY_COLUMNS} "  # noqa: S608
        f"FROM chats_message m {_SUMMARY_JOIN} "
        "WHERE m.session_id = %s AND m.seq < %s AND m.hidden = %s AND m.status <> 'error' "
        "ORDER BY m.seq DESC LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [False, session_id, before_seq, False, SCAN_BELOW])
        rows = cursor.fetchall()
    # The full-text tokenizers' words: runs of letters and digits, compared case-insensitively.
    pattern = re.compile(r"(?<![^\W_])(" + "|".join(map(re.escape, words)) + r")(?![^\W_])", re.IGNORECASE)
    index = {word: i for i, word in enumerate(words)}
    taken = [0] * len(words)
    found = []
    for row in rows:
        # casefold, as the index folds case (ſ is s); .get: what folds to no word is none of them.
        hits = {index.get(m.group(1).casefold()) for m in pattern.finditer(row[2])}
        for i in sorted(hits - {None}):
            if taken[i] < PER_WORD:
                taken[i] += 1
                found.append((i, *row))
    return found


def _candidates(session_id: int, words: list[str], *, before_id: int, before_seq: int) -> list[tuple]:
    """(word index, id, seq, content, token_count, speaker, and the end, text, tokens and witnesses
    of its stretch's fresh summary or Nones) of old messages matching each word: one query."""
    if before_seq <= SCAN_BELOW:
        return _scanned(session_id, words, before_seq=before_seq)
    build = _postgres_recall_sql if connection.vendor == "postgresql" else _sqlite_recall_sql
    hits_sql, params = build(session_id, words, before_id)
    sql = (
        f"SELECT h.w, m.id, m.seq, m.content, m.token_count, m.speaker, {_SUMMARY_COLUMNS} "  # noqa: S608
        f"FROM ({hits_sql}) h JOIN chats_message m ON m.id = h.id {_SUMMARY_JOIN} "
        "WHERE m.session_id = %s AND m.seq < %s AND m.hidden = %s AND m.status <> 'error'"
    )
    params += [False, session_id, before_seq, False]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _witnessed(spans: list[tuple[int, int | None]], seq: int) -> bool:
    return any(start <= seq and (end is None or seq < end) for start, end in spans)


def recall(
    *,
    session: ChatSession,
    character,
    settings: ChatMemory,
    facts: list[tuple[str, int, int | None]],
    limit: int,
    newest: list[str],
    window_seq: int | None,
    window_id: int | None,
    group: bool = False,
) -> MemoryBlock:
    """The memory block for a prompt whose history window starts at `window_seq` (None: nothing
    fell out of the window), at most `limit` tokens. `newest` holds the newest messages' texts
    (newest first)."""
    mem = settings
    block = MemoryBlock(enabled=mem.enabled, share=mem.share, settings=mem, budget=limit)
    items: list[Recalled] = [
        Recalled(
            kind="fact",
            text=text,
            tokens=tokens + 2,
            start_seq=seq,
            end_seq=seq,
            why="pinned",
        )
        for text, tokens, seq in facts
    ]
    if window_seq is not None and window_id is not None and window_seq > 1:
        block.words = query_words(newest)
        if block.words:
            try:
                items += _recall_old(session, character, block.words, window_seq, window_id, group)
            except DatabaseError:  # memory never stands in the way of a reply
                logger.exception("recall failed in chat %s; the prompt goes without it", session.pk)
    block.items = items
    block.compose()
    return block


def _recall_old(session, character, words, window_seq, window_id, group) -> list[Recalled]:
    rows = _candidates(session.pk, words, before_id=window_id, before_seq=window_seq)
    spans = None
    if group and character is not None:
        spans = list(
            WitnessSpan.objects.filter(session_id=session.pk, character_id=character.pk).values_list(
                "start_seq", "end_seq"
            )
        )
        if not spans and not WitnessSpan.objects.filter(session_id=session.pk).exists():
            spans = None  # a group from before witness spans were kept: everyone saw everything
    hits_per_word = [0] * len(words)
    by_id: dict[int, dict] = {}
    summaries: dict[int, tuple] = {}
    for w, pk, seq, content, tokens, speaker, s_end, s_text, s_tokens, s_witnesses in rows:
        if spans is not None and not _witnessed(spans, seq):
            continue
        if s_end is not None:
            # SQLite hands JSON back as text.
            saw = json.loads(s_witnesses) if isinstance(s_witnesses, str) else s_witnesses
            summaries[stretch_of(seq)[0]] = (s_end, s_text, s_tokens, saw)
        hits_per_word[w] += 1
        entry = by_id.setdefault(
            pk, {"seq": seq, "content": content, "tokens": tokens, "speaker": speaker, "words": set()}
        )
        entry["words"].add(w)
    # A word matching fewer old messages says more: 1 for a unique match, less as matches grow.
    weight = [1.0 / (1.0 + math.log(max(n, 1))) for n in hits_per_word]
    found: list[Recalled] = []
    by_stretch: dict[int, list[Recalled]] = {}
    for entry in by_id.values():
        # A word that filled its whole quota of matches is common in this chat: it recalls nothing
        # by itself (the block would fill with noise); a message needs a rarer word too.
        if all(hits_per_word[w] >= PER_WORD for w in entry["words"]):
            continue
        seq = entry["seq"]
        recency = 0.5 + 0.5 * (seq / window_seq)
        score = sum(weight[w] for w in entry["words"]) * recency
        text = entry["content"]
        if len(text) > RECALLED_MESSAGE_CHARS:
            text = text[:RECALLED_MESSAGE_CHARS].rsplit(" ", 1)[0] + "…"
        if entry["speaker"]:
            text = f"{entry['speaker']}: {text}"
        item = Recalled(
            kind="message",
            text=text,
            tokens=estimate_tokens(text) + 2,
            start_seq=seq,
            end_seq=seq,
            matched=sorted(words[w] for w in entry["words"]),
            score=score,
            recency=recency,
            why="matched words",
        )
        found.append(item)
        by_stretch.setdefault(stretch_of(seq)[0], []).append(item)
    if by_stretch:
        for start, (end, text, tokens, witnesses) in sorted(summaries.items()):
            if start not in by_stretch or not text.strip():
                continue
            if witnesses is not None and character is not None and character.pk not in witnesses:
                continue
            members = by_stretch[start]
            matched = sorted({w for m in members for w in m.matched})
            recency = max(m.recency for m in members)
            found.append(
                Recalled(
                    kind="summary",
                    text=text,
                    tokens=tokens + 2,
                    start_seq=start,
                    end_seq=end,
                    matched=matched,
                    # Just below its best message: the message itself carries the exact words.
                    score=max(m.score for m in members) * 0.9,
                    recency=recency,
                    why="summary of a stretch with matching messages",
                )
            )
    found.sort(key=lambda i: (-i.score, -(i.start_seq or 0), i.kind))
    return found


# --- scheduling and writing summaries ----------------------------------------------------------------


def schedule(session_id: int, *, window_start: int) -> bool:
    """After a prompt was built with older messages out of its window: queue the summaries of the
    stretches that now lie wholly before it. A read, and a write only when a new stretch fell out
    (once every STRETCH messages), so a reply does not queue a task for nothing."""
    target = stretch_of(window_start)[0] - 1 if window_start > 1 else 0
    if target < STRETCH:
        return False
    mem = ChatMemory.objects.filter(session_id=session_id).only("enabled", "queued_through").first()
    if mem is not None and (not mem.enabled or target <= mem.queued_through):
        return False
    ChatMemory.objects.update_or_create(
        session_id=session_id, defaults={"window_start": window_start, "queued_through": target}
    )
    enqueue(session_id)
    return True


def enqueue(session_id: int, *, delay: float = 0) -> None:
    """Queue the chat's summary work (a task; a worker runs it). Never raises into the caller."""
    from . import tasks

    try:
        task = tasks.write_summaries
        if delay:
            task = task.using(run_after=timezone.now() + timedelta(seconds=delay))
        task.enqueue(session_id)
    except Exception:
        logger.exception("could not queue the summaries of chat %s", session_id)


def _covering(*, session: int, first: int, last: int):
    return Memory.objects.filter(session_id=session, end_seq__gte=first, start_seq__lte=last, stale=False)


# Whether any summary covers the messages: an edit in a chat with none (most edits: a chat's
# newest messages are not summarized yet) skips building the UPDATE, about 0.7 ms of the ORM.
_ANY_COVERING = PreparedQuery(Memory, lambda **bounds: _covering(**bounds).values_list("pk")[:1])


def mark_stale(session_id: int, first_seq: int, last_seq: int) -> int:
    """Mark the summaries covering messages first_seq..last_seq stale, and queue their rewrite
    after the commit. Returns how many were marked."""
    bounds = {"session": session_id, "first": first_seq, "last": last_seq}
    if not _ANY_COVERING.rows(**bounds):
        return 0
    marked = _covering(**bounds).update(stale=True, version=F("version") + 1)
    if marked:
        transaction.on_commit(lambda: enqueue(session_id))
    return marked


def messages_deleted(session_id: int, seq: int, *, and_after: bool) -> None:
    """A message (or it and all after it) was deleted: the summaries that covered it are stale;
    with "and all after", summaries of stretches wholly after it go (nothing is left to summarize)."""
    if and_after:
        Memory.objects.filter(session_id=session_id, start_seq__gt=seq).delete()
        ChatMemory.objects.filter(session_id=session_id, queued_through__gte=seq).update(
            queued_through=max(stretch_of(seq)[0] - 1, 0)
        )
    mark_stale(session_id, seq, seq)


def fingerprint(session_id: int, start: int, end: int) -> int:
    """Changes when a message of the stretch is edited, hidden, swiped, added or deleted."""
    agg = Message.objects.filter(session_id=session_id, seq__gte=start, seq__lte=end).aggregate(
        n=Count("id"), v=Sum("version")
    )
    return (agg["n"] or 0) * 1_000_003 + (agg["v"] or 0)


def _work(session_id: int, mem: ChatMemory) -> list[tuple[int, int]]:
    """Stretches to write now, newest first (those just out of the window matter most): stale or
    failed ones, then missing ones among the BACKLOG stretches before the window. Older stretches
    of a very long chat (an import, say) are recalled as messages only. Two bounded reads."""
    target = stretch_of(mem.window_start)[0] - 1 if mem.window_start > 1 else 0
    if target < STRETCH:
        return []
    todo = list(
        Memory.objects.filter(session_id=session_id, end_seq__lte=target)
        # A summary the user corrected by hand is never rewritten over their words: when a message
        # it covers changes, it stays stale (out of prompts) until they save it again or delete it.
        .filter(Q(stale=True, edited=False) | ~Q(status=Memory.Status.WRITTEN))
        .order_by("-start_seq")
        .values_list("start_seq", "end_seq")[:STRETCHES_PER_TASK]
    )
    lowest = max(target - BACKLOG * STRETCH, 0) + 1
    have = set(
        Memory.objects.filter(
            session_id=session_id, start_seq__gte=lowest, start_seq__lte=target
        ).values_list("start_seq", flat=True)
    )
    start = target - STRETCH + 1
    while start >= lowest and len(todo) < STRETCHES_PER_TASK:
        if start not in have:
            todo.append((start, start + STRETCH - 1))
        start -= STRETCH
    return todo


def write_summaries(session_id: int) -> dict:
    """The task's body: write the chat's pending summaries, a bounded batch, then queue the rest."""
    if not cache.add(LOCK_KEY.format(session_id), 1, timeout=900):
        # Another worker is on this chat: it looks again before it lets go.
        cache.set(AGAIN_KEY.format(session_id), 1, timeout=900)
        return {"skipped": "busy"}
    written = failed = 0
    more = False
    try:
        session = ChatSession.objects.filter(pk=session_id, deleted_at__isnull=True).first()
        if session is None:
            return {"skipped": "no such chat"}
        mem = memory_settings(session)
        if not mem.enabled:
            return {"skipped": "memory is off in this chat"}
        todo = _work(session_id, mem)
        config = None
        for start, end in todo:
            if config is None:
                config = engine_for(mem)
            try:
                write_stretch(session, start, end, config=config)
                written += 1
            except SummaryFailed as exc:
                failed += 1
                attempts = exc.attempts
                delay = min(30 * 2 ** max(attempts - 1, 0), 3600)
                logger.warning(
                    "summary of chat %s #%s-%s failed (%s); retry in %ss", session_id, start, end, exc, delay
                )
                enqueue(session_id, delay=delay)
                return {"written": written, "failed": failed, "retry_in": delay}
        more = len(todo) >= STRETCHES_PER_TASK
    finally:
        cache.delete(LOCK_KEY.format(session_id))
    if more or cache.get(AGAIN_KEY.format(session_id)):
        cache.delete(AGAIN_KEY.format(session_id))
        if _work(session_id, memory_settings(session)):
            enqueue(session_id)
    return {"written": written, "failed": failed}


class SummaryFailed(Exception):
    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


def engine_for(mem: ChatMemory):
    """The engine that writes this chat's summaries: its chosen profile, else the instance's."""
    from settings_app import engines
    from settings_app.models import ConnectionProfile, SiteSettings

    site = SiteSettings.load()
    profile = None
    if mem.profile_id:
        # Still offered to the chat's user (staff may have withdrawn it since it was chosen).
        profile = (
            ConnectionProfile.objects.available_to(mem.session.user, site).filter(pk=mem.profile_id).first()
        )
    if profile is None:
        return engines.resolve_engine(site)
    # Through config_for_profile: a user's own profile keeps its egress guard, and a key that
    # cannot be decrypted is a readable EngineError.
    return engines.config_for_profile(profile, SiteSettings.load())


def _witnesses(session: ChatSession, start: int, end: int) -> list[int] | None:
    if not session.is_group:
        return None
    spans = list(
        WitnessSpan.objects.filter(session_id=session.pk).values_list("character_id", "start_seq", "end_seq")
    )
    if not spans:
        return None
    return sorted({cid for cid, s, e in spans if s <= start and (e is None or end < e)})


def summary_messages(session: ChatSession, rows: list[tuple], *, context_size: int) -> list[dict]:
    """The request that asks a model for a stretch's summary; the transcript is cut to fit."""
    room = max(context_size - SUMMARY_TOKENS - 120, 200) * 4  # characters, by the usual estimate
    per = max(room // max(len(rows), 1), 80)
    lines = []
    for _seq, role, speaker, content in rows:
        who = speaker or ("User" if role == Message.Role.USER else session.character.name)
        text = content if len(content) <= per else content[:per] + "…"
        lines.append(f"{who}: {text}")
    return [
        {
            "role": "system",
            "content": (
                "You keep the memory of a long roleplay. Summarize the part of the story below in a "
                "few sentences: who did what, names, numbers, places, promises and secrets. Plain "
                "facts, past tense, no commentary."
            ),
        },
        {"role": "user", "content": "\n".join(lines)},
    ]


def _complete(config, messages: list[dict]) -> str:
    from settings_app import engines

    from .prompt import CHATML, render_text

    async def run() -> str:
        text = ""
        kwargs: dict = {"overrides": {"max_tokens": SUMMARY_TOKENS, "temperature": 0.2}}
        if config.mode == "text":
            prompt, stop = render_text(messages, CHATML, continue_text=False, impersonate=False)
            kwargs["prompt"] = prompt
            kwargs["overrides"]["stop"] = stop
        else:
            kwargs["messages"] = messages
        async for item in engines.stream_completion(config, **kwargs):
            if isinstance(item, engines.Delta):
                text += item.text
                if len(text) > MAX_SUMMARY_CHARS:
                    break
        return text.strip()[:MAX_SUMMARY_CHARS]

    return asyncio.run(run())


def write_stretch(session: ChatSession, start: int, end: int, *, config) -> Memory:
    """Write (or rewrite) the summary of one stretch. Raises SummaryFailed (the row remembers it)."""
    from settings_app import engines

    memory, _ = Memory.objects.get_or_create(session=session, start_seq=start, defaults={"end_seq": end})
    before = fingerprint(session.pk, start, end)
    rows = list(
        Message.objects.in_prompt()
        .filter(session=session, seq__gte=start, seq__lte=end)
        .exclude(status=Message.Status.STREAMING)
        .order_by("seq")
        .values_list("seq", "role", "speaker", "content")
    )
    if not rows:
        text = ""
    else:
        try:
            text = _complete(config, summary_messages(session, rows, context_size=config.context_size))
        except engines.EngineError as exc:
            Memory.objects.filter(pk=memory.pk).update(
                status=Memory.Status.FAILED if memory.status != Memory.Status.WRITTEN else memory.status,
                attempts=F("attempts") + 1,
                error=str(exc)[:500],
            )
            raise SummaryFailed(str(exc), memory.attempts + 1) from exc
    after = fingerprint(session.pk, start, end)
    still_stale = after != before  # a message changed while the model wrote: write it again later
    Memory.objects.filter(pk=memory.pk).update(
        text=text,
        token_count=estimate_tokens(text),
        status=Memory.Status.WRITTEN,
        stale=still_stale,
        source_version=before,
        witnesses=_witnesses(session, start, end),
        edited=False,
        attempts=0,
        error="",
        version=F("version") + 1,
        updated_at=timezone.now(),
    )
    if still_stale:
        enqueue(session.pk)
    memory.refresh_from_db()
    return memory


# --- what the rest of the app calls ---------------------------------------------------------------


def copy_for_branch(*, source: ChatSession, target: ChatSession, up_to_seq: int) -> None:
    """A branch keeps the summaries of whole stretches before its branch point, the pinned facts
    written by hand or pinned from messages it has, the memory settings and the witness spans."""
    kept = Memory.objects.filter(session=source, end_seq__lte=up_to_seq, status=Memory.Status.WRITTEN)
    Memory.objects.bulk_create(
        Memory(
            session=target,
            start_seq=m.start_seq,
            end_seq=m.end_seq,
            text=m.text,
            token_count=m.token_count,
            status=m.status,
            stale=m.stale,
            source_version=m.source_version,
            witnesses=m.witnesses,
            edited=m.edited,
        )
        for m in kept
    )
    PinnedFact.objects.bulk_create(
        PinnedFact(session=target, text=f.text, token_count=f.token_count, seq=f.seq)
        for f in PinnedFact.objects.filter(session=source).filter(Q(seq__isnull=True) | Q(seq__lte=up_to_seq))
    )
    mem = ChatMemory.objects.filter(session=source).first()
    if mem is not None:
        ChatMemory.objects.create(
            session=target, enabled=mem.enabled, share=mem.share, profile_id=mem.profile_id
        )
    WitnessSpan.objects.bulk_create(
        WitnessSpan(
            session=target,
            character_id=s.character_id,
            start_seq=s.start_seq,
            end_seq=s.end_seq if s.end_seq is not None and s.end_seq <= up_to_seq + 1 else None,
        )
        for s in WitnessSpan.objects.filter(session=source, start_seq__lte=up_to_seq + 1)
    )


def open_span(session: ChatSession, character_id: int, *, from_seq: int) -> None:
    if not WitnessSpan.objects.filter(
        session=session, character_id=character_id, end_seq__isnull=True
    ).exists():
        WitnessSpan.objects.create(session=session, character_id=character_id, start_seq=from_seq)


def close_span(session: ChatSession, character_id: int, *, at_seq: int) -> None:
    WitnessSpan.objects.filter(session=session, character_id=character_id, end_seq__isnull=True).update(
        end_seq=at_seq
    )


def pin_message(*, session: ChatSession, message: Message) -> PinnedFact:
    text = message.content.strip()
    if message.speaker:
        text = f"{message.speaker}: {text}"
    return add_fact(session=session, text=text, seq=message.seq)


def add_fact(*, session: ChatSession, text: str, seq: int | None = None) -> PinnedFact:
    text = text.strip()
    if not text:
        raise ValueError("A fact cannot be empty.")
    if "\x00" in text:
        raise ValueError("The fact contains a NUL character (\\0), which cannot be stored.")
    if len(text) > MAX_FACT_CHARS:
        text = text[:MAX_FACT_CHARS].rsplit(" ", 1)[0] + "…"
    if PinnedFact.objects.filter(session=session).count() >= settings.RPCHAT.get("MAX_PINNED_FACTS", 200):
        raise ValueError("This chat has as many pinned facts as it may have; unpin one first.")
    return PinnedFact.objects.create(session=session, text=text, token_count=estimate_tokens(text), seq=seq)
