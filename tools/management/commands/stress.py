import asyncio
from contextlib import ExitStack

from cachalot.api import cachalot_disabled
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from core.databases import attached_database
from tools import stress
from tools.servers import percentile
from tools.tiny_model import TINY_REPLY


class Command(BaseCommand):
    help = "Have many clients chat at once over HTTP, then check every message in the database."

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=16, help="Concurrent clients (default 16).")
        parser.add_argument("--seconds", type=float, default=30, help="How long they send (default 30).")
        parser.add_argument(
            "--shared-chats",
            type=int,
            default=4,
            help="Chats that several clients write into at once (default 4; 0: every client alone).",
        )
        parser.add_argument(
            "--url",
            help="A running server to load (its database must be this command's). "
            "Without it, a server is started on a fresh SQLite file with the tiny test model.",
        )
        parser.add_argument(
            "--expect-reply",
            help="The exact text every reply must have (default with its own server: the tiny model's).",
        )
        parser.add_argument("--repeat-rate", type=float, default=0.1, help="Share of messages sent twice.")
        parser.add_argument("--keep", action="store_true", help="With --url: keep the run's users and chats.")

    def handle(self, *args, clients, seconds, shared_chats, url, expect_reply, repeat_rate, keep, **options):
        if clients < 1 or seconds <= 0:
            raise CommandError("--clients must be at least 1 and --seconds above 0.")
        shared_chats = max(0, min(shared_chats, clients))
        with ExitStack() as stack:
            stack.enter_context(stress.quiet_loggers())
            if url:
                base_url, using, server = url.rstrip("/"), "default", None
            else:
                self.stdout.write("Starting a server on a fresh SQLite file with the tiny model...")
                try:
                    server = stack.enter_context(stress.local_server())
                except RuntimeError as exc:
                    raise CommandError(str(exc)) from None
                base_url = server.base_url
                using = stack.enter_context(attached_database("stress", server.database_url))
                expect_reply = expect_reply if expect_reply is not None else TINY_REPLY
            # The run's own reads and writes must not go through (or stale) the query cache.
            stack.enter_context(cachalot_disabled())
            plan = stress.prepare(using=using, clients=clients, shared_chats=shared_chats)
            results = self._run(base_url, plan, seconds, expect_reply, repeat_rate)
            problems = list(results.errors)
            if server is not None:
                problems += [f"server log: {line}" for line in server.log_errors()]
            problems += stress.verify(using=using, results=results, expected_reply=expect_reply)
            self._summary(base_url, plan, results, server is not None)
            if url and not keep:
                stress.cleanup(using=using, plan=plan)
        if problems:
            shown = "\n  ".join(problems[:30])
            more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
            raise CommandError(f"{len(problems)} errors or inconsistencies:\n  {shown}{more}")
        self.stdout.write(self.style.SUCCESS("No errors; every message and reply is stored once, in order."))

    def _run(self, base_url, plan, seconds, expect_reply, repeat_rate):
        # tqdm redraws its line with \r: write to the raw stream, shown on terminals only.
        bar = tqdm(
            total=int(seconds),
            unit="s",
            desc="chatting",
            file=getattr(self.stdout, "_out", self.stdout),
            disable=None,
            bar_format="{desc} {bar} {n_fmt}/{total_fmt}s {postfix}",
        )

        def tick(results):
            if bar.n < bar.total:
                bar.update(1)
            bar.set_postfix(sent=len(results.accepted), busy=results.busy, errors=len(results.errors))

        with bar:
            return asyncio.run(
                stress.run_clients(
                    base_url=base_url,
                    plan=plan,
                    seconds=seconds,
                    repeat_rate=repeat_rate,
                    expected_reply=expect_reply,
                    tick=tick,
                )
            )

    def _summary(self, base_url, plan, results, own_server) -> None:
        accepted = results.accepted
        latencies = [s.latency * 1000 for s in accepted if s.latency is not None]
        replies = [s.reply_seconds * 1000 for s in accepted if s.reply_seconds is not None]
        where = "its own server (SQLite WAL, tiny model)" if own_server else base_url
        abandoned = sum(1 for s in results.sends if s.status == "abandoned")
        lines = [
            f"Stress run against {where}",
            (
                f"  clients:            {plan.clients} ({len(plan.usernames)} users, "
                f"{len(results.chats)} chats of which {len(results.shared)} shared)"
            ),
            f"  duration:           {results.seconds:.1f} s",
            f"  messages sent:      {len(accepted)} ({len(accepted) / max(results.seconds, 0.001):.1f}/s)",
            f"  replies completed:  {len(replies)}",
            f"  repeated keys:      {results.repeats}",
            f"  409 busy:           {results.busy} (waited out; {abandoned} still waiting at the end, not sent)",
            f"  errors:             {len(results.errors)}",
            (
                f"  send latency:       p50 {percentile(latencies, 50):.0f} ms, "
                f"p95 {percentile(latencies, 95):.0f} ms"
            ),
            (
                f"  send to full reply: p50 {percentile(replies, 50):.0f} ms, "
                f"p95 {percentile(replies, 95):.0f} ms"
            ),
        ]
        self.stdout.write("\n".join(lines))
