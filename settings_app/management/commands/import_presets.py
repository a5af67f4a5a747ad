from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.command_utils import command_user, progress_bar, status_counts
from settings_app.services import preset_import


def preset_files(paths: list[str]) -> list[Path]:
    """The JSON files among `paths`, folders searched recursively, in a stable order."""
    found = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.json") if p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{name}: no such file or folder.")
    return found


class Command(BaseCommand):
    help = (
        "Import SillyTavern presets (instruct, context, system prompt, sampler and chat-completion "
        "presets; each file's kind is found from its keys); already imported ones are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "paths", nargs="+", metavar="PATH", help="Preset files or folders (searched recursively)."
        )
        parser.add_argument(
            "--user",
            help="The owner. Without it the presets belong to the instance and everyone may use them.",
        )

    def handle(self, *args, paths, user, verbosity, **options):
        owner = command_user(user)
        files = preset_files(paths)
        results = []
        with progress_bar(self, total=len(files), unit="file", verbosity=verbosity) as bar:
            for path in files:
                results.append(preset_import(source=path, file_name=str(path), owner=owner))
                bar.update(1)
        for result in results:
            if result.status != "skipped" or verbosity >= 2:
                self.stdout.write(str(result))
        summary = f"Presets: {status_counts(results)}."
        if any(r.status == "failed" for r in results):
            raise CommandError(f"{summary} The failed files are listed above; the others were imported.")
        self.stdout.write(self.style.SUCCESS(summary))
