"""Checks the tiny deterministic GGUF model (rpchat/tiny_model.py) against xllamacpp's server.

Plain pytest: no Django, no database.
"""

from __future__ import annotations

import json
import os

import httpx
import pytest

from tools.tiny_model import TINY_REPLY, write_tiny_gguf

xllamacpp = pytest.importorskip("xllamacpp")

PIECES = ["Hello", ",", " traveler", "!", " I", " am", " a", " tiny", " test", " model", "."]
TIMEOUT = httpx.Timeout(30.0)


def _start_server(model_path: str, *, n_ctx: int = 512, api_keys: list[str] | None = None):
    p = xllamacpp.CommonParams()
    p.model.path = model_path
    p.n_ctx = n_ctx
    p.port = 0
    p.cpuparams.n_threads = 1
    p.n_parallel = 1
    # llama.cpp's log threshold is process-global and every Server sets it:
    # 0 = silent, 1 = errors only, 3 = default (info).
    p.verbosity = 1
    if api_keys:
        p.api_keys = api_keys
    return xllamacpp.Server(p)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> str:
    return write_tiny_gguf(tmp_path_factory.mktemp("tiny") / "tiny.gguf")


@pytest.fixture(scope="module")
def base_url(model_path):
    server = _start_server(model_path)
    yield server.listening_address
    del server  # the destructor stops the server


def _stream(url: str, payload: dict, headers: dict | None = None) -> tuple[list[dict], int]:
    chunks: list[dict] = []
    done = 0
    with httpx.stream("POST", url, json={**payload, "stream": True}, headers=headers, timeout=TIMEOUT) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                done += 1
                continue
            chunks.append(json.loads(data))
    return chunks, done


def _chat_stream(base_url: str, payload: dict) -> tuple[str, str | None]:
    chunks, done = _stream(base_url + "/v1/chat/completions", payload)
    assert done == 1
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    finish = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert len(finish) == 1
    return text, finish[0]


def _text_stream(base_url: str, payload: dict) -> tuple[str, str | None]:
    chunks, done = _stream(base_url + "/v1/completions", payload)
    assert done == 1
    text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    finish = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]
    ]
    assert len(finish) == 1
    return text, finish[0]


def test_reply_constant():
    assert TINY_REPLY == "Hello, traveler! I am a tiny test model."
    assert "".join(PIECES) == TINY_REPLY


def test_file_is_small(model_path):
    assert os.path.getsize(model_path) < 2 * 1024 * 1024


@pytest.mark.parametrize(
    "sampling",
    [
        {"temperature": 0.7, "seed": 1},
        {"temperature": 2.0, "seed": 12345, "top_p": 1.0, "top_k": 0, "min_p": 0.0},
        {"temperature": 0.0},
        {
            "temperature": 3.0,
            "seed": 99,
            "top_k": 0,
            "top_p": 1.0,
            "min_p": 0.0,
            "repeat_penalty": 2.0,
            "presence_penalty": 2.0,
            "frequency_penalty": 2.0,
        },
        {"temperature": 1.5, "dry_multiplier": 0.8, "dry_base": 1.75, "dry_allowed_length": 2},
    ],
)
def test_chat_stream_exact_reply(base_url, sampling):
    messages = [
        {"role": "system", "content": "You are a pirate. Ünïcödé ✓ 日本語"},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": TINY_REPLY},
        {"role": "user", "content": "Tell me a long story, please!"},
    ]
    text, finish = _chat_stream(base_url, {"messages": messages, **sampling})
    assert text == TINY_REPLY
    assert finish == "stop"


def test_chat_non_stream(base_url):
    r = httpx.post(
        base_url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        timeout=TIMEOUT,
    )
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    assert choice["message"]["content"] == TINY_REPLY
    assert choice["finish_reason"] == "stop"
    assert r.json()["usage"]["completion_tokens"] == len(PIECES) + 1  # + <|im_end|>


def test_chat_max_tokens_gives_length(base_url):
    text, finish = _chat_stream(
        base_url, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "temperature": 1.0}
    )
    assert finish == "length"
    assert text == "".join(PIECES[:3]) == "Hello, traveler"
    assert TINY_REPLY.startswith(text)


def test_chat_continue_prefilled_assistant(base_url):
    """A trailing assistant message is continued (llama.cpp prefill_assistant)."""
    head = "".join(PIECES[:3])
    text, finish = _chat_stream(
        base_url,
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": head}]},
    )
    assert finish == "stop"
    assert head + text == TINY_REPLY
    # a complete reply continues with nothing but EOS
    text, finish = _chat_stream(
        base_url,
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": TINY_REPLY}]},
    )
    assert (text, finish) == ("", "stop")


@pytest.mark.parametrize("prompt", ["User: hi\nAssistant:\n", "\n", "Once upon a time"])
def test_text_completion_stream(base_url, prompt):
    text, finish = _text_stream(base_url, {"prompt": prompt, "temperature": 1.3, "seed": 7})
    assert text == TINY_REPLY
    assert finish == "stop"


def test_text_completion_continues_reply(base_url):
    text, finish = _text_stream(base_url, {"prompt": "Hello, traveler! I am"})
    assert (text, finish) == (" a tiny test model.", "stop")
    text, finish = _text_stream(base_url, {"prompt": "User: hi\n" + TINY_REPLY})
    assert (text, finish) == ("", "stop")


def test_wrong_api_key_is_401(model_path):
    server = _start_server(model_path, api_keys=["secret"])
    try:
        url = server.listening_address + "/v1/chat/completions"
        payload = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        r = httpx.post(url, json=payload, headers={"Authorization": "Bearer wrong"}, timeout=TIMEOUT)
        print("401 body:", r.text)
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        r = httpx.post(url, json=payload, timeout=TIMEOUT)  # no key at all
        assert r.status_code == 401
        r = httpx.post(url, json=payload, headers={"Authorization": "Bearer secret"}, timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "Hello,"
    finally:
        del server


@pytest.mark.parametrize("stream", [False, True])
def test_prompt_over_context_is_400(model_path, stream):
    # llama.cpp raises n_ctx to its minimum of 256; the byte-level vocabulary
    # makes 500 words about 3,500 tokens.
    server = _start_server(model_path, n_ctx=64)
    try:
        r = httpx.post(
            server.listening_address + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": " ".join(["word"] * 500)}], "stream": stream},
            timeout=TIMEOUT,
        )
        print("400 body:", r.text)
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["type"] == "exceed_context_size_error"
        assert err["code"] == 400
        assert "context size" in err["message"]
    finally:
        del server
