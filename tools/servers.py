"""rpchat in a process of its own, for the benchmark, the stress test and the browser tests.

One way to start uvicorn on a free loopback port and wait for /healthz, one way to run manage.py
against the same environment, and the percentile the reports print.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
# The Django application, and the one the benchmark serves (it adds the raw-SQL floor in front).
APP = "rpchat.asgi:application"
BENCH_APP = "tools.bench_asgi:application"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(**overrides: str) -> dict:
    """This process's environment for a server of its own: no database, cache or test worker of ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DATABASE_REPLICA_URL", "REDIS_URL", "PYTEST_XDIST_WORKER")
    }
    env.update(DEBUG="0", PYTHONUNBUFFERED="1", **overrides)
    return env


def manage_py(env: dict, *args: str) -> str:
    """Run a manage.py command in a subprocess with `env`; its output, or RuntimeError."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stderr[-3000:] or done.stdout[-3000:]}")
    return done.stdout


class Server:
    """A running uvicorn process: its base URL and process (for its RSS)."""

    def __init__(self, base_url: str, process: subprocess.Popen):
        self.base_url = base_url
        self.process = process


@contextmanager
def uvicorn_process(
    *,
    env: dict,
    log_path: Path,
    app: str = APP,
    startup_timeout: float = 90,
    extra_args: tuple[str, ...] = ("--no-access-log",),
) -> Iterator[Server]:
    """A uvicorn process serving `app` on a free loopback port, up once /healthz answers 200."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {"MALLOC_ARENA_MAX": "2", **env}  # as `make run` serves (docs/operations.md)
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [*command, *extra_args], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + startup_timeout
            while True:
                try:
                    if httpx.get(base_url + "/healthz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("The server did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.2)
            yield Server(base_url, process)
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0 to 100) of `values`, interpolated; 0 for none."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(p) - 1))]
