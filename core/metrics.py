"""Request, database, cache and generation metrics: Prometheus series plus a recent window per route.

The middleware (`rpchat.middleware.RequestMetricsMiddleware`) opens a `RequestStats` for each request
in a context variable; the query wrapper installed on every database connection (`core.apps`) adds
to it, whichever thread the view runs in, because `sync_to_async` carries the context along. Queries
that cachalot answers never reach the connection, so they are not counted: the counts are real
database round trips.

Prometheus gets histograms (for /metrics and dashboards); the Performance page gets exact medians
and 95th percentiles from the last `WINDOW` requests of each route in this process.
"""

from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

logger = logging.getLogger("rpchat.slow")

# Requests kept per route for the Performance page's medians, and recent requests for its timeline.
WINDOW = 500
TIMELINE = 300
UNMATCHED = "<unmatched>"

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10)
QUERY_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100)
SIZE_BUCKETS = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)

REQUEST_SECONDS = Histogram(
    "rpchat_http_request_duration_seconds",
    "Time from the request reaching Django to the response (its first byte for streams).",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
REQUESTS = Counter("rpchat_http_requests", "Requests answered.", ["route", "method", "status"])
REQUEST_QUERIES = Histogram(
    "rpchat_http_request_queries",
    "Database queries a request ran (cachalot hits excluded: they never reach the database).",
    ["route"],
    buckets=QUERY_BUCKETS,
)
REQUEST_DB_SECONDS = Histogram(
    "rpchat_http_request_db_seconds",
    "Time a request spent in database queries.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)
RESPONSE_BYTES = Histogram(
    "rpchat_http_response_bytes",
    "Response body size (streams: Content-Length when known).",
    ["route"],
    buckets=SIZE_BUCKETS,
)
SLOW_REQUESTS = Counter(
    "rpchat_http_slow_requests", "Requests slower than RPCHAT_SLOW_REQUEST_MS.", ["route"]
)
SLOW_QUERIES = Counter("rpchat_db_slow_queries", "Queries slower than RPCHAT_SLOW_QUERY_MS.")
CACHE_LOOKUPS = Counter(
    "rpchat_cache_lookups",
    "Django cache reads by cache (default, cachalot) and result (hit, miss).",
    ["cache", "result"],
)
GENERATION_TTFT = Histogram(
    "rpchat_generation_time_to_first_token_seconds",
    "From starting a reply to its first piece of text.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120),
)
GENERATION_TPS = Histogram(
    "rpchat_generation_tokens_per_second",
    "Pieces of text streamed per second after the first.",
    buckets=(1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 400),
)


@dataclass
class RequestStats:
    """What one request has cost so far."""

    started: float = field(default_factory=time.perf_counter)
    queries: int = 0
    db_seconds: float = 0.0
    # Values read many times while answering one request (see per_request()).
    memo: dict = field(default_factory=dict)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


_current: ContextVar[RequestStats | None] = ContextVar("rpchat_request_stats", default=None)


def begin_request():
    """Start counting for a request; returns the token `end_request` needs."""
    stats = RequestStats()
    return stats, _current.set(stats)


def end_request(token) -> None:
    _current.reset(token)


def current_request() -> RequestStats | None:
    return _current.get()


def per_request(key: str, factory):
    """factory(), computed once per request (every call outside a request computes it again)."""
    stats = _current.get()
    if stats is None:
        return factory()
    if key not in stats.memo:
        stats.memo[key] = factory()
    return stats.memo[key]


def query_wrapper(execute, sql, params, many, context):
    """Installed on every connection: count and time each query, log slow ones (never their params)."""
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        elapsed = time.perf_counter() - started
        stats = _current.get()
        if stats is not None:
            stats.queries += 1
            stats.db_seconds += elapsed
        if elapsed * 1000 >= settings.RPCHAT["SLOW_QUERY_MS"]:
            SLOW_QUERIES.inc()
            # The SQL with placeholders only: parameters may hold secrets (API keys, passwords).
            logger.warning("slow query: %.0f ms: %s", elapsed * 1000, " ".join(str(sql).split())[:1000])


# --- the recent window, for the Performance page -----------------------------------------------


@dataclass
class _Sample:
    seconds: float
    queries: int
    db_seconds: float
    size: int | None


class _Recent:
    def __init__(self):
        self.lock = threading.Lock()
        self.routes: dict[tuple[str, str], deque[_Sample]] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.timeline: deque[tuple[float, str, float]] = deque(maxlen=TIMELINE)
        self.ttft: deque[float] = deque(maxlen=WINDOW)
        self.tps: deque[float] = deque(maxlen=WINDOW)
        self.since = time.time()

    def add(self, route: str, method: str, sample: _Sample) -> None:
        key = (route, method)
        with self.lock:
            self.routes.setdefault(key, deque(maxlen=WINDOW)).append(sample)
            self.counts[key] = self.counts.get(key, 0) + 1
            self.timeline.append((time.time(), route, sample.seconds))

    def clear(self) -> None:
        with self.lock:
            self.routes.clear()
            self.counts.clear()
            self.timeline.clear()
            self.ttft.clear()
            self.tps.clear()
            self.since = time.time()


recent = _Recent()


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(q * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def observe_request(*, route: str, method: str, status: int, stats: RequestStats, size: int | None) -> float:
    """Record a finished request everywhere; returns its duration in seconds."""
    seconds = stats.elapsed
    REQUEST_SECONDS.labels(route, method).observe(seconds)
    REQUESTS.labels(route, method, str(status)).inc()
    REQUEST_QUERIES.labels(route).observe(stats.queries)
    REQUEST_DB_SECONDS.labels(route).observe(stats.db_seconds)
    if size is not None:
        RESPONSE_BYTES.labels(route).observe(size)
    recent.add(route, method, _Sample(seconds, stats.queries, stats.db_seconds, size))
    if seconds * 1000 >= settings.RPCHAT["SLOW_REQUEST_MS"]:
        SLOW_REQUESTS.labels(route).inc()
        logger.warning(
            "slow request: %s %s took %.0f ms, %d queries (%.0f ms in the database), status %s",
            method,
            route,
            seconds * 1000,
            stats.queries,
            stats.db_seconds * 1000,
            status,
        )
    return seconds


def observe_cache(cache: str, hit: bool) -> None:
    CACHE_LOOKUPS.labels(cache, "hit" if hit else "miss").inc()


def observe_generation(*, ttft_ms: float | None, tokens_per_second: float | None) -> None:
    """Called once a reply is finished, with what the generation measured (either may be missing)."""
    try:
        if ttft_ms is not None:
            GENERATION_TTFT.observe(ttft_ms / 1000)
            recent.ttft.append(float(ttft_ms))
        if tokens_per_second is not None:
            GENERATION_TPS.observe(tokens_per_second)
            recent.tps.append(float(tokens_per_second))
    except Exception:  # a metric must never break a reply
        logger.exception("could not record generation metrics")


# --- reading it back -----------------------------------------------------------------------------


def registry() -> CollectorRegistry:
    """The registry /metrics exposes: every worker's files in multiprocess mode, else this process's."""
    if os.getenv("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return merged
    return REGISTRY


def _process() -> dict:
    """This process's resident memory and CPU time, from /proc (Linux) or resource (elsewhere)."""
    rss = None
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                    break
    except OSError:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = os.times()
    return {"rss_bytes": rss, "cpu_seconds": round(times.user + times.system, 2), "pid": os.getpid()}


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def snapshot() -> dict:
    """Everything the Performance page shows, for this process, as plain data."""
    with recent.lock:
        routes = {key: list(samples) for key, samples in recent.routes.items()}
        counts = dict(recent.counts)
        timeline = list(recent.timeline)
        ttft = list(recent.ttft)
        tps = list(recent.tps)
        since = recent.since
    rows = []
    for (route, method), samples in sorted(routes.items()):
        durations = [s.seconds for s in samples]
        queries = [s.queries for s in samples]
        sizes = [s.size for s in samples if s.size is not None]
        rows.append(
            {
                "route": route,
                "method": method,
                "count": counts[(route, method)],
                "window": len(samples),
                "median_ms": _ms(statistics.median(durations)),
                "p95_ms": _ms(_percentile(durations, 0.95)),
                "max_ms": _ms(max(durations)),
                "queries_median": statistics.median(queries),
                "queries_max": max(queries),
                "db_median_ms": _ms(statistics.median(s.db_seconds for s in samples)),
                "bytes_median": int(statistics.median(sizes)) if sizes else None,
            }
        )
    rows.sort(key=lambda r: -r["count"])
    caches = {}
    for name in ("default", "cachalot"):
        hits = REGISTRY.get_sample_value("rpchat_cache_lookups_total", {"cache": name, "result": "hit"}) or 0
        misses = (
            REGISTRY.get_sample_value("rpchat_cache_lookups_total", {"cache": name, "result": "miss"}) or 0
        )
        total = hits + misses
        caches[name] = {
            "hits": int(hits),
            "misses": int(misses),
            "hit_rate": round(hits / total, 4) if total else None,
        }

    def summary(values: list[float]) -> dict:
        if not values:
            return {"count": 0, "median": None, "p95": None}
        return {
            "count": len(values),
            "median": round(statistics.median(values), 1),
            "p95": round(_percentile(values, 0.95), 1),
        }

    return {
        "since": since,
        "now": time.time(),
        "window": WINDOW,
        "routes": rows,
        "caches": caches,
        "generation": {"ttft_ms": summary(ttft), "tokens_per_second": summary(tps)},
        "process": _process(),
        "timeline": [{"t": round(t, 3), "route": r, "ms": _ms(s)} for t, r, s in timeline],
        "multiprocess": bool(os.getenv("PROMETHEUS_MULTIPROC_DIR")),
    }
