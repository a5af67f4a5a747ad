"""Server-side generation of replies, independent of any browser request.

Each process runs one background thread with its own event loop; every reply generated in the
process is a task there. The task writes the growing text to the reply's row as it goes and
finishes it in a short transaction of its own, so closing the tab, a refresh or a second tab loses
nothing. Pages follow a reply through `follow()`: live from memory when the reply is generated in
this process, else by polling its row (a reply started by another worker).

A reply being written touches its row at least every sixth of STREAM_STALE_AFTER, even while the
engine is silent; a streaming row left untouched longer belongs to a worker that is gone (killed,
restarted), and every worker's sweep (`start_maintenance`, at startup and then periodically) marks
it interrupted, text kept, so its chat is usable again without any page having to follow it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from core import after_response, metrics
from core.databases import release_connection
from core.tokens import estimate_tokens
from settings_app import engines
from settings_app.models import SiteSettings

from . import lore, memory, story
from .models import ChatSession, Message, MessageAlternative, PromptSnapshot
from .profiles import resolve_profile
from .prompt import build_prompt
from .reasoning import REASONING, ThinkSplitter, split_forced_open, split_reasoning

logger = logging.getLogger(__name__)

STOP_KEY = "gen-stop:{}"
INTERRUPTED = "The reply was interrupted (the server stopped while generating). Retry to finish it."


@dataclass
class Event:
    # "snapshot" (all text so far, and all reasoning), "delta" (new reply text), "reasoning" (new
    # reasoning), "done"
    kind: str
    text: str = ""
    reasoning: str = ""


@dataclass
class LiveReply:
    """A reply being generated in this process, with the queues of the pages following it."""

    message_id: int
    text: str = ""
    reasoning: str = ""
    done: bool = False
    # The task generating it, and whether it has begun saving its end (from then on a stop is moot).
    task: asyncio.Task | None = None
    finishing: bool = False
    # Set once the row holds the final text, however the task ended.
    finished: threading.Event = field(default_factory=threading.Event)
    # When the row was last written (monotonic): the heartbeat touches it when this grows old.
    saved_at: float = field(default_factory=time.monotonic)
    subscribers: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, event: Event) -> None:
        with self.lock:
            if event.kind == "delta":
                self.text += event.text
            elif event.kind == "reasoning":
                self.reasoning += event.text
            elif event.kind == "done":
                self.done = True
            for loop, queue in list(self.subscribers):
                try:
                    loop.call_soon_threadsafe(queue.put_nowait, event)
                except RuntimeError:  # that page's loop is gone
                    self.subscribers.remove((loop, queue))

    def reset(self, text: str, reasoning: str = "") -> None:
        """Start from existing text (continuing a reply): followers get it as a snapshot."""
        with self.lock:
            self.text = text
            self.reasoning = reasoning
            for loop, queue in list(self.subscribers):
                loop.call_soon_threadsafe(queue.put_nowait, Event("snapshot", text, reasoning))

    def stop(self) -> None:
        """Cancel the generation, unless it is already saving its end. Call on the runner's loop."""
        if self.task is not None and not self.finishing:
            self.task.cancel()

    def subscribe(self) -> tuple[asyncio.Queue, Event, bool]:
        queue: asyncio.Queue = asyncio.Queue()
        with self.lock:
            self.subscribers.append((asyncio.get_running_loop(), queue))
            return queue, Event("snapshot", self.text, self.reasoning), self.done

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self.lock:
            self.subscribers = [(lp, q) for lp, q in self.subscribers if q is not queue]


class Runner:
    """The process's generation loop, started on first use."""

    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None
    # The process that started the loop and the sweep: a forked child has neither thread.
    _pid = 0
    _sweeping_pid = 0
    live: dict[int, LiveReply] = {}

    @classmethod
    def loop(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or not cls._loop.is_running() or cls._pid != os.getpid():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run():
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="rpchat-generation", daemon=True).start()
                ready.wait()
                cls._loop, cls._pid = loop, os.getpid()
            return cls._loop


MODES = ("reply", "regenerate", "continue")
# SillyTavern's generation type of each (lore entries may be limited to some: `triggers`); a
# regenerate writes a new swipe.
GENERATION_TYPES = {"reply": "normal", "regenerate": "swipe", "continue": "continue"}


def start_generation(message_id: int, *, mode: str = "reply") -> LiveReply:
    """Generate the reply row `message_id` (status streaming) in the background.

    `continue` extends the row's existing text; `regenerate` writes a new swipe (the row's active
    alternative, created by the caller).
    """
    assert mode in MODES, mode
    # A stop that came too late for an earlier generation of this row must not stop this one.
    cache.delete(STOP_KEY.format(message_id))
    live = LiveReply(message_id)
    Runner.live[message_id] = live
    loop = Runner.loop()

    def spawn():
        # A fresh context: the caller's (a request's) must not leak into a task that outlives it;
        # asgiref keeps the request's executor in a context variable.
        live.task = loop.create_task(_generate(live, mode), context=contextvars.Context())

    def schedule():
        loop.call_soon_threadsafe(spawn, context=contextvars.Context())

    # Inside a request: once its response is sent, so building the prompt does not hold the GIL
    # while the request renders its answer (core.after_response). Registered in Runner.live now,
    # so the page that follows the reply finds it either way.
    if not after_response.defer(schedule):
        schedule()
    return live


def start_maintenance() -> None:
    """Sweep for stranded replies now and every sixth of STREAM_STALE_AFTER, on this process's
    generation loop. Called once by the server entry points (asgi.py, wsgi.py); idempotent."""
    with Runner._lock:
        if Runner._sweeping_pid == os.getpid():
            return
        Runner._sweeping_pid = os.getpid()
    loop = Runner.loop()
    loop.call_soon_threadsafe(lambda: loop.create_task(_sweep_forever()), context=contextvars.Context())


def request_stop(message_id: int) -> None:
    """Stop a reply wherever it is being generated: here at once, on other workers via the cache."""
    cache.set(STOP_KEY.format(message_id), 1, timeout=600)
    live = Runner.live.get(message_id)
    if live is not None:
        # On the loop, through live.stop(): a cancel landing while the end is saved would leave
        # the reply's followers waiting for a "done" that never comes.
        Runner.loop().call_soon_threadsafe(live.stop)


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


def reply_prompt(message_id: int, mode: str = "reply"):
    """(reply, engine config, prompt, where the model choice came from) for the reply row
    `message_id`, recording the timed lore effects its prompt began. What a generation does before
    it calls the engine."""
    reply = Message.objects.select_related(
        "session", "session__character", "session__persona", "session__user", "character"
    ).get(pk=message_id)
    session = reply.session
    site = SiteSettings.load()
    presets = story.chat_presets(session)
    character = reply.character or session.character
    resolved = resolve_profile(
        user=session.user, character=character, chat_profile_id=session.profile_id, site=site
    )
    config = story.with_sampling(engines.resolve_engine(site, profile=resolved.profile), presets)
    prompt = prompt_for(
        session=session,
        character=character,
        site=site,
        config=config,
        profile=resolved.profile,
        before_seq=reply.seq,
        continue_text=reply.content if mode == "continue" else "",
        presets=presets,
        generation_type=GENERATION_TYPES[mode],
    )
    if mode != "continue":  # continuing a reply extends it: what its generation began stands
        # The timed effects (sticky, cooldown) this reply's lore began, for the replies after it.
        lore.effects_save(
            session=session,
            message_id=reply.pk,
            position=prompt.position,
            started=prompt.activation.started if prompt.activation else [],
        )
    if prompt.window_start:
        # Older messages fell out of the window: their summaries are written in the background.
        try:
            memory.schedule(session.pk, window_start=prompt.window_start)
        except Exception:  # memory never stands in the way of a reply
            logger.exception("could not schedule the memory summaries of chat %s", session.pk)
    return reply, config, prompt, resolved.source


_prepare = _db(reply_prompt)


def model_record(config, source: str) -> dict:
    """What a reply keeps about the model that wrote it (its meta), and the line it shows."""
    return {
        "engine": config.label,
        "mode": config.mode,
        "parameters": dict(config.sampling),
        "profile": {
            "code": config.profile_code,
            "name": config.profile_name,
            "model": config.model,
            "source": source,
        },
        "model_label": config.model_label,
    }


SAMPLING_LINE = (
    ("temperature", "temperature {}"),
    ("top_p", "top-p {}"),
    ("top_k", "top-k {}"),
    ("min_p", "min-p {}"),
    ("repeat_penalty", "repetition penalty {}"),
    ("max_tokens", "up to {} tokens"),
    ("seed", "seed {}"),
)


def model_line(meta: dict) -> tuple[str, str]:
    """The model line of a reply whose meta is `meta`: (model, sampling), each within 300 chars."""
    label = str(meta.get("model_label") or meta.get("engine") or "")
    if "sampling_label" in meta:  # a swipe that kept the line it had (services.reply_regenerate)
        return label[:300], str(meta["sampling_label"])[:300]
    params = meta.get("parameters") or {}
    sampling = ", ".join(fmt.format(params[key]) for key, fmt in SAMPLING_LINE if params.get(key) is not None)
    return label[:300], sampling[:300]


def prompt_for(
    *,
    session,
    character,
    site,
    config,
    before_seq,
    continue_text="",
    impersonate=False,
    presets=None,
    profile=None,
    generation_type="",
):
    """The prompt for a reply (or an impersonation) in `session`, for the engine `config` (made
    from `profile`; None: the built-in model)."""
    persona = session.persona
    user_name = persona.name if persona else (session.user.get_username() or site.default_user_name)
    members = []
    if session.is_group:
        members = [m.character for m in session.members.select_related("character")]
    return build_prompt(
        counter=engines.token_counter(config),
        session=session,
        character=character,
        user_name=user_name,
        persona_description=persona.description if persona else "",
        site=site,
        context_size=config.context_size,
        reply_tokens=int(config.sampling.get("max_tokens") or 0),
        before_seq=before_seq,
        mode=config.mode,
        template=profile.instruct_template if profile else None,
        continue_text=continue_text,
        impersonate=impersonate,
        members=members,
        presets=presets,
        generation_type=generation_type,
    )


def engine_request(config, prompt) -> dict:
    """The arguments stream_completion needs for this prompt."""
    if config.mode == "text":
        stop = list(dict.fromkeys([*prompt.stop, *config.sampling.get("stop", [])]))
        return {"prompt": prompt.text, "overrides": {"stop": stop} if stop else {}}
    return {"messages": prompt.messages}


@_db
def _save_progress(message_id: int, text: str, reasoning: str) -> None:
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(
        content=text, reasoning=reasoning, updated_at=timezone.now()
    )


@_db
def _touch(message_id: int) -> None:
    """The heartbeat: this reply's worker is alive (while the engine is silent, say)."""
    Message.objects.filter(pk=message_id, status=Message.Status.STREAMING).update(updated_at=timezone.now())


def heartbeat_interval() -> float:
    """How often a reply being written touches its row at the least."""
    return settings.RPCHAT["STREAM_STALE_AFTER"] / 6


def stranded_queryset(*, cutoff, exclude: Iterable[int] = ()):
    """Streaming replies untouched since `cutoff`, but those in `exclude` (read on the partial index
    message_one_streaming_per_chat, which holds only streaming rows)."""
    return (
        Message.objects.filter(status=Message.Status.STREAMING, updated_at__lt=cutoff)
        .exclude(pk__in=list(exclude))
        .order_by()
    )


def interrupt_stranded(*, ids: Iterable[int] | None = None) -> int:
    """Mark replies whose worker is gone as interrupted, their text kept; returns how many.

    Gone means no touch for STREAM_STALE_AFTER seconds: a live worker touches each of its replies
    six times as often, so a live reply of any worker is never taken. Replies generated in this
    process are never taken by it. `ids` limits the sweep to those replies.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.RPCHAT["STREAM_STALE_AFTER"])
    rows = stranded_queryset(cutoff=cutoff, exclude=list(Runner.live))
    if ids is not None:
        rows = rows.filter(pk__in=list(ids))
    # Read first: on SQLite an UPDATE waits for the write lock even when it changes nothing.
    found = list(rows.values_list("pk", flat=True)[:500])
    if not found:
        return 0
    # The same conditions again: a touch that lands in between keeps its reply.
    marked = rows.filter(pk__in=found).update(
        status=Case(
            When(content="", then=Value(Message.Status.ERROR)), default=Value(Message.Status.INCOMPLETE)
        ),
        error=INTERRUPTED,
        version=F("version") + 1,
        updated_at=timezone.now(),
    )
    if marked:
        logger.warning("marked %d replies interrupted: their worker stopped while writing them", marked)
    return marked


async def _sweep_forever() -> None:
    sweep = _db(interrupt_stranded)
    while True:
        try:
            await sweep()
        except Exception:
            logger.exception("the sweep for interrupted replies failed")
        await asyncio.sleep(heartbeat_interval())


@_db
def _count_reasoning(config, reasoning: str, usage: dict | None) -> int:
    """The reasoning's tokens: as the server reports them, else counted like any text."""
    details = (usage or {}).get("completion_tokens_details") or {}
    reported = details.get("reasoning_tokens") if isinstance(details, dict) else None
    if isinstance(reported, int) and not isinstance(reported, bool) and reported > 0:
        return reported
    if not reasoning:
        return 0
    try:
        return engines.token_counter(config).count(reasoning)
    except Exception:  # the engine's tokenizer went away meanwhile: the estimate will do
        logger.warning("could not count the reasoning's tokens with the engine", exc_info=True)
        return estimate_tokens(reasoning)


@_db
def _learn_ratio(config, prompt, usage: dict | None) -> None:
    """Calibrate a remote engine's token estimate from the prompt size it reports."""
    engines.record_usage(config, estimated=prompt.estimated_raw(), usage=usage)


@_db
def _finish(
    message_id: int,
    *,
    text: str,
    status: str,
    error: str = "",
    meta: dict,
    prompt: dict | None,
    reasoning: str = "",
    reasoning_tokens: int = 0,
    reasoning_ms: int | None = None,
) -> None:
    now = timezone.now()
    with transaction.atomic():
        reply = (
            Message.objects.select_for_update()
            .only("id", "session_id", "status", "meta", "alternative_index", "alternative_count")
            .get(pk=message_id)
        )
        if reply.status != Message.Status.STREAMING:
            # Another worker found it untouched for STREAM_STALE_AFTER seconds (this one could not
            # write) and marked it interrupted; it is the person's again, to retry or delete.
            logger.warning(
                "message %s was marked interrupted while it was written; its end is dropped", message_id
            )
            return
        tokens = estimate_tokens(text)
        thought = {"reasoning": reasoning, "reasoning_tokens": reasoning_tokens, "reasoning_ms": reasoning_ms}
        # The model line, once an engine was chosen (a failure before that keeps the old one).
        line = {}
        if "model_label" in meta:
            line["model_label"], line["sampling_label"] = model_line(meta)
        Message.objects.filter(pk=message_id).update(
            **line,
            content=text,
            token_count=tokens,
            **thought,
            status=status,
            error=error,
            finish_reason=meta.get("finish_reason", ""),
            version=F("version") + 1,
            # A detail of an earlier failure does not outlive a retry.
            meta={**{k: v for k, v in reply.meta.items() if k != "error_detail"}, **meta},
            updated_at=now,
        )
        if prompt is not None:
            PromptSnapshot.objects.update_or_create(message_id=message_id, defaults={"data": prompt})
        if reply.alternative_count:
            # The active swipe mirrors the message's text.
            MessageAlternative.objects.filter(message_id=message_id, index=reply.alternative_index).update(
                content=text,
                token_count=tokens,
                meta={k: v for k, v in meta.items() if k != "error_detail"},
                **thought,
            )
        ChatSession.objects.filter(pk=reply.session_id).update(last_message_at=now)
    cache.delete(STOP_KEY.format(message_id))


async def _generate(live: LiveReply, mode: str) -> None:
    message_id = live.message_id
    text = ""
    reasoning = ""
    # When the model began and stopped thinking (monotonic): the reasoning's time.
    thought_from = thought_to = None
    # When a closing tag went by in the reply's text (a <think> the prompt opened), for its time.
    closed_at = None
    reply = config = prompt = splitter = None
    meta: dict = {}
    prompt_data = None
    status, error = Message.Status.COMPLETE, ""
    started = time.monotonic()
    first_token_at = None
    pieces = 0
    live.task = asyncio.current_task()
    # A stop asked for on another worker arrives through the cache, even while the engine is
    # silent (reading a long prompt), so it is watched for apart from the stream; the same watch
    # keeps the row touched meanwhile.
    watcher = asyncio.create_task(_watch(live))
    try:
        reply, config, prompt, source = await _prepare(message_id, mode)
        meta = model_record(config, source)
        prompt_data = prompt.as_meta()
        if mode == "continue":
            text = reply.content
            reasoning = reply.reasoning
            live.reset(text, reasoning)
        last_save = time.monotonic()
        interval = settings.RPCHAT["STREAM_PERSIST_INTERVAL"]
        # An engine that ignores max_tokens would otherwise fill the row, and every page showing it.
        limit = settings.RPCHAT["MAX_REPLY_CHARS"]

        def take(kind: str, piece: str) -> bool:
            """Add a piece of reply or reasoning; False once the size limit cut it."""
            nonlocal text, reasoning, thought_from, thought_to, closed_at
            now = time.monotonic()
            if kind == REASONING:
                thought_from = thought_from or now
                kept = piece[: max(limit - len(reasoning), 0)]
                reasoning += kept
                if kept:
                    live.publish(Event("reasoning", kept))
            else:
                if thought_from is not None and thought_to is None:
                    thought_to = now
                kept = piece[: max(limit - len(text), 0)]
                text += kept
                if kept:
                    live.publish(Event("delta", kept))
                    # Only the new text and a tag's length before it: linear in the reply.
                    if closed_at is None and "</think" in text[-len(kept) - 8 :]:
                        closed_at = now
            return len(kept) == len(piece)

        # A reply that has text already is continued as reply; otherwise it may open with <think>.
        splitter = ThinkSplitter(at_start=not text)
        stream = engines.stream_completion(config, **engine_request(config, prompt))
        # aclosing: a stop or an error closes the connection, which makes the engine stop too.
        async with aclosing(stream):
            async for item in stream:
                if isinstance(item, engines.Finish):
                    meta["finish_reason"] = item.reason
                    if item.usage:
                        meta["usage"] = item.usage
                    continue
                if isinstance(item, engines.Usage):
                    meta["usage"] = item.usage
                    continue
                if first_token_at is None:
                    first_token_at = time.monotonic()
                pieces += 1
                if isinstance(item, engines.Reasoning):
                    parts = [(REASONING, item.text)]
                else:
                    parts = splitter.feed(item.text)
                if not all(take(kind, piece) for kind, piece in parts):
                    status = Message.Status.INCOMPLETE
                    meta["finish_reason"] = "size_limit"
                    error = meta["notice"] = (
                        f"The reply reached the size limit of {limit:,} characters and was cut off there."
                    )
                    break
                if time.monotonic() - last_save >= interval:
                    last_save = live.saved_at = time.monotonic()
                    await _save_progress(message_id, text, reasoning)
        if meta.get("finish_reason") == "length":
            meta["notice"] = "The reply reached the length limit and may end mid-sentence."
    except asyncio.CancelledError:
        meta["finish_reason"] = "stopped"
    except engines.EngineError as exc:
        status = Message.Status.INCOMPLETE if text else Message.Status.ERROR
        error = str(exc)
        # For staff (the log, and the message's meta in the admin): the address, credentials masked.
        meta["error_detail"] = exc.detail
        logger.warning("reply %s failed: %s", message_id, exc.detail)
    except Exception:
        logger.exception("generation of message %s failed", message_id)
        status = Message.Status.INCOMPLETE if text else Message.Status.ERROR
        error = "Something went wrong on the server while generating this reply."
    finally:
        live.finishing = True
        watcher.cancel()
        if splitter is not None:  # what it held back to tell a tag from text, however it ended
            for kind, piece in splitter.close():
                take(kind, piece)
        if first_token_at is not None:
            meta["ttft_ms"] = round((first_token_at - started) * 1000)
            gen_seconds = time.monotonic() - first_token_at
            if gen_seconds > 0 and pieces > 1:
                meta["tokens_per_second"] = round(pieces / gen_seconds, 1)
            metrics.observe_generation(
                ttft_ms=meta["ttft_ms"], tokens_per_second=meta.get("tokens_per_second")
            )
        if splitter is not None and splitter.state == "reply" and not reasoning and mode != "continue":
            forced = split_forced_open(text)
            if forced is not None:  # the prompt opened <think>: its close is in the reply
                reasoning, text = forced
                thought_from, thought_to = first_token_at, closed_at
        if thought_from is not None:
            # Until the first word of reply, or the end when the reply never came.
            thought_ms = round(((thought_to or time.monotonic()) - thought_from) * 1000)
            if mode == "continue" and reply is not None and reply.reasoning_ms:
                thought_ms += reply.reasoning_ms
        else:
            thought_ms = (
                reply.reasoning_ms if mode == "continue" and reply is not None and reasoning else None
            )
        try:
            reasoning = reasoning.strip()
            reasoning_tokens = await _count_reasoning(config, reasoning, meta.get("usage")) if config else 0
            if config is not None and prompt is not None and not getattr(prompt, "exact", False):
                await _learn_ratio(config, prompt, meta.get("usage"))
        except Exception:
            logger.exception("could not count the tokens of message %s", message_id)
            reasoning_tokens = estimate_tokens(reasoning)
        try:
            await _finish(
                message_id,
                text=text,
                status=status,
                error=error,
                meta=meta,
                prompt=prompt_data,
                reasoning=reasoning,
                reasoning_tokens=reasoning_tokens,
                reasoning_ms=thought_ms,
            )
        except Exception:
            logger.exception("could not save the end of message %s", message_id)
        live.publish(Event("done"))
        Runner.live.pop(message_id, None)
        live.finished.set()


async def _watch(live: LiveReply) -> None:
    """Stop the reply once a stop for it shows up in the cache (set by any worker), and touch its
    row whenever it has not been written for a heartbeat interval."""
    key = STOP_KEY.format(live.message_id)
    heartbeat = heartbeat_interval()
    interval = min(settings.RPCHAT["STREAM_PERSIST_INTERVAL"], heartbeat)
    while True:
        await asyncio.sleep(interval)
        try:
            if await sync_to_async(cache.get, thread_sensitive=False)(key):
                live.stop()
                return
        except Exception:  # the cache is down: a stop from another worker waits, the reply goes on
            logger.exception("could not read the stop signal of message %s", live.message_id)
        if time.monotonic() - live.saved_at >= heartbeat:
            live.saved_at = time.monotonic()
            try:
                await _touch(live.message_id)
            except Exception:
                logger.exception("could not touch message %s", live.message_id)


@_db
def _impersonation_prompt(session_id: int):
    session = ChatSession.objects.select_related("character", "persona", "user").get(pk=session_id)
    site = SiteSettings.load()
    presets = story.chat_presets(session)
    resolved = resolve_profile(
        user=session.user, character=session.character, chat_profile_id=session.profile_id, site=site
    )
    config = story.with_sampling(engines.resolve_engine(site, profile=resolved.profile), presets)
    prompt = prompt_for(
        session=session,
        character=session.character,
        site=site,
        config=config,
        profile=resolved.profile,
        before_seq=session.last_seq + 1,
        impersonate=True,
        presets=presets,
    )
    return config, prompt


async def impersonate(session: ChatSession) -> str:
    """The model's draft of the user's next message (not stored), at most a message's length."""
    config, prompt = await _impersonation_prompt(session.pk)
    limit = settings.RPCHAT["MAX_MESSAGE_CHARS"]
    text = ""
    stream = engines.stream_completion(config, **engine_request(config, prompt))
    async with aclosing(stream):
        async for item in stream:
            if isinstance(item, engines.Delta):
                text += item.text
                if len(text) >= limit:  # an engine that does not stop: the box takes no more
                    break
    # A reasoning model thinks before it drafts: the draft is what follows its thinking.
    return split_reasoning(text)[1][:limit].strip()


async def follow(message_id: int, *, poll_interval: float = 0.5) -> AsyncIterator[Event]:
    """Events for a page following a reply: a snapshot of the text so far, deltas, then done."""
    live = Runner.live.get(message_id)
    if live is not None:
        queue, snapshot, done = live.subscribe()
        try:
            yield snapshot
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
    # Generated by another worker (or stranded by one that is gone): follow the row.
    stale_after = settings.RPCHAT["STREAM_STALE_AFTER"]
    sent = None
    while True:
        row = await _poll(message_id)
        if row is None:
            yield Event("done")
            return
        content, reasoning, status, updated_at = row
        if (content, reasoning) != sent:
            sent = (content, reasoning)
            yield Event("snapshot", content, reasoning)
        if status != Message.Status.STREAMING:
            yield Event("done")
            return
        if (timezone.now() - updated_at).total_seconds() > stale_after:
            # Its worker is gone: the next read finds it interrupted (or touched just in time).
            await _interrupt_if_stranded(message_id)
        await asyncio.sleep(poll_interval)


# The follower's own thread and connection (a page's request), given back after every query.
@sync_to_async
def _poll(message_id: int):
    try:
        return (
            Message.objects.filter(pk=message_id)
            .values_list("content", "reasoning", "status", "updated_at")
            .first()
        )
    finally:
        release_connection()


@sync_to_async
def _interrupt_if_stranded(message_id: int) -> None:
    try:
        interrupt_stranded(ids=[message_id])
    finally:
        release_connection()
