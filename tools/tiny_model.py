"""A tiny, fully deterministic llama-architecture GGUF model for tests and `manage.py stress`.

``write_tiny_gguf(path)`` writes a ~0.5 MB GGUF file that llama.cpp (and so
``xllamacpp.Server``) loads like any real chat model.  Whatever it is asked,
its reply is always :data:`TINY_REPLY` followed by end-of-generation.

How it works
------------
* Architecture ``llama``: 2 blocks, embedding dim 64, 4 heads (head dim 16),
  feed-forward dim 128.  Every attention and feed-forward weight is zero, so
  each block adds nothing to the residual stream and the logits depend only on
  the *last* token: ``logits = output @ rmsnorm(token_embd[last])``.
* The embedding of every token is a one-hot vector naming the token that must
  come next, and ``output`` maps that direction to a logit of
  :data:`LOGIT_MARGIN` (1000) for that one token and 0 for all others, so
  every other token has probability exactly 0.0 in float32 even at
  temperature 5 with top_k=0/top_p=1/min_p=0, repeat_penalty 2, presence and
  frequency penalty 2, typical_p, dynatemp, mirostat, XTC or DRY with the
  usual settings: the output is identical at any sampling settings and seed.
  (A margin of 64 was not enough: strong repeat/frequency penalties on
  ``<|im_end|>``, which occurs in every ChatML prompt, plus a high
  temperature occasionally derailed it.)  Only absurd DRY settings (no
  sequence breakers, allowed_length 1, base 3, a long repeated history) can
  beat it, as any repetition penalty that grows exponentially must.
* The resulting bigram table is a single chain::

      <anything else> -> "Hello" -> "," -> "▁traveler" -> "!" -> "▁I" -> "▁am"
        -> "▁a" -> "▁tiny" -> "▁test" -> "▁model" -> "." -> <|im_end|> (EOS)

  i.e. the reply pieces ``REPLY_PIECES`` each map to the next piece, the last
  piece (".") maps to ``<|im_end|>``, and *every other token* (the newline
  byte ``<0x0A>`` that ends the ChatML generation prompt
  ``<|im_start|>assistant\\n``, ``<|im_end|>``, ``<s>``, all other byte
  tokens, ...) maps to the first piece.

What that gives tests
---------------------
* Chat mode (``/v1/chat/completions``): the reply is exactly ``TINY_REPLY``
  with ``finish_reason="stop"``; with ``max_tokens=n`` (n < 12) it is the
  first n pieces of the reply and ``finish_reason="length"``.
* Text mode (``/v1/completions``): any prompt whose last token is not a reply
  piece -- in particular any prompt ending in ``"\\n"`` such as
  ``"User: hi\\nAssistant:\\n"`` -- yields ``TINY_REPLY`` then EOS.
* Continuing: the tokenizer contains the merge path for every reply piece, so
  a prompt (or prefilled assistant message) that ends with a prefix of
  ``TINY_REPLY`` cut at a piece boundary (which is what ``max_tokens``
  truncation produces, e.g. ``"Hello, traveler"``) continues with the rest of
  the reply, so prefix + continuation == ``TINY_REPLY``.  A prompt ending with
  the full reply (last piece ".") continues with EOS immediately (empty
  continuation).  A prompt ending anywhere else restarts the chain from
  "Hello".  Caveat for text mode: a prompt that happens to end in a reply
  piece continues mid-chain -- ending in "." gives an empty completion,
  ending in "!" gives " I am a tiny test model.", ending in "," or " a" or
  " I" likewise.  End text prompts with "\n" (or a letter) to get the
  whole reply.  Chat prompts always end in "\n", so chat is unaffected.
* It is a SentencePiece-style ("llama") vocabulary with all 256 ``<0xNN>``
  byte tokens, so any UTF-8 text tokenizes (mostly to bytes: one token per
  UTF-8 byte, and a space is "▁" = 3 bytes, so "word " x 500 is ~3,500
  tokens -- handy for context-overflow tests).  ``<s>`` (BOS, added to
  prompts), ``</s>``, ``<unk>``, ``<|im_start|>`` and ``<|im_end|>`` are
  special tokens; EOS is ``<|im_end|>``; ``tokenizer.chat_template`` is
  plain ChatML.

Only ``gguf`` and ``numpy`` are needed (the development requirements); no Django imports.
"""

from __future__ import annotations

import itertools
import os

__all__ = [
    "CHATML_TEMPLATE",
    "LOGIT_MARGIN",
    "REPLY_PIECES",
    "THINK_PIECES",
    "TINY_REPLY",
    "TINY_THOUGHT",
    "write_tiny_gguf",
]

#: The reply as SentencePiece pieces ("▁" is a space).  The first piece has no
#: leading "▁" so the reply does not start with a space.
REPLY_PIECES: tuple[str, ...] = (
    "Hello",
    ",",
    "▁traveler",
    "!",
    "▁I",
    "▁am",
    "▁a",
    "▁tiny",
    "▁test",
    "▁model",
    ".",
)

#: The exact text of every reply.
TINY_REPLY: str = "".join(REPLY_PIECES).replace("▁", " ")
assert TINY_REPLY == "Hello, traveler! I am a tiny test model."

#: With ``thinking=True`` the model first thinks, DeepSeek-R1 style, in a ``<think>`` block whose
#: tags arrive cut across pieces ("<th" "ink>" ... "</" "think" ">"), then gives TINY_REPLY.
THINK_PIECES: tuple[str, ...] = (
    "<th",
    "ink>",
    "Hmm",
    "▁—",
    "▁who",
    "▁goes",
    "▁there",
    "?",
    "</",
    "think",
    ">",
)

#: The reasoning of the thinking model, as the reply's text carries it between the tags.
TINY_THOUGHT: str = "".join(THINK_PIECES[2:-3]).replace("▁", " ")
assert TINY_THOUGHT == "Hmm — who goes there?"

#: Logit of the chosen next token; all other logits are 0.
LOGIT_MARGIN: float = 1000.0

CHATML_TEMPLATE: str = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_N_EMBD = 64
_N_LAYER = 2
_N_HEAD = 4
_N_HEAD_KV = 4
_N_FF = 128

# gguf TokenType values
_NORMAL, _UNKNOWN, _CONTROL, _BYTE = 1, 2, 3, 6


def _build_vocab(
    pieces: tuple[str, ...] = REPLY_PIECES,
) -> tuple[list[str], list[float], list[int], dict[str, int]]:
    tokens: list[str] = []
    scores: list[float] = []
    types: list[int] = []

    def add(text: str, ttype: int, score: float = 0.0) -> None:
        tokens.append(text)
        scores.append(score)
        types.append(ttype)

    add("<unk>", _UNKNOWN)
    add("<s>", _CONTROL)
    add("</s>", _CONTROL)
    for b in range(256):
        add(f"<0x{b:02X}>", _BYTE)
    add("<|im_start|>", _CONTROL)
    add("<|im_end|>", _CONTROL)

    # Merge paths: SentencePiece (llama.cpp's SPM tokenizer) starts from single
    # characters and merges adjacent symbols only when the concatenation is a
    # vocabulary entry, so "▁traveler" is reachable only via "▁t", "▁tr", ...
    # Intermediates are ordinary (non-chain) tokens.  Scores favour longer
    # pieces.
    seen = set(tokens)
    for piece in pieces:
        for end in range(2, len(piece) + 1):
            sub = piece[:end]
            if sub not in seen:
                seen.add(sub)
                add(sub, _NORMAL, float(end))
        if piece not in seen:  # single characters such as "," "!" "."
            seen.add(piece)
            add(piece, _NORMAL, 1.0)

    ids = {t: i for i, t in enumerate(tokens)}
    return tokens, scores, types, ids


def write_tiny_gguf(path: str | os.PathLike, *, n_ctx_train: int = 4096, thinking: bool = False) -> str:
    """Write a tiny llama-architecture GGUF whose chat reply is always TINY_REPLY (after a
    `<think>` block of TINY_THOUGHT with `thinking`); return the path."""
    # Local imports: TINY_REPLY is needed where the development packages are not installed.
    import gguf
    import numpy as np

    path = os.fspath(path)
    pieces = (THINK_PIECES + REPLY_PIECES) if thinking else REPLY_PIECES
    tokens, scores, types, ids = _build_vocab(pieces)
    n_vocab = len(tokens)
    eos = ids["<|im_end|>"]

    # next-token table: every token -> first piece, chain pieces -> next piece
    chain = [ids[p] for p in pieces] + [eos]
    nxt = np.full(n_vocab, chain[0], dtype=np.int64)
    for a, b in itertools.pairwise(chain):
        nxt[a] = b

    # one embedding direction per possible target token
    targets = sorted({int(t) for t in nxt})
    assert len(targets) <= _N_EMBD
    dim_of = {t: d for d, t in enumerate(targets)}

    token_embd = np.zeros((n_vocab, _N_EMBD), dtype=np.float32)
    for tok in range(n_vocab):
        token_embd[tok, dim_of[int(nxt[tok])]] = 1.0
    # rmsnorm(one-hot) has value sqrt(n_embd) at the hot dimension
    output = np.zeros((n_vocab, _N_EMBD), dtype=np.float32)
    for t, d in dim_of.items():
        output[t, d] = LOGIT_MARGIN / np.sqrt(_N_EMBD)

    head_dim = _N_EMBD // _N_HEAD
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("rpchat tiny test model")
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(_N_EMBD)
    w.add_block_count(_N_LAYER)
    w.add_feed_forward_length(_N_FF)
    w.add_head_count(_N_HEAD)
    w.add_head_count_kv(_N_HEAD_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)

    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(ids["<s>"])
    w.add_eos_token_id(eos)
    w.add_unk_token_id(ids["<unk>"])
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(False)
    w.add_chat_template(CHATML_TEMPLATE)

    w.add_tensor("token_embd.weight", token_embd)
    w.add_tensor("output_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
    w.add_tensor("output.weight", output)
    sq = np.zeros((_N_EMBD, _N_EMBD), dtype=np.float32)
    kv = np.zeros((_N_HEAD_KV * head_dim, _N_EMBD), dtype=np.float32)
    for i in range(_N_LAYER):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", sq)
        w.add_tensor(f"blk.{i}.attn_k.weight", kv)
        w.add_tensor(f"blk.{i}.attn_v.weight", kv)
        w.add_tensor(f"blk.{i}.attn_output.weight", sq)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(_N_EMBD, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", np.zeros((_N_FF, _N_EMBD), dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_up.weight", np.zeros((_N_FF, _N_EMBD), dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_down.weight", np.zeros((_N_EMBD, _N_FF), dtype=np.float32))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
