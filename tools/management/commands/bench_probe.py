import json
from pathlib import Path

from django.core.management.base import BaseCommand

from tools import bench_inside


class Command(BaseCommand):
    help = (
        "The part of manage.py bench that runs inside the bench database; prints JSON (not for direct use)."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["describe", "describe-st", "st-user", "prompt", "profile"])
        parser.add_argument("--repeat", type=int, default=20)
        parser.add_argument("--url", action="append", default=[], help="profile: NAME=URL (repeatable)")
        parser.add_argument(
            "--user", default="bench", help="profile: who is logged in; st-user, describe-st: whose data"
        )
        parser.add_argument("--output", default="bench-output", help="profile: where the HTML profiles go")

    def handle(self, *args, **options):
        action = options["action"]
        if action == "describe":
            result = bench_inside.describe()
        elif action == "st-user":
            result = bench_inside.st_user(options["user"])
        elif action == "describe-st":
            result = bench_inside.describe_st(options["user"])
        elif action == "prompt":  # without memory and with it, in turns
            result = bench_inside.time_prompts(repeat=options["repeat"])
        else:
            urls = dict(item.split("=", 1) for item in options["url"])
            result = bench_inside.profile_pages(
                urls=urls, username=options["user"], repeat=options["repeat"], output=Path(options["output"])
            )
        self.stdout.write(json.dumps(result))
