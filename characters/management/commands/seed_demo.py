import io

from django.core.management.base import BaseCommand
from django.db import transaction
from PIL import Image, ImageDraw

from characters.demo import DEMO_CHARACTERS
from characters.models import Character, Tag
from characters.services import character_set_avatar


def _portrait(color: tuple[int, int, int], initial: str) -> bytes:
    """A simple generated portrait: a soft gradient with the character's initial."""
    size = 256
    image = Image.new("RGB", (size, size), color)
    draw = ImageDraw.Draw(image)
    for y in range(size):
        shade = tuple(min(255, c + y // 4) for c in color)
        draw.line([(0, y), (size, y)], fill=shade)
    draw.ellipse((48, 48, 208, 208), outline=(255, 255, 255), width=6)
    draw.text((size // 2, size // 2), initial, fill=(255, 255, 255), anchor="mm", font_size=96)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class Command(BaseCommand):
    help = "Create the demo characters everyone on the instance can chat with (safe to run again)."

    def handle(self, *args, **options):
        created = 0
        for spec in DEMO_CHARACTERS:
            if Character.objects.filter(owner=None, name=spec["name"]).exists():
                continue
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
                character_set_avatar(character=character, data=_portrait(spec["color"], spec["name"][0]))
            created += 1
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo characters: {created} created, {len(DEMO_CHARACTERS) - created} already there."
            )
        )
