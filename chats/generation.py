"""Server-side generation of replies, independent of any browser request.

Each process runs one background thread with its own event loop; every reply generated in the
process is a task there. The task writes the growing text to the reply's row as it goes and
finishes it in a short transaction of its own, so closing the tab, a refresh or a second tab loses
nothing. Pages follow a reply through `follow()`: live from memory when the reply is generated in
this process, else by polling its row (a reply started by another worker).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from rpchat import metrics
from settings_app.models import SiteSettings

from . import engines
from .models import ChatSession, Message
from .prompt import build_prompt, estimate_tokens

logger = logging.getLogger(__name__)

STOP_KEY = "gen-stop:{}"


@dataclass
class Event:
    kind: str  # "snapshot" (all text so far), "delta" (new text), "done"
    text: str = ""


@dataclass
class LiveReply:
    """A reply being generated in this process, with the queues of the pages following it."""

    message_id: int
    text: str = ""
    done: bool = False
    future: object = None
    # Set once the row holds the final text (a cancelled future reports done before that).
    finished: threading.Event = field(default_factory=threading.Event)
    subscribers: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, event: Event) -> None:
        with self.lock:
            if event.kind == "delta":
                self.text += event.text
            elif event.kind == "done":
                self.done = True
            for loop, queue in list(self.subscribers):
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, event)
                except RuntimeError:  # that page's loop is gone
                    self.subscribers.remove((loop, queue))

    def subscribe(self) -> tuple[asyncio.Queue, str, bool]:
        queue: asyncio.Queue = asyncio.Queue()
        with self.lock:
            self.subscribers.append((asyncio.get_running_loop(), queue))
            return queue, self.text, self.done

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self.lock:
            self.subscribers = [(lp, q) for lp, q in self.subscribers if q is not queue]


class Runner:
    """The process's generation loop, started on first use."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    live: dict[int, LiveReply] = {}

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or not cls._loop.is_running():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run():
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="rpchat-generation", daemon=True).start()
                ready.wait()
                cls._loop = loop
            return cls._loop


def start_generation(message_id: int, *, overrides: dict | None = None) -> LiveReply:
    """Generate the reply row `message_id` (status streaming) in the background."""
    live = LiveReply(message_id)
    Runner.live[message_id] = live
    # In an empty context: the task must not inherit the request's (its metrics, for one).
    live.future = contextvars.Context().run(
        asyncio.run_coroutine_threadsafe, _generate(live, overrides or {}), Runner.loop()
    )
    return live


def request_stop(message_id: int) -> None:
    """Stop a reply wherever it is being generated: here at once, on other workers via the cache."""
    cache.set(STOP_KEY.format(message_id), 1, timeout=600)
    live = Runner.live.get(message_id)
    if live is not None and live.future is not None:
        live.future.cancel()


def wait_for(message_id: int, timeout: float = 60) -> None:
    """Block until a reply generated in this process is finished (for commands and tests)."""
    live = Runner.live.get(message_id)
    if live is not None:
        live.finished.wait(timeout)


def _db(fn):
    """Run ORM work from the generation loop in a worker thread, with fresh connections."""

    def wrapped(*args, **kwargs):
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(wrapped, thread_sensitive=False)


@_db
def _prepare(message_id: int):
    reply = Message.objects.select_related(
        "session", "session__character", "session__persona", "session__user"
    ).get(pk=message_id)
    session = reply.session
    site = SiteSettings.load()
    config = engines.resolve_engine(site)
    persona = session.persona
    user_name = persona.name if persona else (session.user.get_username() or site.default_user_name)
    prompt = build_prompt(
        session=session,
        character=session.character,
        user_name=user_name,
        persona_description=persona.description if persona else "",
        site=site,
        context_size=config.context_size,
        reply_tokens=int(config.sampling.get("max_tokens") or 0),
        before_seq=reply.seq,
    )
    return reply, config, prompt


@_db
def _save_progress(message_id: int, text: str) -> None:
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=text, updated_at=timezone.now()
    )


@_db
def _finish(message_id: int, *, text: str, status: str, error: str = "", meta: dict) -> None:
    now = timezone.now()
    with transaction.atomic():
        reply = Message.objects.select_for_update().only("id", "session_id", "meta").get(pk=message_id)
        Message.objects.filter(pk=message_id).update(
            content=text,
            token_count=estimate_tokens(text),
            status=status,
            error=error,
            version=F("version") + 1,
            meta={**reply.meta, **meta},
            updated_at=now,
        )
        ChatSession.objects.filter(pk=reply.session_id).update(last_message_at=now)
    cache.delete(STOP_KEY.format(message_id))


async def _generate(live: LiveReply, overrides: dict) -> None:
    message_id = live.message_id
    text = ""
    meta: dict = {}
    status, error = Message.Status.COMPLETE, ""
    started = time.monotonic()
    first_token_at = None
    pieces = 0
    try:
        reply, config, prompt = await _prepare(message_id)
        meta = {"engine": config.label, "prompt": prompt.as_meta()}
        last_save = time.monotonic()
        interval = settings.RPCHAT["STREAM_PERSIST_INTERVAL"]
        stream = engines.stream_completion(config, messages=prompt.messages, overrides=overrides)
        # aclosing: a stop or an error closes the connection, which makes the engine stop too.
        async with aclosing(stream):
            async for item in stream:
                if isinstance(item, engines.Finish):
                    meta["finish_reason"] = item.reason
                    if item.usage:
                        meta["usage"] = item.usage
                    continue
                if first_token_at is None:
                    first_token_at = time.monotonic()
                pieces += 1
                text += item.text
                live.publish(Event("delta", item.text))
                if time.monotonic() - last_save >= interval:
                    last_save = time.monotonic()
                    await _save_progress(message_id, text)
                    # A stop asked for on another worker arrives through the cache.
                    if await sync_to_async(cache.get)(STOP_KEY.format(message_id)):
                        raise asyncio.CancelledError
        if meta.get("finish_reason") == "length":
            meta["notice"] = "The reply reached the length limit and may end mid-sentence."
    except asyncio.CancelledError:
        meta["finish_reason"] = "stopped"
    except engines.EngineError as exc:
        status = Message.Status.INCOMPLETE if text else Message.Status.ERROR
        error = str(exc)
    except Exception:
        logger.exception("generation of message %s failed", message_id)
        status = Message.Status.INCOMPLETE if text else Message.Status.ERROR
        error = "Something went wrong on the server while generating this reply."
    finally:
        if first_token_at is not None:
            meta["ttft_ms"] = round((first_token_at - started) * 1000)
            gen_seconds = time.monotonic() - first_token_at
            if gen_seconds > 0 and pieces > 1:
                meta["tokens_per_second"] = round(pieces / gen_seconds, 1)
            metrics.observe_generation(ttft_ms=meta["ttft_ms"], tokens_per_second=meta.get("tokens_per_second"))
        try:
            await _finish(message_id, text=text, status=status, error=error, meta=meta)
        except Exception:
            logger.exception("could not save the end of message %s", message_id)
        live.publish(Event("done"))
        Runner.live.pop(message_id, None)
        live.finished.set()


async def follow(message_id: int, *, poll_interval: float = 0.5) -> AsyncIterator[Event]:
    """Events for a page following a reply: a snapshot of the text so far, deltas, then done."""
    live = Runner.live.get(message_id)
    if live is not None:
        queue, text, done = live.subscribe()
        try:
            yield Event("snapshot", text)
            if done:
                yield Event("done")
                return
            while True:
                event = await queue.get()
                yield event
                if event.kind == "done":
                    return
        finally:
            live.unsubscribe(queue)
    # Generated by another worker (or interrupted): follow the row.
    stale_after = settings.RPCHAT["ENGINE_FIRST_TOKEN_TIMEOUT"] + 30
    sent = None
    while True:
        row = await _poll(message_id)
        if row is None:
            yield Event("done")
            return
        content, status, updated_at = row
        if content != sent:
            sent = content
            yield Event("snapshot", content)
        if status != Message.Status.STREAMING:
            yield Event("done")
            return
        if (timezone.now() - updated_at).total_seconds() > stale_after:
            await _mark_interrupted(message_id)
            yield Event("done")
            return
        await asyncio.sleep(poll_interval)


@sync_to_async
def _poll(message_id: int):
    return Message.objects.filter(pk=message_id).values_list("content", "status", "updated_at").first()


@sync_to_async
def _mark_interrupted(message_id: int) -> None:
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        status=Message.Status.INCOMPLETE,
        error="The reply was interrupted (the server stopped while generating). Retry to finish it.",
        version=F("version") + 1,
    )
