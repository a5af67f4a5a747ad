"""`manage.py bench` beside SillyTavern: the same data, the same operations, timed interleaved.

Each SillyTavern data set made by `shared/bench/gen_st_data.py` is imported into the bench database
with `manage.py import_sillytavern` for a user of its own (`bench-st-1`, `bench-st-2`, ...) who owns
nothing else, so "list characters, 1 card" lists one card and "list chats" lists that character's
chats, as SillyTavern does for the same folder.

With a live SillyTavern (`--sillytavern http://127.0.0.1:PORT`, serving that data folder), every
row is timed interleaved: one SillyTavern request, then the rpchat requests of the same row, over
one keep-alive connection each, `--warmup` rounds untimed, then `--requests` rounds, each timed
request right after the same one untimed (see `interleaved`). Without one,
SillyTavern's column is the reference figures of `shared/bench/SILLYTAVERN-REFERENCE.md`, labelled
as such: those were measured on another day, under another load.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from django.core.management import CommandError

from tools.servers import percentile

# SillyTavern 1.12.6 from shared/bench/SILLYTAVERN-REFERENCE.md (median, p95 in ms, no compression),
# measured there, not here: used only when no live SillyTavern is given, and labelled "reference".
REFERENCE = {
    ("open_chat", 100): (3.2, 6.4),
    ("open_chat", 1000): (14.9, 18.4),
    ("open_chat", 10000): (205, 293),
    ("open_chat", 100000): (2504, 2826),
    ("list_characters", 1): (2.2, 5.5),
    ("list_characters", 1000): (284, 407),
    # The interleaved run of the same report (load 4 to 6): a whole-chat save.
    ("write", 100): (11.6, None),
    ("write", 100000): (3040, None),
}
REFERENCE_SOURCE = "reference figures from shared/bench/SILLYTAVERN-REFERENCE.md (not measured in this run)"

OPERATIONS = {
    "open_chat": ("open a chat", "messages"),
    "open_chat_browser": ("open a chat in Chromium", "messages"),
    "list_characters_browser": ("list characters in Chromium", "cards"),
    "list_characters": ("list characters", "cards"),
    "list_chats": ("list one character's chats", "chats"),
    "write": ("write one message", "messages"),
}


@dataclass
class Timing:
    median_ms: float
    p95_ms: float
    bytes: int
    requests: int


@dataclass
class SideRow:
    op: str
    size: int
    dataset: str
    sillytavern: Timing | None
    st_source: str  # "live", "reference" or ""
    st_what: str
    rpchat: dict[str, Timing]  # "html"/"json", or as COLUMNS says

    @property
    def label(self) -> str:
        name, unit = OPERATIONS[self.op]
        return f"{name}, {self.size:,} {unit.removesuffix('s') if self.size == 1 else unit}"


def manifest(data_dir: Path) -> dict:
    """gen_st_data.py's manifest: <data root>.manifest.json (the folder given may be the user folder)."""
    root = Path(data_dir)
    for candidate in (
        Path(str(root).rstrip("/") + ".manifest.json"),
        Path(str(root.parent).rstrip("/") + ".manifest.json"),
        root / "manifest.json",
    ):
        if candidate.exists():
            return json.loads(candidate.read_text())
    raise CommandError(
        f"{data_dir}: no manifest of gen_st_data.py beside it ({root.name}.manifest.json); "
        "make SillyTavern's data with shared/bench/gen_st_data.py."
    )


def user_folder(data_dir: Path, info: dict) -> Path:
    root = Path(data_dir)
    user = info.get("user", "default-user")
    return root / user if (root / user).is_dir() else root


def _timing(samples: list[tuple[float, int]]) -> Timing:
    times = [ms for ms, _ in samples]
    return Timing(
        median_ms=round(statistics.median(times), 2),
        p95_ms=round(percentile(times, 95), 2),
        bytes=int(statistics.median(size for _, size in samples)),
        requests=len(samples),
    )


class SillyTavernClient:
    """One keep-alive connection to a SillyTavern with user accounts off, through its CSRF handshake."""

    def __init__(self, url: str):
        self.client = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=300,
            headers={"Accept-Encoding": "identity"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )

    async def start(self) -> None:
        try:
            response = await self.client.get("/csrf-token")
            response.raise_for_status()
            self.client.headers["X-CSRF-Token"] = response.json()["token"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise CommandError(
                f"SillyTavern at {self.client.base_url} did not answer /csrf-token: {exc}"
            ) from exc

    async def post(self, url: str, *, body: bytes) -> tuple[float, int]:
        started = time.perf_counter()
        response = await self.client.post(url, content=body, headers={"Content-Type": "application/json"})
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise CommandError(f"SillyTavern: POST {url} answered HTTP {response.status_code}")
        return elapsed, len(response.content)

    async def aclose(self) -> None:
        await self.client.aclose()


Step = Callable[[], Awaitable[tuple[float, int]]]


async def interleaved(
    steps: dict[str, Step],
    *,
    requests: int,
    warmup: int,
    primed: bool = True,
    primers: dict[str, Step] | None = None,
) -> dict[str, Timing]:
    """Run each step once per round, in turn, `warmup` rounds untimed, then `requests` timed ones.

    `primed`: each timed request comes right after an untimed one to the same server: the same
    request, or its entry in `primers` (a write that must not change more than the timed one
    does). On a machine that gives an idle process's CPU and memory to others (a small VM), the
    first request after a pause runs several times slower: rpchat's chat page after 2 s idle took
    10 to 28 ms of app time against 3.2, so its rows beside a 2-second SillyTavern request measured
    SillyTavern's length, not rpchat. Primed, each server's timed request follows one of its own,
    as on a busy server."""
    primers = primers or {}
    samples: dict[str, list[tuple[float, int]]] = {name: [] for name in steps}
    for i in range(warmup + requests):
        for name, step in steps.items():
            if primed and i >= warmup:
                await primers.get(name, step)()
            sample = await step()
            if i >= warmup:
                samples[name].append(sample)
    return {name: _timing(s) for name, s in samples.items()}


# The rpchat figures a row's two columns hold, where not the page ("html") and the API ("json").
COLUMNS = {"write": ("edit", "send"), "list_characters_browser": ("html", "in_place")}


def table(rows: list[dict]) -> list[list[str]]:
    out = [["data", "operation", "SillyTavern ms", "rpchat ms", "rpchat API ms", "rpchat vs SillyTavern"]]
    for r in rows:
        st = r["sillytavern"]
        st_cell = "–"
        if st:
            st_cell = f"{st['median_ms']:,.1f}" + ("" if r["st_source"] == "live" else " (ref.)")
        cells = []
        keys = COLUMNS.get(r["op"], ("html", "json"))
        for key in keys:
            t = r["rpchat"].get(key)
            named = key not in ("html", "json")  # a column holding something else says what
            cells.append(
                f"{t['median_ms']:,.1f}" + (f" ({key.replace('_', ' ')})" if named else "") if t else "–"
            )
        if empty := r["rpchat"].get("empty_page"):  # the browser rows: what any page costs there
            cells[0] += f" (an empty page: {empty['median_ms']:,.1f})"
        timed = [t["median_ms"] for key, t in r["rpchat"].items() if key in keys]
        best, worst = min(timed, default=None), max(timed, default=None)
        if st and best:
            ratio = st["median_ms"] / worst
            verdict = f"{ratio:,.1f}x faster" if ratio >= 1 else f"{1 / ratio:,.1f}x SLOWER"
            if st["median_ms"] / best >= 1 > ratio:
                verdict += " (the faster rpchat column is ahead)"
        else:
            verdict = "–"
        out.append([r["dataset"], r["label"], st_cell, *cells, verdict])
    return out


def rows_as_dicts(rows: list[SideRow]) -> list[dict]:
    return [{**asdict(r), "label": r.label} for r in rows]
