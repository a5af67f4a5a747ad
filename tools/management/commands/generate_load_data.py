from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from tools import load_data


def sizes(value: str) -> list[int]:
    try:
        numbers = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise CommandError(f"Expected comma-separated whole numbers, not {value!r}.") from None
    if any(n <= 0 for n in numbers):
        raise CommandError("Sizes must be positive.")
    return numbers


class Command(BaseCommand):
    help = "Make the benchmark's data set: a user 'bench' with chats of the given sizes and users owning sets of characters."

    def add_arguments(self, parser):
        parser.add_argument(
            "--chat-sizes", default="100,1000,10000,100000", help="messages per chat (default: %(default)s)"
        )
        parser.add_argument("--big", action="store_true", help="also a chat of 1,000,000 messages")
        parser.add_argument(
            "--characters", default="10,1000,10000", help="sizes of the character sets (default: %(default)s)"
        )
        parser.add_argument("--seed", type=int, default=12345)
        parser.add_argument(
            "--reset", action="store_true", help="delete the bench users and their data first"
        )
        parser.add_argument(
            "--offline-engine",
            action="store_true",
            help="make the active engine a profile that refuses connections (the benchmark's sends)",
        )
        parser.add_argument("--analyze", action="store_true", help="run ANALYZE afterwards")

    def handle(self, *args, **options):
        chat_sizes = sizes(options["chat_sizes"])
        if options["big"] and 1_000_000 not in chat_sizes:
            chat_sizes.append(1_000_000)
        if options["reset"]:
            load_data.reset()
            self.stdout.write("Removed the previous bench data.")

        stdout = self.stdout

        class Out:
            def write(self, s):
                stdout.write(s, ending="")

            def flush(self):
                stdout.flush()

        bars = []

        def progress(total: int, desc: str):
            if bars:
                bars[-1].close()
            bar = tqdm(total=total, desc=desc, unit=" rows", file=Out(), leave=True, mininterval=0.5)
            bars.append(bar)
            return bar.update

        try:
            report = load_data.generate(
                chat_sizes=chat_sizes,
                character_sets=sizes(options["characters"]) if options["characters"] else [],
                seed=options["seed"],
                offline_engine=options["offline_engine"],
                progress=progress,
            )
        finally:
            for bar in bars:
                bar.close()
        if options["analyze"]:
            load_data.analyze()
        for note in report.notes:
            self.stdout.write(note)
        self.stdout.write(
            self.style.SUCCESS(
                f"{report.chats_created} chats made ({report.messages_created:,} messages), "
                f"{report.chats_kept} already there; {report.characters_created:,} characters made, "
                f"{report.sets_kept} character sets already there."
            )
        )
