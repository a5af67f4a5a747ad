"""Large, deterministic data for the benchmark and the query-plan check (`generate_load_data`).

- user `bench` with one private character, "Bench Character" (with a 200-entry lorebook), and one
  chat per size in `chat_sizes`, titled "Bench chat <n>";
- for each size in `character_sets`, a user `bench-chars-<n>` owning n private characters with
  card-sized text, labels and tags, so each of them sees a gallery of exactly n characters, and
  an empty chat with each of the first 2,000 (their chat lists).

Messages average about 300 characters (SillyTavern's benchmark files do too); one assistant message
in ten has two alternatives. Everything is written in bulk, batch by batch. Running it again adds
only what is missing; `reset` removes the bench users' data first.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from characters.models import Character, Lorebook, LorebookEntry, Tag
from chats.models import ChatSession, Message, MessageAlternative
from chats.services import messages_delete
from core.tokens import estimate_tokens
from settings_app.models import ConnectionProfile, SiteSettings

BENCH_USER = "bench"
BENCH_CHARACTER = "Bench Character"
SET_USER = "bench-chars-{}"
CHAT_TITLE = "Bench chat {}"
OFFLINE_PROFILE = "bench: offline engine"
# Port 9 (discard) on loopback: nothing listens, so a reply fails at once without a model.
OFFLINE_URL = "http://127.0.0.1:9/v1"
BATCH = 5000
LOREBOOK_ENTRIES = 200
FILLER_CHATS = 2000

WORDS = [
    "the",
    "a",
    "and",
    "but",
    "or",
    "so",
    "with",
    "under",
    "over",
    "across",
    "through",
    "between",
    "beyond",
    "toward",
    "among",
    "around",
    "behind",
    "she",
    "he",
    "they",
    "you",
    "we",
    "it",
    "her",
    "his",
    "their",
    "your",
    "this",
    "that",
    "whispers",
    "smiles",
    "laughs",
    "sighs",
    "leans",
    "glances",
    "murmurs",
    "nods",
    "shrugs",
    "grins",
    "steps",
    "reaches",
    "pauses",
    "turns",
    "watches",
    "listens",
    "waits",
    "wanders",
    "lingers",
    "tavern",
    "forest",
    "river",
    "castle",
    "market",
    "harbor",
    "tower",
    "library",
    "garden",
    "bridge",
    "village",
    "lantern",
    "candle",
    "sword",
    "cloak",
    "map",
    "letter",
    "potion",
    "coin",
    "ring",
    "book",
    "key",
    "mirror",
    "door",
    "window",
    "fire",
    "rain",
    "wind",
    "snow",
    "shadow",
    "moon",
    "star",
    "dawn",
    "dusk",
    "storm",
    "mist",
    "silence",
    "song",
    "quietly",
    "softly",
    "slowly",
    "suddenly",
    "gently",
    "carefully",
    "old",
    "new",
    "small",
    "bright",
    "dark",
    "cold",
    "warm",
    "quiet",
    "strange",
    "familiar",
    "hidden",
    "broken",
    "golden",
    "silver",
    "crimson",
    "remember",
    "wonder",
    "believe",
    "promise",
    "forget",
    "trust",
    "fear",
    "hope",
    "dream",
    "follow",
    "travel",
    "is",
    "was",
    "seems",
    "feels",
    "because",
    "while",
    "when",
    "where",
    "although",
    "until",
    "after",
    "before",
    "tonight",
    "tomorrow",
    "always",
    "never",
    "café",
    "naïve",
]
FIRST = [
    "Aria",
    "Bram",
    "Cassia",
    "Dorian",
    "Elara",
    "Fenwick",
    "Gideon",
    "Hazel",
    "Isolde",
    "Jasper",
    "Kael",
    "Liora",
    "Magnus",
    "Nyx",
    "Orin",
]
LAST = [
    "Blackwood",
    "Thorne",
    "Ashford",
    "Vale",
    "Marsh",
    "Rook",
    "Sterling",
    "Hollow",
    "Frost",
    "Quinn",
    "Everhart",
    "Lockwood",
    "Mercer",
]
TAGS = (
    "fantasy",
    "sci-fi",
    "romance",
    "adventure",
    "mystery",
    "comedy",
    "horror",
    "slice of life",
    "drama",
    "OC",
    "female",
    "male",
)
LABELS = ("", "", "main", "side", "villain", "npc", "companion")


@dataclass
class Report:
    chats_created: int = 0
    chats_kept: int = 0
    messages_created: int = 0
    characters_created: int = 0
    sets_kept: int = 0
    notes: list[str] = field(default_factory=list)


class _Text:
    """Deterministic prose: a pool of paragraphs made once from the seed, drawn by a seeded generator."""

    def __init__(self, seed: int, pool: int = 4096):
        rng = random.Random(seed)
        self.pool = [self._paragraph(rng, rng.randint(200, 400)) for _ in range(pool)]

    @staticmethod
    def _sentence(rng: random.Random) -> str:
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 14)))
        text = words[0].upper() + words[1:] + rng.choice(".!?…")
        roll = rng.random()
        if roll < 0.2:
            return f"*{text[:-1]}*"
        if roll < 0.4:
            return f'"{text}"'
        return text

    def _paragraph(self, rng: random.Random, length: int) -> str:
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < length:
            parts.append(self._sentence(rng))
        return " ".join(parts)

    def draw(self, rng: random.Random, paragraphs: int = 1) -> str:
        return "\n\n".join(rng.choice(self.pool) for _ in range(paragraphs))


def _user(username: str):
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username)
    return user


def _delete_chats(sessions) -> None:
    """Delete chats and their messages with a few statements, not one per row."""
    ids = list(sessions.values_list("id", flat=True))
    if not ids:
        return
    with transaction.atomic():
        # The benchmark's sends leave prompt snapshots too: messages_delete takes every dependent.
        messages_delete(rows=Message.objects.filter(session_id__in=ids))
        ChatSession.objects.filter(id__in=ids).update(parent=None)
        ChatSession.objects.filter(id__in=ids).delete()


def reset() -> None:
    """Remove everything this module made (the bench users and what they own)."""
    User = get_user_model()
    users = User.objects.filter(username__startswith="bench")
    users = [u for u in users if u.username == BENCH_USER or u.username.startswith("bench-chars-")]
    _delete_chats(ChatSession.objects.filter(user__in=users))
    Character.objects.filter(owner__in=users).delete()
    User.objects.filter(id__in=[u.id for u in users]).delete()
    site = SiteSettings.load()
    if site.active_profile and site.active_profile.name == OFFLINE_PROFILE:
        site.active_profile = None
        site.save()
    ConnectionProfile.objects.filter(name=OFFLINE_PROFILE).delete()


def _bench_character(owner, text: _Text, rng: random.Random) -> Character:
    character = Character.objects.filter(owner=owner, name=BENCH_CHARACTER).first()
    if character is not None:
        return character
    character = Character.objects.create(
        owner=owner,
        name=BENCH_CHARACTER,
        description=text.draw(rng, 5),
        personality=text.draw(rng),
        scenario=text.draw(rng),
        first_message=text.draw(rng, 2),
        example_dialogue="<START>\n{{user}}: " + text.draw(rng) + "\n{{char}}: " + text.draw(rng),
        label="main",
    )
    book = Lorebook.objects.create(character=character, owner=owner, name=f"{BENCH_CHARACTER}'s lore")
    LorebookEntry.objects.bulk_create(
        LorebookEntry(
            lorebook=book,
            uid=str(i),
            name=f"entry {i}",
            keys=[rng.choice(WORDS), rng.choice(WORDS)],
            content=text.draw(rng),
            enabled=i % 10 != 0,
            insertion_order=rng.randint(0, 200),
        )
        for i in range(LOREBOOK_ENTRIES)
    )
    return character


def _messages(session: ChatSession, first: int, count: int, text: _Text, rng: random.Random, speaker: str):
    now = timezone.now()
    rows = []
    for seq in range(first, first + count):
        content = text.draw(rng)
        assistant = seq % 2 == 1  # the greeting is seq 1
        swipes = assistant and rng.random() < 0.1
        rows.append(
            Message(
                session=session,
                seq=seq,
                role=Message.Role.ASSISTANT if assistant else Message.Role.USER,
                speaker=speaker if assistant else BENCH_USER,
                content=content,
                token_count=estimate_tokens(content),
                alternative_count=3 if swipes else 0,
                alternative_index=2 if swipes else 0,
                created_at=now,
                updated_at=now,
            )
        )
    return rows


def _build_chat(
    user, character: Character, size: int, text: _Text, seed: int, tick: Callable[[int], None]
) -> int:
    rng = random.Random(seed * 1_000_003 + size)
    session = ChatSession.objects.create(
        user=user,
        character=character,
        title=CHAT_TITLE.format(size),
        code=uuid.UUID(int=rng.getrandbits(128), version=4),
    )
    made = 0
    for first in range(1, size + 1, BATCH):
        count = min(BATCH, size - first + 1)
        with transaction.atomic():
            rows = Message.objects.bulk_create(_messages(session, first, count, text, rng, character.name))
            alternatives = []
            for message in rows:
                if message.alternative_count:
                    alternatives += [
                        MessageAlternative(
                            message=message,
                            index=i,
                            content=text.draw(rng) if i < 2 else message.content,
                            token_count=message.token_count,
                        )
                        for i in range(3)
                    ]
            MessageAlternative.objects.bulk_create(alternatives)
        made += count
        tick(count)
    ChatSession.objects.filter(pk=session.pk).update(
        last_seq=size, message_count=size, last_message_at=timezone.now()
    )
    return made


def _tag_objects() -> list[Tag]:
    tags = []
    for name in TAGS:
        tag = Tag.objects.filter(name__iexact=name).first() or Tag.objects.create(name=name)
        tags.append(tag)
    return tags


def _build_set(owner, size: int, text: _Text, seed: int, tick: Callable[[int], None]) -> int:
    rng = random.Random(seed * 7_919 + size)
    tags = _tag_objects()
    Through = Character.tags.through
    for start in range(0, size, BATCH // 5):
        count = min(BATCH // 5, size - start)
        with transaction.atomic():
            made = Character.objects.bulk_create(
                Character(
                    owner=owner,
                    code=uuid.UUID(int=rng.getrandbits(128), version=4),
                    name=f"{rng.choice(FIRST)} {rng.choice(LAST)} {start + i:05d}",
                    description=text.draw(rng, 5),
                    personality=text.draw(rng),
                    scenario=text.draw(rng),
                    first_message=text.draw(rng, 2),
                    creator_notes=text.draw(rng),
                    label=rng.choice(LABELS),
                    creator="generate_load_data",
                )
                for i in range(count)
            )
            Through.objects.bulk_create(
                Through(character_id=c.pk, tag_id=t.pk)
                for c in made
                for t in rng.sample(tags, rng.randint(2, 4))
            )
        tick(count)
    # Their chat lists: one empty chat per character, up to FILLER_CHATS (the chat list and the
    # admin's chats list need a chats table of some size to be judged).
    characters = list(
        Character.objects.filter(owner=owner).order_by("id").values_list("id", flat=True)[:FILLER_CHATS]
    )
    for start in range(0, len(characters), BATCH):
        ChatSession.objects.bulk_create(
            ChatSession(
                user=owner,
                character_id=cid,
                title=f"Chat {start + i}",
                code=uuid.UUID(int=rng.getrandbits(128), version=4),
            )
            for i, cid in enumerate(characters[start : start + BATCH])
        )
    return size


def generate(
    *,
    chat_sizes: list[int],
    character_sets: list[int],
    seed: int = 12345,
    offline_engine: bool = False,
    progress: Callable[[int, str], Callable[[int], None]] | None = None,
) -> Report:
    """Make what is missing of the data set described above; returns what was done."""
    report = Report()
    progress = progress or (lambda total, desc: lambda n: None)
    text = _Text(seed)
    rng = random.Random(seed)
    bench = _user(BENCH_USER)
    character = _bench_character(bench, text, rng)

    for size in chat_sizes:
        existing = ChatSession.objects.filter(
            user=bench, title=CHAT_TITLE.format(size), deleted_at__isnull=True
        )
        # The benchmark sends a few messages into each chat, so "at least n" counts as built.
        if existing.filter(message_count__gte=size).exists():
            report.chats_kept += 1
            continue
        _delete_chats(existing)
        tick = progress(size, f"chat of {size:,} messages")
        report.messages_created += _build_chat(bench, character, size, text, seed, tick)
        report.chats_created += 1

    for size in character_sets:
        owner = _user(SET_USER.format(size))
        have = Character.objects.filter(owner=owner).count()
        if have == size:
            report.sets_kept += 1
            continue
        if have:
            _delete_chats(ChatSession.objects.filter(user=owner))
            Character.objects.filter(owner=owner).delete()
        tick = progress(size, f"{size:,} characters")
        report.characters_created += _build_set(owner, size, text, seed, tick)

    if offline_engine:
        profile, _ = ConnectionProfile.objects.get_or_create(
            name=OFFLINE_PROFILE, defaults={"base_url": OFFLINE_URL, "model": "none", "max_tokens": 16}
        )
        site = SiteSettings.load()
        if site.active_profile_id != profile.pk:
            site.active_profile = profile
            site.save()
        report.notes.append(f"active engine: {OFFLINE_PROFILE} ({OFFLINE_URL}, refuses connections)")
    return report


def analyze() -> None:
    """Refresh the planner's statistics (both databases plan from them)."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def largest_chat_size() -> int:
    return ChatSession.objects.aggregate(n=Max("message_count"))["n"] or 0
