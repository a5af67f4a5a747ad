"""`manage.py bench`: rpchat measured over real HTTP against data sets of growing size.

It never touches the development database: every step that needs a database runs as a child
`manage.py` process whose DATABASE_URL points at the bench database (a SQLite file under
var/bench/ by default, or the PostgreSQL database given). The app is served by uvicorn (one
process, loopback) and measured by concurrent httpx clients logged in through the login form.
Each figure is compared with the floor (tools.bench_floor: raw SQL, no Django) and across sizes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.management import CommandError

from tools import bench_browser, bench_st
from tools.bench_floor import PREFIX as FLOOR_PREFIX
from tools.bench_floor import WRITE_PREFIX as FLOOR_WRITE_PREFIX
from tools.servers import BENCH_APP, Server, percentile, uvicorn_process

ROOT = Path(settings.BASE_DIR)

LABELS = {
    "floor": "floor: raw SQL for the newest 50 messages, no Django",
    "floor_write": "write floor: one raw SQL UPDATE of a message, no Django",
    "open_chat": "open a chat (HTML page)",
    "chat_json": "the chat's JSON page",
    "older_newest": "older-page endpoint, newest 50",
    "older_middle": "older page from the middle",
    "older_start": "older page from the start",
    "send": "send a message (POST, engine excluded)",
    "edit": "edit a message (POST, version-checked)",
    "prompt": "build a prompt (in-process)",
    "prompt_memory": "build a prompt with memory (in-process)",
    "gallery": "gallery first page",
    "search": "search",
}

FLOORS = ("floor", "floor_write")
WRITES = ("send", "edit")

TARGETS = [
    # name, op, compare, limit
    # "flat": the largest size against the smallest; the sizes measured are in the detail.
    ("open a chat: the longest chat within 1.2x of the shortest", "open_chat", "flat", 1.2),
    ("the chat's JSON page: the longest chat within 1.2x of the shortest", "chat_json", "flat", 1.2),
    ("older page from the very start within 1.2x of the newest", "older_start", "vs:older_newest", 1.2),
    ("send: the same cost in the longest chat as in the shortest", "send", "flat", 1.2),
    ("gallery first page: the largest character set within 1.5x of the smallest", "gallery", "flat", 1.5),
    ("chat JSON page within 2x of the floor", "chat_json", "floor", 2.0),
    ("prompt with memory within 1.5x of the prompt without", "prompt_memory", "vs:prompt", 1.5),
    ("chat HTML page within 4x of the floor", "open_chat", "floor", 4.0),
    ("gallery within 4x of the floor", "gallery", "floor", 4.0),
    ("send within 3x of a bare UPDATE", "send", "floor", 3.0),
    ("edit within 3x of a bare UPDATE", "edit", "floor", 3.0),
    ("edit: the same cost in the longest chat as in the shortest", "edit", "flat", 1.2),
]


@dataclass
class Config:
    chat_sizes: list[int]
    character_sets: list[int]
    output: Path
    var_dir: Path
    database_url: str
    requests: int = 40
    concurrency: int = 4
    warmup: int = 3
    big: bool = False
    reset: bool = False
    profile: bool = True
    redis_url: str = ""
    # SillyTavern data folders (gen_st_data.py) and, paired in order, live SillyTavern URLs serving them.
    st_data: list[Path] = field(default_factory=list)
    st_urls: list[str] = field(default_factory=list)
    # Timed rounds of the browser rows (tools.bench_browser); 0: none.
    browser_rounds: int = 0
    api_chat_url: str = ""
    search_url: str = ""
    search_term: str = "lantern"
    command: str = ""


@dataclass
class Result:
    op: str
    size: int
    unit: str
    requests: int
    median_ms: float
    p95_ms: float
    max_ms: float
    queries: float | None
    bytes: int | None
    rss_mib: float | None
    throughput_rps: float | None = None
    app_ms: float | None = None
    db_ms: float | None = None
    ratio_to_floor: float | None = None
    note: str = ""

    @property
    def label(self) -> str:
        return LABELS.get(self.op, self.op)


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def _memory(pid: int) -> dict[str, float]:
    """The server's VmRSS, VmHWM (its peak RSS) and RssAnon (its private memory), in MiB."""
    found = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon"):
                    found[name] = round(int(value.split()[0]) / 1024, 1)
    except OSError:
        pass
    return found


_TIMING = re.compile(r'db;dur=([\d.]+);desc="(\d+) queries",\s*app;dur=([\d.]+)')


@dataclass
class _Sample:
    ms: float
    queries: int | None
    db_ms: float | None
    app_ms: float | None
    size: int


class Bench:
    def __init__(self, config: Config, write: Callable[[str], None]):
        self.config = config
        self.write = write
        self.results: list[Result] = []
        self.notes: list[str] = []
        self.private_mib = 0.0  # the most RssAnon seen after an operation
        self.side_rows: list[bench_st.SideRow] = []
        self._last_sample: _Sample | None = None
        self.server: Server | None = None
        self.base_url = ""
        self.env = self._env()

    # --- child processes ----------------------------------------------------------------------

    def _env(self) -> dict:
        c = self.config
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PROMETHEUS_MULTIPROC"))}
        env.pop("REDIS_URL", None)
        env.update(
            DJANGO_SETTINGS_MODULE="rpchat.settings",
            DATABASE_URL=c.database_url,
            RPCHAT_VAR_DIR=str(c.var_dir),
            # Its own prefix per run: cachalot's keys do not name the database.
            CACHE_KEY_PREFIX=f"rpchat-bench-{os.getpid()}",
            DEBUG="0",
            RPCHAT_PROFILE="0",
            # Sends are measured back to back; the per-person reply limit would answer 429.
            RPCHAT_GENERATIONS_PER_MINUTE="0",
            RPCHAT_EDITS_PER_MINUTE="0",
            LOG_LEVEL="WARNING",
            PYTHONUNBUFFERED="1",
        )
        if c.redis_url:
            env["REDIS_URL"] = c.redis_url
        return env

    def manage(self, *args: str, stream: bool = False) -> str:
        """Run manage.py in the bench environment; returns its standard output."""
        cmd = [sys.executable, "manage.py", *args]
        if not stream:
            done = subprocess.run(cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, check=False)
            if done.returncode:
                raise CommandError(
                    f"manage.py {' '.join(args[:2])} failed:\n{done.stderr[-3000:] or done.stdout[-3000:]}"
                )
            return done.stdout
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        captured = []
        assert proc.stdout is not None
        while chunk := proc.stdout.read(256):
            captured.append(chunk)
            self.write(chunk)
        if proc.wait():
            raise CommandError(f"manage.py {' '.join(args[:2])} failed:\n{''.join(captured)[-3000:]}")
        return "".join(captured)

    def probe(self, *args: str) -> dict | list:
        out = self.manage("bench_probe", *args)
        return json.loads(out.strip().splitlines()[-1])

    # --- HTTP -----------------------------------------------------------------------------------

    async def login(self, username: str, password: str, connections: int = 0) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=300,
            headers={"Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=connections or self.config.concurrency + 1),
        )
        await client.get("/accounts/login/")
        response = await client.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": client.cookies.get("csrftoken", ""),
            },
        )
        if response.status_code != 302:
            raise CommandError(f"Could not log in as {username} (HTTP {response.status_code}).")
        return client

    async def _timed(
        self, client: httpx.AsyncClient, method: str, url: str, **kwargs
    ) -> tuple[_Sample, httpx.Response]:
        started = time.perf_counter()
        response = await client.request(method, url, **kwargs)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise CommandError(f"{method} {url} answered HTTP {response.status_code}: {response.text[:300]}")
        timing = _TIMING.search(response.headers.get("server-timing", ""))
        sample = _Sample(
            elapsed,
            int(timing.group(2)) if timing else None,
            float(timing.group(1)) if timing else None,
            float(timing.group(3)) if timing else None,
            len(response.content),
        )
        return sample, response

    def _chat_sizes(self) -> list[int]:
        """The chat sizes this run measures: --chat-sizes, and the million-message chat of --big."""
        big = [1_000_000] if self.config.big and 1_000_000 not in self.config.chat_sizes else []
        return self.config.chat_sizes + big  # generate_load_data --big adds that chat

    def _measured(self, rows: list[dict]) -> list[dict]:
        """The rows of the chat sizes this run measures."""
        return [row for row in rows if row["size"] in self._chat_sizes()]

    def _sample_memory(self) -> float | None:
        """VmRSS now (MiB), noting the most private memory seen; None without a server."""
        if not self.server:
            return None
        memory = _memory(self.server.process.pid)
        self.private_mib = max(self.private_mib, memory.get("RssAnon", 0))
        return memory.get("VmRSS")

    def _result(
        self, op: str, size: int, unit: str, samples: list[_Sample], wall: float | None, note: str = ""
    ) -> Result:
        times = [s.ms for s in samples]
        queries = [s.queries for s in samples if s.queries is not None]
        result = Result(
            op=op,
            size=size,
            unit=unit,
            requests=len(samples),
            median_ms=round(statistics.median(times), 2),
            p95_ms=round(percentile(times, 95), 2),
            max_ms=round(max(times), 2),
            queries=statistics.median(queries) if queries else None,
            bytes=int(statistics.median(s.size for s in samples)),
            rss_mib=self._sample_memory(),
            throughput_rps=round(len(samples) / wall, 1) if wall else None,
            app_ms=round(statistics.median(s.app_ms for s in samples if s.app_ms is not None), 2)
            if queries
            else None,
            db_ms=round(statistics.median(s.db_ms for s in samples if s.db_ms is not None), 2)
            if queries
            else None,
            note=note,
        )
        self.results.append(result)
        self.write(
            f"  {result.label:<48} {size:>9,} {unit:<10} median {result.median_ms:8.2f} ms  p95 {result.p95_ms:8.2f}  "
            f"queries {result.queries if result.queries is not None else '-'}\n"
        )
        return result

    async def measure(
        self, client: httpx.AsyncClient, op: str, size: int, unit: str, url: str, note: str = ""
    ) -> Result:
        c = self.config
        for _ in range(c.warmup):
            await self._timed(client, "GET", url)
        gate = asyncio.Semaphore(c.concurrency)

        async def one():
            async with gate:
                return (await self._timed(client, "GET", url))[0]

        started = time.perf_counter()
        samples = await asyncio.gather(*(one() for _ in range(c.requests)))
        return self._result(op, size, unit, list(samples), time.perf_counter() - started, note)

    async def round_robin(self, rows: list[tuple]) -> None:
        """Time several operations in turns, one request each per round (one client at a time):
        each figure then sees the same moments of the machine's load as the others, so their
        ratios hold on a busy machine. rows: (op, size, unit, step, note); step() -> _Sample."""
        for _ in range(self.config.warmup):
            for *_, step, _note in rows:
                await step()
        samples: list[list[_Sample]] = [[] for _ in rows]
        for _ in range(self.config.requests):
            for i, (*_, step, _note) in enumerate(rows):
                samples[i].append(await step())
        for (op, size, unit, _step, note), got in zip(rows, samples, strict=True):
            self._result(op, size, unit, got, None, note or "interleaved")

    def _get(self, client: httpx.AsyncClient, url: str):
        async def step():
            return (await self._timed(client, "GET", url))[0]

        return step

    async def _send_one(self, client: httpx.AsyncClient, code: str, content: str) -> _Sample:
        """POST /send/ (timed), then follow the reply to its end (the offline engine refuses at
        once) so that the chat is free for the next one."""
        sample, response = await self._timed(
            client,
            "POST",
            f"/chats/{code}/send/",
            data={"content": content, "client_token": ""},
            headers={"X-CSRFToken": client.cookies.get("csrftoken", ""), "Referer": self.base_url + "/"},
        )
        # Read to its end (the server closes the stream after "done"): a stream left unfinished
        # costs its connection, and the next row's request would pay for a new one.
        done = False
        async with client.stream("GET", response.json()["stream_url"]) as stream:
            async for line in stream.aiter_lines():
                done = done or line.startswith("event: done")
        if not done:
            raise CommandError("A reply's stream ended without its done event.")
        return sample

    # --- the run --------------------------------------------------------------------------------

    def run(self) -> dict:
        c = self.config
        for name in ("httpx", "httpcore", "matplotlib"):
            logging.getLogger(name).setLevel(logging.WARNING)
        c.output.mkdir(parents=True, exist_ok=True)
        c.var_dir.mkdir(parents=True, exist_ok=True)
        self.write(f"Bench database: {redact(c.database_url)}\n")
        self.manage("migrate", "--no-input", "-v0")
        self.manage("collectstatic", "--no-input", "-v0")
        load = [
            "generate_load_data",
            "--chat-sizes",
            ",".join(map(str, c.chat_sizes)),
            "--characters",
            ",".join(map(str, c.character_sets)),
            "--offline-engine",
            "--analyze",
        ]
        if c.reset:
            load.append("--reset")
        if c.big:
            load.append("--big")
        self.manage(*load, stream=True)
        st_sets = [self.import_sillytavern(i, Path(d)) for i, d in enumerate(c.st_data)]
        data = self.probe("describe")
        # The bench database keeps what earlier runs made; this run measures the sizes it was given.
        # Search reads every chat of the bench user, measured or not.
        data["messages"] = sum(ch["size"] for ch in data["chats"])
        data["chats"] = [ch for ch in data["chats"] if ch["size"] in self._chat_sizes()]
        data["sets"] = [s for s in data["sets"] if s["size"] in c.character_sets]
        routes = data["routes"]
        api_chat = c.api_chat_url or routes["api_chat"]
        search = c.search_url or routes["search"]
        if not api_chat:
            self.notes.append(
                "No JSON API chat page was found: 'the chat's JSON page' is the older-page endpoint's "
                "JSON (newest 50 messages, rendered HTML inside JSON)."
            )
        if not search:
            self.notes.append(
                "Search was not measured: no search URL exists yet (it comes with the JSON API)."
            )

        self.write(
            f"Serving under uvicorn (1 process) on loopback; {c.requests} requests per figure, "
            f"{c.concurrency} at a time, after {c.warmup} warm-ups.\n"
        )
        server = uvicorn_process(
            env=self.env,
            log_path=c.output / "server.log",
            app=BENCH_APP,
            startup_timeout=60,
            extra_args=("--no-access-log", "--log-level", "warning"),
        )
        with server as self.server:
            self.base_url = self.server.base_url
            # In a thread of its own: the caller may already run an event loop (a test, a notebook).
            with ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, self._measure_all(data, api_chat, search, st_sets)).result()
            memory = _memory(self.server.process.pid)
        self.server = None
        if memory:
            after = max((r.rss_mib for r in self.results if r.rss_mib), default=0)
            mapped = (
                ", which also counts the database file's pages while a search reads them through "
                "SQLite's memory map (SQLITE_MMAP_BYTES: the OS's page cache, given back when the "
                "search ends)"
                if data.get("vendor") == "sqlite"
                else ""
            )
            self.notes.append(
                f"Server memory: at most {after} MiB RSS after an operation (the RSS column) and at "
                f"most {self.private_mib} MiB private (RssAnon); its peak while serving (VmHWM) "
                f"{memory.get('VmHWM')} MiB{mapped}."
            )

        self.write("Timing prompt building in-process, without memory and with it in turns...\n")
        prompts = self.probe("prompt", "--repeat", str(max(c.requests, 5)))
        for row in self._measured(prompts["prompt"]):
            result = Result(
                op="prompt",
                size=row["size"],
                unit="messages",
                requests=row["requests"],
                median_ms=row["median_ms"],
                p95_ms=row["p95_ms"],
                max_ms=row["max_ms"],
                queries=row["queries"],
                bytes=None,
                rss_mib=None,
                note=f"{row['history_included']} messages fit a {row['context_size']}-token context",
            )
            self.results.append(result)
        for row in self._measured(prompts["prompt_memory"]):
            self.results.append(
                Result(
                    op="prompt_memory",
                    size=row["size"],
                    unit="messages",
                    requests=row["requests"],
                    median_ms=row["median_ms"],
                    p95_ms=row["p95_ms"],
                    max_ms=row["max_ms"],
                    queries=row["queries"],
                    bytes=None,
                    rss_mib=None,
                    note=(
                        f"{row['history_included']} messages and {row['memory_items']} memories "
                        f"({row['memory_tokens']} tokens) in a {row['context_size']}-token context"
                    ),
                )
            )
        profile = {}
        if c.profile and data["chats"]:
            biggest = data["chats"][-1]
            urls = {
                "chat-html": f"/chats/{biggest['code']}/",
                "chat-json": (
                    api_chat.format(code=biggest["code"])
                    if api_chat
                    else f"/chats/{biggest['code']}/older/?before={biggest['last_seq'] + 1}"
                ),
            }
            self.write("Profiling the chat page with pyinstrument...\n")
            profile = self.probe(
                "profile",
                "--user",
                "bench",
                "--repeat",
                str(max(c.requests, 10)),
                "--output",
                str(c.output),
                *[f"--url={k}={v}" for k, v in urls.items()],
            )
        return self.report(data, profile)

    async def _measure_all(self, data: dict, api_chat: str, search: str, st_sets: list[dict]) -> None:
        passwords = data["passwords"]
        bench = await self.login("bench", passwords["bench"])
        try:
            if self.config.concurrency == 1:
                # Every chat size in the same turns: a machine that slows down during the run (it
                # does, by a fifth over minutes, the raw-SQL floor too) slows every size alike, so
                # comparing 100,000 messages with 100 compares the sizes, not two moments.
                sizes = ", ".join(f"{chat['size']:,}" for chat in data["chats"])
                self.write(f"Chats of {sizes} messages, in turns\n")
                await self.round_robin(
                    [row for chat in data["chats"] for row in self._chat_reads(bench, chat, api_chat)]
                )
                await self.round_robin(
                    [row for chat in data["chats"] for row in self._chat_writes(bench, chat)]
                )
            for chat in data["chats"] if self.config.concurrency > 1 else []:
                code, last, size = chat["code"], chat["last_seq"], chat["size"]
                self.write(f"Chat of {size:,} messages\n")
                await self.measure(bench, "floor", size, "messages", f"{FLOOR_PREFIX}{code}/")
                await self.measure(bench, "open_chat", size, "messages", f"/chats/{code}/")
                json_url = (
                    api_chat.format(code=code) if api_chat else f"/chats/{code}/older/?before={last + 1}"
                )
                await self.measure(
                    bench,
                    "chat_json",
                    size,
                    "messages",
                    json_url,
                    "" if api_chat else "older-page endpoint (no JSON API yet)",
                )
                await self.measure(
                    bench, "older_newest", size, "messages", f"/chats/{code}/older/?before={last + 1}"
                )
                await self.measure(
                    bench,
                    "older_middle",
                    size,
                    "messages",
                    f"/chats/{code}/older/?before={max(last // 2, 2)}",
                )
                await self.measure(
                    bench, "older_start", size, "messages", f"/chats/{code}/older/?before={min(51, last)}"
                )
            if self.config.concurrency > 1 and data["chats"]:
                # Writes go one at a time whatever the concurrency (a chat has one reply at a time),
                # in turns across the sizes as with one client: each size after the same neighbours.
                await self.round_robin(
                    [row for chat in data["chats"] for row in self._chat_writes(bench, chat)]
                )
            if search:
                total = data["messages"]
                await self.measure(
                    bench,
                    "search",
                    total,
                    "messages",
                    search.format(q=self.config.search_term),
                    f"q={self.config.search_term}",
                )
        finally:
            await bench.aclose()
        biggest = data["chats"][-1] if data["chats"] else None
        for chars in data["sets"]:
            client = await self.login(chars["username"], passwords[chars["username"]])
            try:
                self.write(f"{chars['size']:,} characters\n")
                if self.config.concurrency == 1 and biggest:
                    # The floor in turns with the gallery, for its ratio under the same load.
                    bench = await self.login("bench", passwords["bench"], connections=1)
                    try:
                        await self.round_robin(
                            [
                                (
                                    "floor",
                                    chars["size"],
                                    "characters",
                                    self._get(bench, f"{FLOOR_PREFIX}{biggest['code']}/"),
                                    "",
                                ),
                                (
                                    "gallery",
                                    chars["size"],
                                    "characters",
                                    self._get(client, "/characters/"),
                                    "",
                                ),
                            ]
                        )
                    finally:
                        await bench.aclose()
                else:
                    await self.measure(client, "gallery", chars["size"], "characters", "/characters/")
            finally:
                await client.aclose()
        for st_set in st_sets:
            await self.side_by_side(st_set)
        # In the browser last: SillyTavern's interface reading its largest chat leaves its server
        # busy collecting garbage for a while, which slowed the requests timed after it.
        for st_set in st_sets if self.config.browser_rounds else ():
            try:
                await self.side_by_side(st_set, browser=True)
            except CommandError as exc:  # the rest of the run is still reported
                self.notes.append(f"The browser rows of {Path(st_set['data_dir']).name} stopped: {exc}")
                self.write(f"  {self.notes[-1]}\n")

    def _chat_reads(self, bench: httpx.AsyncClient, chat: dict, api_chat: str) -> list[tuple]:
        """One chat's reads and its floor, as round-robin rows."""
        code, last, size = chat["code"], chat["last_seq"], chat["size"]
        json_url = api_chat.format(code=code) if api_chat else f"/chats/{code}/older/?before={last + 1}"
        reads = [
            ("floor", f"{FLOOR_PREFIX}{code}/"),
            ("open_chat", f"/chats/{code}/"),
            ("chat_json", json_url),
            ("older_newest", f"/chats/{code}/older/?before={last + 1}"),
            ("older_middle", f"/chats/{code}/older/?before={max(last // 2, 2)}"),
            ("older_start", f"/chats/{code}/older/?before={min(51, last)}"),
        ]
        return [(op, size, "messages", self._get(bench, url), "") for op, url in reads]

    def _chat_writes(self, bench: httpx.AsyncClient, chat: dict) -> list[tuple]:
        """One chat's writes and its write floor, as round-robin rows."""
        code, size = chat["code"], chat["size"]
        count = iter(range(10**9))

        async def floor_write():
            return (
                await self._timed(
                    bench, "POST", f"{FLOOR_WRITE_PREFIX}{code}/", content=f"floor {next(count)}"
                )
            )[0]

        edit = self._edit_step(bench, chat)

        async def edit_step():
            await edit()
            return self._last_sample

        async def send():
            return await self._send_one(bench, code, "Benchmark message: the lantern flickers.")

        return [
            ("floor_write", size, "messages", floor_write, ""),
            ("edit", size, "messages", edit_step, "version-checked"),
            ("send", size, "messages", send, "reply not generated (offline engine)"),
        ]

    # --- SillyTavern's data ---------------------------------------------------------------------

    def import_sillytavern(self, index: int, data_dir: Path) -> dict:
        """Import one gen_st_data.py folder for a user of its own, who owns nothing else."""
        info = bench_st.manifest(data_dir)
        username = f"bench-st-{index + 1}"
        url = self.config.st_urls[index] if index < len(self.config.st_urls) else ""
        self.write(f"Importing {data_dir} for {username} with import_sillytavern\n")
        made = self.probe("st-user", "--user", username)
        if made["characters"] and made["characters"] == info.get("characters_count"):
            # Imported by an earlier run. Not again: SillyTavern's saves in the write rows change its
            # chat files, which would then come in a second time as new chats.
            self.write(f"{username} has this data from an earlier run; not imported again.\n")
        else:
            self.manage(
                "import_sillytavern",
                str(bench_st.user_folder(data_dir, info)),
                "--user",
                username,
                stream=True,
            )
        described = self.probe("describe-st", "--user", username)
        if described["characters"] != info.get("characters_count"):
            raise CommandError(
                f"{username} owns {described['characters']} characters after the import; "
                f"the manifest of {data_dir} says {info.get('characters_count')}."
            )
        return {"data_dir": data_dir, "url": url, "manifest": info, **described}

    async def side_by_side(self, st_set: dict, *, browser: bool = False) -> None:
        """The rows of SillyTavern's report on the same data: SillyTavern (live, or its reference
        figures) and rpchat, interleaved request by request on one keep-alive connection each;
        with `browser`, the rows timed in Chromium instead (browser_rows)."""
        c = self.config
        info, url = st_set["manifest"], st_set["url"]
        cards = info["characters_count"]
        dataset = f"{Path(st_set['data_dir']).name} ({cards:,} card{'' if cards == 1 else 's'})"
        self.write(
            f"Beside SillyTavern {'at ' + url if url else '(reference figures)'} on {dataset}, "
            f"as {st_set['username']}{', in Chromium' if browser else ''}\n"
        )
        client = await self.login(st_set["username"], st_set["password"], connections=1)
        st = bench_st.SillyTavernClient(url) if url else None
        if st:
            await st.start()
        chats = {ch["title"]: ch for ch in st_set["chats"]}
        bench_character = info.get("bench_character", {})
        avatar = bench_character.get("avatar", "")

        def rp_get(path: str):
            async def step():
                sample, _ = await self._timed(client, "GET", path)
                return sample.ms, sample.size

            return step

        def st_post(path: str, payload: dict | bytes):
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

            async def step():
                return await st.post(path, body=body)

            return step

        async def row(
            op: str, size: int, steps: dict, st_what: str, primers: dict | None = None, rounds: int = 0
        ) -> None:
            if not st:
                steps.pop("sillytavern", None)
            timings = await bench_st.interleaved(
                steps,
                requests=rounds or c.requests,
                warmup=1 if rounds else c.warmup,
                primers=primers,
            )
            st_timing = timings.pop("sillytavern", None)
            source = "live" if st_timing else ""
            if st_timing is None and (op, size) in bench_st.REFERENCE:
                med, p95 = bench_st.REFERENCE[(op, size)]
                st_timing, source = bench_st.Timing(med, p95 or med, 0, 0), "reference"
            self._sample_memory()
            result = bench_st.SideRow(op, size, dataset, st_timing, source, st_what, timings)
            self.side_rows.append(result)
            cells = "  ".join(f"{k} {v.median_ms:8.2f}" for k, v in timings.items())
            st_cell = f"{st_timing.median_ms:8.2f} ({source})" if st_timing else "-"
            self.write(f"  {result.label:<44} SillyTavern {st_cell}  rpchat {cells}\n")

        try:
            if browser:
                await self.browser_rows(st_set, chats, avatar, row)
                return
            for chat_info in info.get("chats", []):
                chat = chats.get(chat_info["file_name"])
                if not chat:
                    continue
                get_body = {k: chat_info[k] for k in ("ch_name", "file_name", "avatar_url")}
                await row(
                    "open_chat",
                    chat_info["messages"],
                    {
                        "sillytavern": st_post("/api/chats/get", get_body) if st else None,
                        "html": rp_get(f"/chats/{chat['code']}/"),
                        "json": rp_get(f"/api/chats/{chat['code']}/messages/"),
                    },
                    "POST /api/chats/get (the whole chat)",
                )
            await row(
                "list_characters",
                info["characters_count"],
                {
                    "sillytavern": st_post("/api/characters/all", {}) if st else None,
                    "html": rp_get("/characters/"),
                    "json": rp_get("/api/characters/"),
                },
                "POST /api/characters/all (every card)",
            )
            if avatar and st_set["chats"]:
                await row(
                    "list_chats",
                    len(st_set["chats"]),
                    {
                        "sillytavern": st_post("/api/characters/chats", {"avatar_url": avatar})
                        if st
                        else None,
                        "html": rp_get("/chats/"),
                        "json": rp_get("/api/chats/"),
                    },
                    "POST /api/characters/chats",
                )
            for chat_info in info.get("chats", []):
                chat = chats.get(chat_info["file_name"])
                if not chat or chat_info["messages"] not in (
                    min(s["messages"] for s in info["chats"]),
                    max(s["messages"] for s in info["chats"]),
                ):
                    continue
                steps = {}
                if st:
                    steps["sillytavern"] = self._st_save_step(st, st_set, chat_info)
                steps["edit"] = self._edit_step(client, chat)
                steps["send"] = self._send_step(client, chat)
                await row(
                    "write",
                    chat_info["messages"],
                    steps,
                    "POST /api/chats/save (the whole chat, as its browser sends after each message)",
                    # A send primed by a send would add two more messages to the chat each round.
                    primers={"send": steps["edit"]},
                )
        finally:
            await client.aclose()
            if st:
                await st.aclose()

    async def browser_rows(self, st_set: dict, chats: dict, avatar: str, row) -> None:
        """Each chat opened, and the character list shown, in Chromium until they are on screen
        (tools.bench_browser): rpchat's pages beside SillyTavern's interface, one tab each."""
        info, url = st_set["manifest"], st_set["url"]
        browser = bench_browser.Browser()
        try:
            await browser.start()
            tab = await browser.rpchat_tab(self.base_url, st_set["username"], st_set["password"])
            st_tab = await browser.sillytavern_tab(url, avatar) if url and avatar else None
            page_size = settings.RPCHAT["MESSAGE_PAGE_SIZE"]
            gallery_size = settings.RPCHAT["GALLERY_PAGE_SIZE"]
            # The least any page costs in this Chromium: /healthz (two bytes of text) loaded the
            # same way, in the same rounds.
            empty = bench_browser.rpchat_open(tab, f"{self.base_url}/healthz", expected=1, selector="body")

            async def browser_row(op: str, size: int, rpchat, sillytavern, st_what: str, **more) -> None:
                steps = {"sillytavern": sillytavern} if st_tab else {}
                steps.update(html=rpchat, **more, empty_page=empty)
                await row(op, size, steps, st_what, rounds=self.config.browser_rounds)

            for chat_info in info.get("chats", []):
                chat = chats.get(chat_info["file_name"])
                if not chat:
                    continue
                size = chat_info["messages"]
                await browser_row(
                    "open_chat_browser",
                    size,
                    bench_browser.rpchat_open(
                        tab, f"{self.base_url}/chats/{chat['code']}/", expected=min(size, page_size)
                    ),
                    st_tab
                    and bench_browser.sillytavern_open(
                        st_tab, avatar, chat_info["file_name"], expected=min(size, bench_browser.ST_SHOWN)
                    ),
                    f"its interface's reloadCurrentChat: the whole chat read, the newest "
                    f"{bench_browser.ST_SHOWN} drawn (rpchat's page: the newest {page_size})",
                )
            cards = info["characters_count"]
            # A tab left on the gallery (where logging in lands) for its in-place redraw.
            list_tab = await browser.rpchat_tab(self.base_url, st_set["username"], st_set["password"])
            await browser_row(
                "list_characters_browser",
                cards,
                bench_browser.rpchat_open(
                    tab,
                    f"{self.base_url}/characters/",
                    expected=min(cards, gallery_size),
                    selector=".character-card",
                ),
                st_tab
                and bench_browser.sillytavern_list(st_tab, expected=min(cards, bench_browser.ST_LIST_SHOWN)),
                f"its interface's getCharacters: every card read, the first {bench_browser.ST_LIST_SHOWN} "
                f"drawn (rpchat's gallery: the first {gallery_size}, as a page and redrawn in place)",
                in_place=bench_browser.rpchat_redraw_list(list_tab, expected=min(cards, gallery_size)),
            )
        finally:
            await browser.close()

    def _st_save_step(self, st, st_set: dict, chat_info: dict):
        """SillyTavern's write: the whole chat posted back, one message changed (bodies encoded
        before the clock starts, two of them in turn so each save changes the file)."""
        folder = bench_st.user_folder(st_set["data_dir"], st_set["manifest"])
        path = folder / "chats" / chat_info["ch_name"] / f"{chat_info['file_name']}.jsonl"
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        bodies = []
        for n in range(2):
            lines[-1] = {**lines[-1], "mes": f"{lines[-1].get('mes', '')[:300]} (edit {n})"}
            bodies.append(
                json.dumps(
                    {
                        "ch_name": chat_info["ch_name"],
                        "file_name": chat_info["file_name"],
                        "avatar_url": chat_info["avatar_url"],
                        "chat": lines,
                    }
                ).encode()
            )
        count = iter(range(10**9))

        async def step():
            return await st.post("/api/chats/save", body=bodies[next(count) % 2])

        return step

    def _edit_step(self, client: httpx.AsyncClient, chat: dict):
        state = {"version": chat["edit_version"], "n": 0}

        async def step():
            state["n"] += 1
            sample, response = await self._timed(
                client,
                "POST",
                f"/chats/{chat['code']}/messages/{chat['edit_seq']}/edit/",
                data={"content": f"Edited by the benchmark ({state['n']}).", "version": state["version"]},
                headers={"X-CSRFToken": client.cookies.get("csrftoken", ""), "Referer": self.base_url + "/"},
            )
            state["version"] = response.json()["version"]  # the version the edit left
            self._last_sample = sample
            return sample.ms, sample.size

        return step

    def _send_step(self, client: httpx.AsyncClient, chat: dict):
        async def step():
            sample = await self._send_one(client, chat["code"], "Benchmark message: the lantern flickers.")
            return sample.ms, sample.size

        return step

    # --- the report -----------------------------------------------------------------------------

    def report(self, data: dict, profile: dict) -> dict:
        by = {(r.op, r.size, r.unit): r for r in self.results}
        for r in self.results:
            # Writes against the bare UPDATE, reads against the bare SELECT, of the same chat (or
            # taken in turns with the same gallery).
            kind = "floor_write" if r.op in WRITES else "floor"
            floor = by.get((kind, r.size, r.unit)) if r.op not in FLOORS else None
            if floor is None and r.op not in FLOORS:
                floors = [x for x in self.results if x.op == kind]
                floor = floors[-1] if floors else None
            if floor is not None and r.op not in FLOORS:
                r.ratio_to_floor = round(r.median_ms / floor.median_ms, 2) if floor.median_ms else None
        flatness = {}
        for op in sorted({r.op for r in self.results} - set(FLOORS)):
            rows = sorted((r for r in self.results if r.op == op), key=lambda r: r.size)
            if len(rows) >= 2 and rows[0].median_ms:
                flatness[op] = {
                    "from": rows[0].size,
                    "to": rows[-1].size,
                    "ratio": round(rows[-1].median_ms / rows[0].median_ms, 2),
                }
        targets = []
        for name, op, compare, limit in TARGETS:
            rows = sorted((r for r in self.results if r.op == op), key=lambda r: r.size)
            value, detail = None, ""
            if rows and compare == "flat" and op in flatness:
                value = flatness[op]["ratio"]
                detail = f"{rows[-1].median_ms} ms at {rows[-1].size:,} vs {rows[0].median_ms} ms at {rows[0].size:,}"
            elif rows and compare == "floor":
                value = max(r.ratio_to_floor or 0 for r in rows)
                detail = "worst size: " + ", ".join(f"{r.size:,}: {r.ratio_to_floor}x" for r in rows)
            elif rows and compare.startswith("vs:"):
                other = {r.size: r for r in self.results if r.op == compare[3:]}
                ratios = [
                    (r.size, round(r.median_ms / other[r.size].median_ms, 2)) for r in rows if r.size in other
                ]
                if ratios:
                    value = max(v for _, v in ratios)
                    detail = ", ".join(f"{s:,}: {v}x" for s, v in ratios)
            targets.append(
                {
                    "target": name,
                    "value": value,
                    "limit": limit,
                    "met": value is not None and value <= limit,
                    "detail": detail,
                }
            )
        c = self.config
        return {
            "meta": {
                "command": c.command,
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
                "database": data.get("vendor"),
                "database_url": redact(c.database_url),
                "cache": "redis" if c.redis_url else "local memory",
                "server": "uvicorn, one process, loopback, MALLOC_ARENA_MAX=2 as make run",
                "requests": c.requests,
                "concurrency": c.concurrency,
                "warmup": c.warmup,
                "chat_sizes": [ch["size"] for ch in data["chats"]],
                "character_sets": [s["size"] for s in data["sets"]],
            },
            "operations": [{**asdict(r), "label": r.label} for r in self.results],
            "flatness": flatness,
            "targets": targets,
            "profile": profile,
            "side_by_side": bench_st.rows_as_dicts(self.side_rows),
            "notes": self.notes,
        }


# --- writing it out -------------------------------------------------------------------------------


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def table(report: dict) -> list[list[str]]:
    rows = [["operation", "size", "median ms", "p95 ms", "max ms", "queries", "bytes", "RSS MiB", "x floor"]]
    for r in report["operations"]:
        rows.append(
            [
                r["label"],
                f"{r['size']:,} {r['unit']}",
                _fmt(r["median_ms"]),
                _fmt(r["p95_ms"]),
                _fmt(r["max_ms"]),
                _fmt(r["queries"], 0) if r["queries"] is not None else "–",
                _fmt(r["bytes"]),
                _fmt(r["rss_mib"], 1),
                _fmt(r["ratio_to_floor"]),
            ]
        )
    return rows


def terminal(report: dict) -> str:
    rows = table(report)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("")
    for t in report["targets"]:
        mark = "met" if t["met"] else ("MISSED" if t["value"] is not None else "not measured")
        lines.append(f"[{mark}] {t['target']}: {_fmt(t['value'])}x (limit {t['limit']}x) {t['detail']}")
    if report.get("side_by_side"):
        rows = bench_st.table(report["side_by_side"])
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        live = any(r["st_source"] == "live" for r in report["side_by_side"])
        lines += [
            "",
            "Beside SillyTavern, the same data, interleaved"
            if live
            else "Beside SillyTavern (ref. = " + bench_st.REFERENCE_SOURCE + "):",
        ]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def markdown(report: dict) -> str:
    m = report["meta"]
    out = [
        "# rpchat benchmark",
        "",
        f"- command: `{m['command']}`",
        f"- date: {m['date']}; machine: {m['machine']['cpus']} CPUs, {m['machine']['platform']}, Python {m['machine']['python']}",
        f"- database: {m['database']} ({m['database_url']}); cache: {m['cache']}; server: {m['server']}",
        (
            f"- {m['requests']} requests per figure, {m['concurrency']} at a time, after {m['warmup']} warm-ups; "
            "times from sending the request to the last byte of the body"
        ),
        "",
        "| " + " | ".join(table(report)[0]) + " |",
        "|" + "---|" * 2 + "---:|" * 7,
    ]
    out += ["| " + " | ".join(row) + " |" for row in table(report)[1:]]
    out += ["", "## Targets", "", "| target | value | limit | met | detail |", "|---|---:|---:|---|---|"]
    out += [
        f"| {t['target']} | {_fmt(t['value'])}x | {t['limit']}x | {'yes' if t['met'] else 'no'} | {t['detail']} |"
        for t in report["targets"]
    ]
    out += [
        "",
        "## Flatness (largest size against smallest)",
        "",
        "| operation | from | to | ratio |",
        "|---|---:|---:|---:|",
    ]
    out += [
        f"| {LABELS.get(op, op)} | {f['from']:,} | {f['to']:,} | {f['ratio']}x |"
        for op, f in report["flatness"].items()
    ]
    if report["profile"]:
        out += ["", "## Where the time goes (pyinstrument, in-process, Django's full handler)", ""]
        for name, p in report["profile"].items():
            shares = ", ".join(f"{k} {v * 100:.0f}%" for k, v in p["share"].items() if v >= 0.01)
            out.append(f"- **{name}** ({p['per_request_ms']} ms a request): {shares}. Profile: `{p['html']}`")
    if report.get("side_by_side"):
        live = any(r["st_source"] == "live" for r in report["side_by_side"])
        out += [
            "",
            "## Beside SillyTavern, the same data and operations"
            + (" (measured live, interleaved)" if live else ""),
            "",
        ]
        if not live:
            out += [f"SillyTavern's column: {bench_st.REFERENCE_SOURCE}.", ""]
        rows = bench_st.table(report["side_by_side"])
        out += ["| " + " | ".join(rows[0]) + " |", "|---|---|" + "---:|" * (len(rows[0]) - 3) + "---|"]
        out += ["| " + " | ".join(row) + " |" for row in rows[1:]]
        whats = {r["op"]: r["st_what"] for r in report["side_by_side"] if r["st_what"]}
        if whats:
            out += ["", "SillyTavern's requests: " + "; ".join(f"{k}: {v}" for k, v in whats.items()) + "."]
    if report["notes"]:
        out += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(out) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [2, 1]})
    chat_ops = [
        "floor",
        "open_chat",
        "chat_json",
        "older_middle",
        "older_start",
        "send",
        "prompt",
        "prompt_memory",
    ]
    for op in chat_ops:
        rows = sorted((r for r in report["operations"] if r["op"] == op), key=lambda r: r["size"])
        if rows:
            left.plot([r["size"] for r in rows], [r["median_ms"] for r in rows], marker="o", label=LABELS[op])
    live = sorted(
        (r["size"], r["sillytavern"]["median_ms"])
        for r in report.get("side_by_side", [])
        if r["op"] == "open_chat" and r["st_source"] == "live"
    )
    st = live or sorted((size, v[0]) for (op, size), v in bench_st.REFERENCE.items() if op == "open_chat")
    left.plot(
        [size for size, _ in st],
        [ms for _, ms in st],
        linestyle="--",
        color="grey",
        marker="x",
        label="SillyTavern: open a chat (" + ("measured in this run" if live else "reference figures") + ")",
    )
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("messages in the chat")
    left.set_ylabel("median latency, ms (log)")
    left.set_title("Chat operations against chat length")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    rows = sorted((r for r in report["operations"] if r["op"] == "gallery"), key=lambda r: r["size"])
    if rows:
        right.plot(
            [r["size"] for r in rows],
            [r["median_ms"] for r in rows],
            marker="o",
            label="rpchat: gallery first page",
        )
        right.plot(
            [r["size"] for r in rows],
            [r["p95_ms"] for r in rows],
            marker=".",
            linestyle=":",
            label="rpchat: p95",
        )
    right.set_xscale("log")
    right.set_ylim(bottom=0)
    right.set_xlabel("characters the user has")
    right.set_ylabel("latency, ms")
    right.set_title("Gallery against number of characters")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=7)
    m = report["meta"]
    fig.suptitle(
        f"rpchat on {m['database']}, {m['machine']['cpus']} CPUs, {m['concurrency']} concurrent clients"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(report: dict, output: Path) -> list[Path]:
    paths = [output / "bench.json", output / "bench.md", output / "bench.png"]
    paths[0].write_text(json.dumps(report, indent=1))
    paths[1].write_text(markdown(report))
    plot(report, paths[2])
    return paths
