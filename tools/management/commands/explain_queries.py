from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from core import hot_queries
from tools import load_data


class Command(BaseCommand):
    help = (
        "Print the query plan of every registered hot query and fail on a full scan or a sort of a big table."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--build", action="store_true", help="make a data set first with generate_load_data"
        )
        parser.add_argument("--chat-sizes", default="1000,20000", help="with --build (default: %(default)s)")
        parser.add_argument("--characters", default="10,3000", help="with --build (default: %(default)s)")
        parser.add_argument(
            "--refresh-stats", action="store_true", help="run ANALYZE first (implied by --build)"
        )
        parser.add_argument(
            "--execute", action="store_true", help="PostgreSQL: EXPLAIN ANALYZE (runs the queries)"
        )
        parser.add_argument("--only", default="", help="check only the queries whose name contains this")

    def handle(self, *args, **options):
        if options["build"]:
            from .generate_load_data import sizes

            report = load_data.generate(
                chat_sizes=sizes(options["chat_sizes"]), character_sets=sizes(options["characters"])
            )
            self.stdout.write(
                f"Data set: {report.messages_created:,} messages and {report.characters_created:,} characters made."
            )
        if options["build"] or options["refresh_stats"]:
            load_data.analyze()

        sizes_now = {t: hot_queries.table_rows(t) for t in sorted(hot_queries.BIG_TABLES)}
        self.stdout.write(
            f"{connection.vendor}: "
            + ", ".join(f"{t} {n:,} rows" for t, n in sizes_now.items())
            + f" (tables under {hot_queries.MIN_ROWS:,} rows are not judged)"
        )
        failed = []
        checked = 0
        for query in hot_queries.registered():
            if options["only"] and options["only"].lower() not in query.name.lower():
                continue
            verdict = hot_queries.explain(query, analyze=options["execute"], sizes=sizes_now)
            self.stdout.write("")
            self.stdout.write(
                self.style.MIGRATE_HEADING(query.name) + (f"  [{query.used_by}]" if query.used_by else "")
            )
            if verdict.skipped:
                self.stdout.write(self.style.WARNING(f"  skipped: {verdict.skipped}"))
                continue
            checked += 1
            for line in verdict.plan.splitlines():
                self.stdout.write("    " + line)
            for note in verdict.notes:
                self.stdout.write(f"  note: {note}")
            if verdict.ok:
                self.stdout.write(self.style.SUCCESS("  ok"))
            else:
                failed.append(verdict)
                for problem in verdict.problems:
                    self.stdout.write(self.style.ERROR(f"  problem: {problem}"))
        self.stdout.write("")
        if failed:
            names = "; ".join(f"{v.query.name}: {', '.join(v.problems)}" for v in failed)
            raise CommandError(f"{len(failed)} of {checked} hot queries scan or sort a big table: {names}")
        self.stdout.write(
            self.style.SUCCESS(f"{checked} hot queries checked: no full scan or sort of a big table.")
        )
