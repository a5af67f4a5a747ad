from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.command_utils import command_user, progress_bar
from core.uploads import download_name
from settings_app import stpresets
from settings_app.models import Preset
from settings_app.services import preset_export


class Command(BaseCommand):
    help = (
        "Export presets into a folder laid out as SillyTavern's user folder (instruct/, context/, "
        "sysprompt/, TextGen Settings/, OpenAI Settings/), one file each."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", metavar="DIR")
        parser.add_argument(
            "--user", help="This user's presets (default: the instance's own, those without an owner)."
        )

    def handle(self, *args, folder, user, verbosity, **options):
        owner = command_user(user)
        target = Path(folder)
        presets = Preset.objects.filter(owner=owner).order_by("kind", "name", "id")
        written = 0
        with progress_bar(self, total=presets.count(), unit="file", verbosity=verbosity) as bar:
            for preset in presets.iterator(chunk_size=200):
                sub = target / stpresets.FOLDERS[preset.kind]
                try:
                    sub.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise CommandError(f"{sub}: {exc}") from None
                # SillyTavern names these files after the preset, and the text-completion and
                # chat-completion ones are named by their file alone.
                path = sub / download_name(preset.name, ".json")
                path.write_bytes(preset_export(preset=preset))
                written += 1
                bar.update(1)
        self.stdout.write(self.style.SUCCESS(f"Exported {written} preset(s) to {target}."))
