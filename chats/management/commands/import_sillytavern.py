from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from chats.sillytavern import (
    KINDS,
    sillytavern_folder_import,
    sillytavern_folder_size,
    sillytavern_user_folder,
)
from core.command_utils import command_user, progress_bar, status_counts


class Command(BaseCommand):
    help = "Import a SillyTavern user folder (presets, personas, lorebooks, cards, chats); what was imported before is skipped."

    def add_arguments(self, parser):
        parser.add_argument(
            "data_dir", metavar="DATA_DIR", help="SillyTavern's data folder or one user's folder in it."
        )
        parser.add_argument(
            "--user", help="The rpchat user who gets everything (default: the only superuser)."
        )
        parser.add_argument(
            "--skip-broken-lines",
            action="store_true",
            help="Import the readable lines of a damaged chat and list the broken ones (default: refuse the file).",
        )

    def handle(self, *args, data_dir, user, skip_broken_lines, verbosity, **options):
        owner = command_user(user, default_superuser=True)
        try:
            base = sillytavern_user_folder(Path(data_dir))
        except FileNotFoundError as exc:
            raise CommandError(str(exc)) from None
        total = sillytavern_folder_size(base)
        with progress_bar(self, total=total, unit="B", unit_scale=True, verbosity=verbosity) as bar:

            def progress(n: int, label: str) -> None:
                bar.update(n)
                bar.set_postfix_str(label[:40], refresh=False)

            report = sillytavern_folder_import(
                root=base, user=owner, skip_broken_lines=skip_broken_lines, progress=progress
            )
        self.stdout.write(f"From {base}, for {owner.get_username()}:")
        for kind in KINDS:
            results = report.results[kind]
            line = f"  {kind}: {status_counts(results)}"
            if kind == "chats":
                messages = sum(r.object.message_count for r in results if r.status == "imported")
                line += f" ({messages:,} messages imported)"
            self.stdout.write(line)
        failed = 0
        for kind in KINDS:
            for result in report.results[kind]:
                if result.status == "failed":
                    failed += 1
                    self.stdout.write(self.style.ERROR(f"  failed: {result.file_name}: {result.reason}"))
                elif result.status == "skipped" and verbosity >= 2:
                    self.stdout.write(f"  skipped: {result.file_name}: {result.reason}")
                for warning in result.warnings:
                    self.stdout.write(self.style.WARNING(f"  note: {result.file_name}: {warning}"))
        skipped = sum(report.count(k, "skipped") for k in KINDS)
        if skipped and verbosity < 2:
            self.stdout.write(f"  {skipped} skipped as already there (-v 2 lists them).")
        if failed:
            raise CommandError(f"{failed} file(s) could not be imported (listed above); everything else was.")
        self.stdout.write(self.style.SUCCESS("SillyTavern import finished."))
