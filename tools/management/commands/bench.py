import os
import shlex
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tools import bench, bench_browser

from .generate_load_data import sizes


class Command(BaseCommand):
    help = "Serve rpchat under uvicorn on a separate bench database and measure its pages over HTTP at growing data sizes."

    def add_arguments(self, parser):
        parser.add_argument("--chat-sizes", default="100,1000,10000,100000")
        parser.add_argument("--big", action="store_true", help="also a chat of 1,000,000 messages")
        parser.add_argument("--characters", default="1,10,1000,10000", help="sizes of the character sets")
        parser.add_argument("--requests", type=int, default=40, help="timed requests per figure")
        parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
        parser.add_argument("--warmup", type=int, default=3)
        parser.add_argument(
            "--output", default="bench-output", help="folder for bench.json, bench.md, bench.png"
        )
        parser.add_argument("--var-dir", default="", help="the bench server's var folder (default var/bench)")
        parser.add_argument(
            "--database-url",
            default="",
            help="the bench database (default: DATABASE_URL when it is PostgreSQL, else var/bench/bench.sqlite3)",
        )
        parser.add_argument(
            "--redis-url", default="", help="serve with this Redis as the cache (default: local memory)"
        )
        parser.add_argument("--reset", action="store_true", help="rebuild the bench data from scratch")
        parser.add_argument("--no-profile", action="store_true", help="skip the pyinstrument profile")
        parser.add_argument(
            "--sillytavern-data",
            "--st-dataset",
            action="append",
            default=[],
            metavar="DIR",
            help="a SillyTavern data folder made by shared/bench/gen_st_data.py: imported for a user of its "
            "own and timed beside SillyTavern on the same operations (repeatable)",
        )
        parser.add_argument(
            "--sillytavern",
            action="append",
            default=[],
            metavar="URL",
            help="a live SillyTavern (user accounts off) serving the --sillytavern-data folder of the same "
            "position, timed interleaved with rpchat; without it SillyTavern's column is its reference figures",
        )
        parser.add_argument(
            "--browser",
            type=int,
            nargs="?",
            const=5,
            default=0,
            metavar="ROUNDS",
            help="also time, in Chromium, each --sillytavern-data chat opened and the character list "
            "shown until they are on screen, rpchat beside the live SillyTavern, ROUNDS timed rounds "
            "(default 5)",
        )
        parser.add_argument(
            "--api-chat-url",
            default="",
            help="the JSON API's chat page, with {code} (found by itself when present)",
        )
        parser.add_argument(
            "--search-url", default="", help="the search URL, with {q} (found by itself when present)"
        )

    def handle(self, *args, **options):
        if len(options["sillytavern"]) > len(options["sillytavern_data"]):
            raise CommandError("Give each --sillytavern URL the --sillytavern-data folder it serves.")
        if options["browser"]:
            if options["browser"] < 0:
                raise CommandError("--browser takes a number of rounds, 1 or more.")
            if not options["sillytavern_data"]:
                raise CommandError("--browser times the --sillytavern-data sets: give one or more.")
            bench_browser.check()  # before the run, not after it
        var_dir = Path(options["var_dir"] or Path(settings.BASE_DIR) / "var" / "bench").resolve()
        database_url = options["database_url"]
        if not database_url:
            env_url = os.getenv("DATABASE_URL", "")
            database_url = (
                env_url if env_url.startswith("postgres") else f"sqlite:///{var_dir / 'bench.sqlite3'}"
            )
        config = bench.Config(
            chat_sizes=sizes(options["chat_sizes"]),
            character_sets=sizes(options["characters"]),
            output=Path(options["output"]).resolve(),
            var_dir=var_dir,
            database_url=database_url,
            requests=options["requests"],
            concurrency=options["concurrency"],
            warmup=options["warmup"],
            big=options["big"],
            reset=options["reset"],
            profile=not options["no_profile"],
            redis_url=options["redis_url"],
            st_data=[Path(d).resolve() for d in options["sillytavern_data"]],
            st_urls=options["sillytavern"],
            browser_rounds=options["browser"],
            api_chat_url=options["api_chat_url"],
            search_url=options["search_url"],
            command="manage.py bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
            if "bench" in sys.argv[1:2]
            else "manage.py bench",
        )

        def write(text: str) -> None:
            self.stdout.write(text, ending="")
            self.stdout.flush()

        report = bench.Bench(config, write).run()
        paths = bench.write_outputs(report, config.output)
        self.stdout.write("")
        self.stdout.write(bench.terminal(report))
        for note in report["notes"]:
            self.stdout.write(self.style.WARNING(f"note: {note}"))
        self.stdout.write(self.style.SUCCESS("Wrote " + ", ".join(str(p) for p in paths)))
