from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from characters.cards import CardError
from characters.services import card_import
from core.command_utils import command_user, progress_bar, status_counts

CARD_SUFFIXES = {".png", ".apng", ".json", ".charx"}


def card_files(paths: list[str]) -> list[Path]:
    """The card files among `paths`, folders searched recursively, in a stable order."""
    found = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in CARD_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{name}: no such file or folder.")
    return found


class Command(BaseCommand):
    help = "Import character cards (PNG, APNG, JSON, CHARX) from files or folders; already imported ones are skipped."

    def add_arguments(self, parser):
        parser.add_argument(
            "paths", nargs="+", metavar="PATH", help="Card files or folders (searched recursively)."
        )
        parser.add_argument(
            "--user",
            help="The owner; the cards are private to them. Without it they are public instance characters.",
        )
        parser.add_argument(
            "--public", action="store_true", help="Share the user's cards with everyone on the instance."
        )

    def handle(self, *args, paths, user, public, verbosity, **options):
        owner = command_user(user)
        files = card_files(paths)
        results = []
        with progress_bar(self, total=len(files), unit="card", verbosity=verbosity) as bar:
            for path in files:
                try:
                    result = card_import(source=path, file_name=str(path), owner=owner, public=public)
                except CardError as exc:  # pragma: no cover - card_import reports its own errors
                    raise CommandError(f"{path}: {exc}") from None
                results.append(result)
                bar.update(1)
        for result in results:
            if result.status == "failed" or (result.status == "skipped" and verbosity >= 2):
                self.stdout.write(str(result))
            for warning in result.warnings:
                self.stdout.write(self.style.WARNING(f"{result.file_name}: {warning}"))
        summary = f"Cards: {status_counts(results)}."
        failed = sum(r.status == "failed" for r in results)
        if failed:
            raise CommandError(f"{summary} The failed files are listed above; the others were imported.")
        self.stdout.write(self.style.SUCCESS(summary))
