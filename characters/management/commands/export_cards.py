from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils.text import get_valid_filename

from characters.models import Character
from characters.services import card_export_json, card_export_png
from core.command_utils import command_user, progress_bar


def unique_path(folder: Path, name: str, suffix: str, taken: set[str]) -> Path:
    stem = get_valid_filename(name) or "character"
    candidate = f"{stem}{suffix}"
    n = 2
    while candidate.lower() in taken or (folder / candidate).exists():
        candidate = f"{stem} ({n}){suffix}"
        n += 1
    taken.add(candidate.lower())
    return folder / candidate


class Command(BaseCommand):
    help = "Export characters as card files (PNG with chara and ccv3 chunks, or JSON) into a folder."

    def add_arguments(self, parser):
        parser.add_argument("folder", metavar="DIR")
        parser.add_argument("--user", help="Only this user's characters (default: every character).")
        parser.add_argument("--format", choices=("png", "json"), default="png")

    def handle(self, *args, folder, user, format, verbosity, **options):
        owner = command_user(user)
        target = Path(folder)
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CommandError(f"{folder}: {exc}") from None
        characters = Character.objects.filter(deleted_at__isnull=True).order_by("name", "id")
        if owner is not None:
            characters = characters.filter(owner=owner)
        export = card_export_png if format == "png" else card_export_json
        taken: set[str] = set()
        written = 0
        with progress_bar(self, total=characters.count(), unit="card", verbosity=verbosity) as bar:
            for character in characters.iterator(chunk_size=200):
                path = unique_path(target, character.name, f".{format}", taken)
                path.write_bytes(export(character=character))
                written += 1
                bar.update(1)
        self.stdout.write(self.style.SUCCESS(f"Exported {written} card(s) to {target}."))
