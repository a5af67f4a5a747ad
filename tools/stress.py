"""Many clients chatting at once over real HTTP, then a check of every row they wrote.

Used by `manage.py stress`. A run: make users and characters in the database the server uses, let
each client log in and, until the time is up, send messages (each with its own idempotency key,
some sent twice on purpose) into its own chat and into a chat it shares with other clients, follow
every reply's stream to the end, and wait out "a reply is still being written" (409) on shared
chats before sending again. Afterwards `verify` reads the chats back and lists every inconsistency.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import os
import random
import re
import secrets
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password

from characters.models import Character
from chats.models import ChatSession, Message
from tools.servers import manage_py, server_env, uvicorn_process
from tools.tiny_model import write_tiny_gguf

# The built-in engine's context with the tiny model (the site setting's maximum).
TINY_CONTEXT = 8192
# Server log lines that count as errors even when every response looked fine.
LOG_ERRORS = ("database is locked", "Traceback (most recent call last)", " ERROR ")
_CHAT_URL = re.compile(r"/chats/([0-9a-f-]{36})/")
_STREAM_URL = re.compile(r'data-stream-url="([^"]+)"')


@dataclass(frozen=True)
class Plan:
    """Who logs in as whom, and which chats the clients share."""

    run_id: str
    password: str
    usernames: list[str]
    character_codes: list[str]
    clients: int
    shared_chats: int

    def user_of(self, client: int) -> int:
        return client % len(self.usernames)


@dataclass
class Send:
    """One message a client sent, and what happened to it."""

    client: int
    chat: str
    token: str
    shared: bool
    status: str = "pending"  # accepted, abandoned (never accepted before the time ran out)
    reply_seq: int | None = None
    latency: float | None = None  # the accepted POST, seconds
    reply_seconds: float | None = None  # from the accepted POST to the stream's done event


@dataclass
class Results:
    sends: list[Send] = field(default_factory=list)
    busy: int = 0  # 409: a reply was still being written in that chat
    repeats: int = 0  # the same client_token sent again on purpose
    errors: list[str] = field(default_factory=list)
    chats: set[str] = field(default_factory=set)
    shared: set[str] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def accepted(self) -> list[Send]:
        return [s for s in self.sends if s.status == "accepted"]


# --- the server ---------------------------------------------------------------------------------


@dataclass
class LocalServer:
    base_url: str
    database_url: str
    log_path: Path

    def log_errors(self) -> list[str]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [line for line in lines if any(marker in line for marker in LOG_ERRORS)]


@contextmanager
def local_server() -> Iterator[LocalServer]:
    """A uvicorn process on loopback with a fresh SQLite file (WAL) and the tiny model built in."""
    root = Path(tempfile.mkdtemp(prefix="rpchat-stress-"))
    try:
        var = root / "var"
        var.mkdir()
        try:
            model = write_tiny_gguf(root / "tiny.gguf", n_ctx_train=TINY_CONTEXT)
        except ImportError as exc:
            raise RuntimeError(
                f"Serving the tiny model needs the development packages ({exc}): "
                "pip install -r requirements-dev.txt, or give --url of a running server."
            ) from None
        env = server_env(
            RPCHAT_VAR_DIR=str(var),
            RPCHAT_BUILTIN_MODEL=model,
            CACHE_KEY_PREFIX=f"rpchat-stress-{os.getpid()}",
            # The stress test measures the database under load, not the per-person reply limit.
            RPCHAT_GENERATIONS_PER_MINUTE="0",
        )
        manage_py(env, "migrate", "--no-input", "-v0")
        manage_py(env, "collectstatic", "--no-input", "-v0")
        # The tiny model's tokens are mostly single bytes, about three times the app's estimate, so
        # its context must be large for the busiest shared chats of a long run to fit.
        manage_py(
            env,
            "shell",
            "-c",
            "from settings_app.models import SiteSettings; s = SiteSettings.load(); "
            f"s.builtin_context_size = {TINY_CONTEXT}; s.save()",
        )
        log_path = root / "server.log"
        with uvicorn_process(env=env, log_path=log_path) as server:
            yield LocalServer(server.base_url, f"sqlite:///{var / 'rpchat.sqlite3'}", log_path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- users and characters -----------------------------------------------------------------------


def prepare(*, using: str, clients: int, shared_chats: int) -> Plan:
    """Users for the run, each with a private character to chat with.

    With shared chats, clients are grouped: one user per shared chat, and every client of a group
    logs in as that user (several devices of one person), so they may all write into it.
    """
    run_id = secrets.token_hex(3)
    password = secrets.token_urlsafe(16)
    # One hash for every user (throwaway accounts), made with the hasher the server checks with.
    encoded = make_password(password, hasher=PBKDF2PasswordHasher())
    users = shared_chats if shared_chats else clients
    User = get_user_model()
    usernames, codes = [], []
    for n in range(users):
        user = User.objects.db_manager(using).create(username=f"stress-{run_id}-{n + 1}", password=encoded)
        character = Character.objects.using(using).create(
            owner=user,
            name=f"Stress Partner {n + 1}",
            first_message="Hello! Shall we begin?",
            description="A character made by manage.py stress.",
        )
        usernames.append(user.username)
        codes.append(str(character.code))
    return Plan(run_id, password, usernames, codes, clients, shared_chats)


def cleanup(*, using: str, plan: Plan) -> int:
    """Delete the run's users (their chats and characters go with them)."""
    deleted, _ = get_user_model().objects.using(using).filter(username__in=plan.usernames).delete()
    return deleted


# --- the clients --------------------------------------------------------------------------------


class ClientError(Exception):
    pass


class Client:
    """One browser: logs in, opens chats, sends, follows replies."""

    def __init__(self, n: int, base_url: str, results: Results, *, repeat_rate: float, seed: int):
        self.n = n
        self.http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(60, read=120))
        self.results = results
        self.repeat_rate = repeat_rate
        self.random = random.Random(seed * 1000 + n)
        self.sent = 0

    def _csrf(self) -> dict:
        return {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}

    async def _request(self, method: str, url: str, **kwargs) -> httpx.Response:
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"client {self.n}: {method} {url} failed: {exc!r}") from None
        if response.status_code >= 500:
            raise ClientError(f"client {self.n}: {method} {url} answered {response.status_code}")
        return response

    async def login(self, username: str, password: str) -> None:
        await self._request("GET", "/accounts/login/")
        response = await self._request(
            "POST",
            "/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.http.cookies.get("csrftoken", ""),
            },
        )
        if response.status_code != 302:
            raise ClientError(f"client {self.n}: logging in as {username} gave {response.status_code}")

    async def new_chat(self, character_code: str) -> str:
        response = await self._request("POST", f"/chats/new/{character_code}/", headers=self._csrf())
        match = _CHAT_URL.search(response.headers.get("location", ""))
        if response.status_code != 302 or not match:
            raise ClientError(f"client {self.n}: starting a chat gave {response.status_code}")
        return match.group(1)

    async def post_message(self, chat: str, token: str, content: str) -> httpx.Response:
        return await self._request(
            "POST",
            f"/chats/{chat}/send/",
            data={"content": content, "client_token": token},
            headers=self._csrf(),
        )

    async def follow(self, url: str) -> tuple[str | None, dict]:
        """Read a reply's event stream to its end: the streamed text, and `done`.

        The text is None when the reply had already finished: the stream then sends only `done`,
        whose rendered HTML holds it.
        """
        text, event, done = None, "", None
        try:
            async with self.http.stream("GET", url) as response:
                if response.status_code != 200:
                    raise ClientError(f"client {self.n}: stream {url} answered {response.status_code}")
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        if event == "snapshot":
                            text = data["text"]
                        elif event == "delta":
                            text = (text or "") + data["text"]
                        elif event == "done":
                            done = data
                            break
        except httpx.HTTPError as exc:
            raise ClientError(f"client {self.n}: stream {url} broke: {exc!r}") from None
        if done is None:
            raise ClientError(f"client {self.n}: stream {url} ended without a done event")
        return text, done

    async def wait_for_reply(self, chat: str) -> None:
        """Follow whatever reply is being written in the chat (another client's) to its end."""
        page = await self._request("GET", f"/chats/{chat}/")
        if match := _STREAM_URL.search(page.text):
            await self.follow(match.group(1))

    async def send_one(self, chat: str, shared: bool, deadline: float, expected: str | None) -> None:
        self.sent += 1
        send = Send(self.n, chat, uuid.uuid4().hex, shared)
        self.results.sends.append(send)
        content = f"{self.random.choice(_LINES)} ({self.n}.{self.sent})"
        while True:
            started = time.monotonic()
            response = await self.post_message(chat, send.token, content)
            if response.status_code == 200:
                send.latency = time.monotonic() - started
                break
            if response.status_code != 409:
                raise ClientError(
                    f"client {self.n}: send answered {response.status_code}: {response.text[:200]}"
                )
            # Backpressure: someone else's reply is being written in this shared chat.
            self.results.busy += 1
            if time.monotonic() >= deadline:
                send.status = "abandoned"
                return
            await self.wait_for_reply(chat)
            await asyncio.sleep(self.random.uniform(0, 0.05))  # not all waiting clients at once
        send.status = "accepted"
        body = response.json()
        send.reply_seq = body["reply_seq"]
        repeat = self.random.random() < self.repeat_rate
        if repeat and self.random.random() < 0.5:
            await self._repeat(send, content)  # a double click while the reply is written
        text, done = await self.follow(body["stream_url"])
        send.reply_seconds = time.monotonic() - started
        if done.get("status") != "complete":
            raise ClientError(
                f"client {self.n}: reply #{send.reply_seq} in {chat} ended {done.get('status')}: {done.get('error')}"
            )
        if expected is not None:
            got = text if text is not None else done.get("html", "")
            if (text is not None and text != expected) or html.escape(expected) not in got:
                raise ClientError(f"client {self.n}: reply #{send.reply_seq} in {chat} showed {got[:300]!r}")
        if repeat and send.status == "accepted" and self.random.random() < 0.5:
            await self._repeat(send, content)  # the same key again after the reply

    async def _repeat(self, send: Send, content: str) -> None:
        self.results.repeats += 1
        response = await self.post_message(send.chat, send.token, content)
        if response.status_code != 200 or response.json().get("reply_seq") != send.reply_seq:
            raise ClientError(
                f"client {self.n}: resending key {send.token} gave {response.status_code} "
                f"{response.text[:200]} instead of reply #{send.reply_seq}"
            )

    async def close(self) -> None:
        await self.http.aclose()


_LINES = ("Go on.", "What now?", "*waits*", "Tell me more.", "And then?")


async def run_clients(
    *,
    base_url: str,
    plan: Plan,
    seconds: float,
    repeat_rate: float = 0.1,
    expected_reply: str | None,
    seed: int = 1,
    tick: Callable[[Results], None] | None = None,
) -> Results:
    """Every client logs in, opens its chats, and sends until `seconds` have passed."""
    results = Results()
    clients = [Client(n, base_url, results, repeat_rate=repeat_rate, seed=seed) for n in range(plan.clients)]
    shared_ready = {g: asyncio.get_running_loop().create_future() for g in range(plan.shared_chats)}

    async def setup(client: Client) -> tuple[str, str | None]:
        user = plan.user_of(client.n)
        await client.login(plan.usernames[user], plan.password)
        own = await client.new_chat(plan.character_codes[user])
        shared = None
        if plan.shared_chats:
            group = shared_ready[user]
            if client.n == user:  # the group's first client opens the shared chat
                group.set_result(await client.new_chat(plan.character_codes[user]))
            shared = await asyncio.wait_for(asyncio.shield(group), 120)
        return own, shared

    async def first_of_group(client: Client):
        try:
            return await setup(client)
        except BaseException:
            group = shared_ready.get(client.n)
            if group is not None and not group.done():
                group.set_exception(ClientError(f"the shared chat of group {client.n} was not opened"))
                group.exception()  # the clients waiting for it report it; asyncio need not
            raise

    async def work(client: Client, own: str, shared: str | None, deadline: float) -> None:
        turn = 0
        while time.monotonic() < deadline:
            turn += 1
            # Alternate: the client's own chat, then (with shared chats) the group's chat.
            chat, is_shared = (shared, True) if shared and turn % 2 == 0 else (own, False)
            await client.send_one(chat, is_shared, deadline, expected_reply)

    async def guarded(coro) -> object:
        try:
            return await coro
        except ClientError as exc:
            results.errors.append(str(exc))
        except Exception as exc:
            results.errors.append(f"{type(exc).__name__}: {exc}")
        return None

    try:
        chats = await asyncio.gather(*(guarded(first_of_group(c)) for c in clients))
        for pair in chats:
            if pair:
                results.chats.add(pair[0])
                if pair[1]:
                    results.chats.add(pair[1])
                    results.shared.add(pair[1])
        started = time.monotonic()
        deadline = started + seconds

        async def ticker():
            while True:
                await asyncio.sleep(1)
                if tick:
                    tick(results)

        ticking = asyncio.create_task(ticker())
        await asyncio.gather(
            *(guarded(work(c, *pair, deadline)) for c, pair in zip(clients, chats, strict=True) if pair)
        )
        ticking.cancel()
        results.seconds = time.monotonic() - started
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return results


# --- the checks ---------------------------------------------------------------------------------


def verify(*, using: str, results: Results, expected_reply: str | None) -> list[str]:
    """Every inconsistency between what the clients saw and what the database holds."""
    problems: list[str] = []
    sends = {s.token: s for s in results.sends}
    sessions = ChatSession.objects.using(using).filter(code__in=results.chats)
    found = {str(s.code) for s in sessions}
    for missing in sorted(results.chats - found):
        problems.append(f"chat {missing} is missing")
    for session in sessions.order_by("pk"):
        rows = list(
            Message.objects.using(using)
            .filter(session_id=session.pk)
            .order_by("seq")
            .values_list("seq", "role", "status", "content", "client_token")
        )
        where = f"chat {session.code}"
        seqs = [r[0] for r in rows]
        if seqs != list(range(1, len(rows) + 1)):
            problems.append(f"{where}: seqs are not 1..{len(rows)} in order: {_gaps(seqs)}")
        if session.message_count != len(rows):
            problems.append(f"{where}: message_count is {session.message_count}, it has {len(rows)}")
        if session.last_seq != (seqs[-1] if seqs else 0):
            problems.append(
                f"{where}: last_seq is {session.last_seq}, the highest seq is {seqs[-1] if seqs else 0}"
            )
        tokens = Counter(r[4] for r in rows if r[4])
        for token, count in tokens.items():
            if count > 1:
                problems.append(f"{where}: key {token} stored {count} times")
            if token not in sends:
                problems.append(f"{where}: key {token} stored but never sent")
        by_seq = {r[0]: r for r in rows}
        for seq, role, status, content, _token in rows:
            if status != Message.Status.COMPLETE:
                problems.append(f"{where}: #{seq} is {status}")
            if role == Message.Role.USER:
                reply = by_seq.get(seq + 1)
                if reply is None or reply[1] != Message.Role.ASSISTANT:
                    problems.append(f"{where}: user message #{seq} has no reply after it")
            elif role == Message.Role.ASSISTANT and seq > 1 and expected_reply not in (None, content):
                problems.append(f"{where}: reply #{seq} reads {content[:80]!r}")
    stored = Counter(
        Message.objects.using(using)
        .filter(session__code__in=results.chats, client_token__gt="")
        .values_list("client_token", flat=True)
    )
    seq_of = dict(
        Message.objects.using(using)
        .filter(session__code__in=results.chats, client_token__gt="")
        .values_list("client_token", "seq")
    )
    for token, send in sends.items():
        if send.status == "accepted":
            if stored[token] != 1:
                problems.append(
                    f"message {token} (client {send.client}) stored {stored[token]} times, not once"
                )
            elif seq_of[token] + 1 != send.reply_seq:
                problems.append(f"message {token}: the reply the client followed is not the one after it")
        elif send.status == "abandoned" and stored[token]:
            problems.append(f"message {token} was refused (409) but stored anyway")
    return problems


def _gaps(seqs: list[int]) -> str:
    shown = ", ".join(map(str, seqs[:20]))
    return shown + (" ..." if len(seqs) > 20 else "")


@contextmanager
def quiet_loggers() -> Iterator[None]:
    """Keep httpx's line per request and gguf's file notes out of the command's output."""
    loggers = [logging.getLogger(name) for name in ("httpx", "httpcore", "gguf")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
