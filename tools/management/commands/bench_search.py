"""Time message search on a large data set: `manage.py bench_search --fill 1000000`, then again
without --fill. Point DATABASE_URL at a scratch database: --fill writes synthetic users and chats."""

from __future__ import annotations

import random
import statistics
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction
from django.utils import timezone

from characters.models import Character
from chats.models import ChatSession, Message
from chats.search import search_messages

BENCH_PREFIX = "bench-search-"
SYLLABLES = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "sh", "qu", "ar", "el"]


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 4))))
    return sorted(words, key=lambda w: (len(w), w))


class Command(BaseCommand):
    help = "Fill a scratch database with synthetic chats (--fill N) and time message search on it."

    def add_arguments(self, parser):
        parser.add_argument("--fill", type=int, default=0, help="Messages to add before timing.")
        parser.add_argument("--queries", type=int, default=60, help="Queries per kind.")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args, fill: int, queries: int, seed: int, **options):
        rng = random.Random(seed)
        vocab = _vocabulary(rng, 20_000)
        # Zipf-like word frequencies, as in natural text: rank r is drawn ~ 1/r.
        weights = [1 / (rank + 1) ** 1.05 for rank in range(len(vocab))]
        if fill:
            self._fill(fill, rng, vocab, weights)
        users = list(get_user_model().objects.filter(username__startswith=BENCH_PREFIX).order_by("id"))
        if not users:
            raise CommandError("No benchmark data here: run with --fill N first.")
        total = Message.objects.filter(session__user__in=users).count()
        self.stdout.write(f"{connection.vendor}: {total:,} messages of {len(users)} users")
        heavy, light = users[0], users[-1]
        kinds = {
            "common word": lambda: vocab[rng.randrange(0, 100)],
            "mid word": lambda: vocab[rng.randrange(100, 2000)],
            "rare word": lambda: vocab[rng.randrange(2000, 20000)],
            "two words": lambda: f"{vocab[rng.randrange(0, 2000)]} {vocab[rng.randrange(0, 2000)]}",
            "prefix": lambda: vocab[rng.randrange(200, 5000)][:3] + "*",
        }
        everything = []
        for user in (heavy, light):
            owned = Message.objects.filter(session__user=user).count()
            for kind, make in kinds.items():
                times = []
                for _ in range(queries):
                    q = make()
                    started = time.perf_counter()
                    search_messages(user=user, query=q, limit=20)
                    times.append((time.perf_counter() - started) * 1000)
                everything += times
                times.sort()
                self.stdout.write(
                    f"  user with {owned:>9,} messages, {kind:<12}: median {statistics.median(times):6.1f} ms, "
                    f"p95 {times[int(len(times) * 0.95) - 1]:6.1f} ms, max {times[-1]:6.1f} ms"
                )
        self.stdout.write(
            self.style.SUCCESS(
                f"median of all {len(everything)} searches: {statistics.median(everything):.1f} ms"
            )
        )

    def _fill(self, count: int, rng, vocab, weights) -> None:
        User = get_user_model()
        n = User.objects.filter(username__startswith=BENCH_PREFIX).count()
        users = [User.objects.create_user(f"{BENCH_PREFIX}{n + i}", password=None) for i in range(11)]
        character = Character.objects.create(name="Bench", visibility="public")
        # One heavy user with half the messages, nine with a twentieth each, one with a small chat.
        plan = [(users[0], 100)] + [(u, 10) for u in users[1:10]]
        per_chat = (count - 500) // sum(n for _, n in plan)
        chats = []
        for user, n_chats in plan:
            for _ in range(n_chats):
                chats.append(ChatSession.objects.create(user=user, character=character, title="bench"))
        small = ChatSession.objects.create(user=users[10], character=character, title="bench small")
        cum = []
        total = 0.0
        for w in weights:
            total += w
            cum.append(total)
        texts = [" ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(8, 60))) for _ in range(40_000)]
        now = timezone.now()
        table = Message._meta.db_table
        # The table name comes from the model; the values are parameters.
        sql = (
            f"INSERT INTO {table} (session_id, seq, role, speaker, character_id, content, token_count, "  # noqa: S608
            "status, error, version, hidden, alternative_index, alternative_count, client_token, meta, "
            "created_at, updated_at) VALUES (%s, %s, %s, '', NULL, %s, 10, 'complete', '', 1, %s, 0, 0, '', '{}', %s, %s)"
        )
        seq = {c.pk: 0 for c in [*chats, small]}
        started = time.perf_counter()
        done = 0
        # Chats advance together, ten messages at a time, as real chats interleave in time.
        rounds = (per_chat + 9) // 10
        for r in range(rounds):
            rows = []
            for chat in chats:
                for _ in range(min(10, per_chat - r * 10)):
                    seq[chat.pk] += 1
                    s = seq[chat.pk]
                    rows.append(
                        (chat.pk, s, "user" if s % 2 else "assistant", rng.choice(texts), False, now, now)
                    )
            if r < 50:
                for _ in range(10):
                    seq[small.pk] += 1
                    s = seq[small.pk]
                    rows.append(
                        (small.pk, s, "user" if s % 2 else "assistant", rng.choice(texts), False, now, now)
                    )
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.executemany(sql, rows)
            done += len(rows)
            if r % 20 == 0:
                self.stdout.write(f"  {done:,} messages, {time.perf_counter() - started:.0f} s")
        for chat in [*chats, small]:
            ChatSession.objects.filter(pk=chat.pk).update(last_seq=seq[chat.pk], message_count=seq[chat.pk])
        with connection.cursor() as cursor:
            # Fresh statistics, as autovacuum gives PostgreSQL within a minute or two of a bulk
            # load. Without them its planner misjudges common words (see docs/search.md).
            cursor.execute("ANALYZE")
        self.stdout.write(f"filled {done:,} messages in {time.perf_counter() - started:.0f} s")
