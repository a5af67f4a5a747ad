from django.core.management.base import BaseCommand
from django.db import transaction
from PIL import Image

from characters.demo import DEMO_CHARACTERS
from characters.models import Character, Tag
from characters.portraits import H, W, demo_portrait
from characters.services import character_set_avatar


def _has_portrait(character: Character) -> bool:
    """Whether the character already shows a portrait of today's shape (earlier seeds drew a
    256 px square with an initial; those are drawn again)."""
    if not character.avatar:
        return False
    try:
        with character.avatar.open("rb") as file, Image.open(file) as image:
            return image.size == (W, H)
    except (FileNotFoundError, OSError):
        return False


class Command(BaseCommand):
    help = "Create the demo characters everyone on the instance can chat with, with their portraits (safe to run again)."

    def handle(self, *args, **options):
        created = redrawn = 0
        for spec in DEMO_CHARACTERS:
            existing = Character.objects.filter(owner=None, name=spec["name"], creator="rpchat").first()
            if existing is not None:
                if not _has_portrait(existing):
                    character_set_avatar(character=existing, data=demo_portrait(spec["name"]))
                    redrawn += 1
                continue
            if Character.objects.filter(owner=None, name=spec["name"]).exists():
                continue  # an instance character of that name that is not ours: left alone
            with transaction.atomic():
                fields = {k: v for k, v in spec.items() if k not in ("tags", "color")}
                character = Character.objects.create(
                    owner=None, visibility=Character.Visibility.PUBLIC, creator="rpchat", **fields
                )
                tags = [
                    Tag.objects.filter(name__iexact=t).first() or Tag.objects.create(name=t)
                    for t in spec["tags"]
                ]
                character.tags.set(tags)
                character_set_avatar(character=character, data=demo_portrait(spec["name"]))
            created += 1
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo characters: {created} created, {len(DEMO_CHARACTERS) - created} already there"
                + (f", {redrawn} portrait(s) drawn again." if redrawn else ".")
            )
        )
