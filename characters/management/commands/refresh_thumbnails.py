from django.core.management.base import BaseCommand

from characters.models import Character
from characters.services import character_refresh_thumbnail, thumbnail_is_current
from core.command_utils import progress_bar


class Command(BaseCommand):
    help = "Make again, from each stored avatar, the thumbnails made at an older size (safe to run again)."

    def add_arguments(self, parser):
        parser.add_argument("--all", action="store_true", help="Remake every thumbnail, current or not.")

    def handle(self, *args, verbosity, **options):
        characters = (
            Character.objects.exclude(avatar="").only("id", "code", "avatar", "thumbnail").order_by("id")
        )
        candidates = characters
        if not options["all"]:
            # Current names end in "-2x3[_random].webp": the database narrows, Python decides.
            candidates = characters.exclude(thumbnail__contains="-2x3", thumbnail__endswith=".webp")
        stale = [
            c for c in candidates.iterator(chunk_size=500) if options["all"] or not thumbnail_is_current(c)
        ]
        made = failed = 0
        with progress_bar(self, total=len(stale), unit="picture", verbosity=verbosity) as bar:
            for character in stale:
                if character_refresh_thumbnail(character=character):
                    made += 1
                else:
                    failed += 1
                bar.update(1)
        message = f"Thumbnails: {made} made, {characters.count() - len(stale)} already current"
        message += f", {failed} skipped (avatar file missing or unreadable)." if failed else "."
        self.stdout.write(self.style.SUCCESS(message))
