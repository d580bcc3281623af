"""Random, valid problem documents: for trying attncli, for pipelines and for benchmarks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from attncli import variants
from attncli.errors import ProblemError
from attncli.wording import head_counts

# Four decimals keep a document readable; the values need no more to be a fair test.
DECIMALS = 4


# What --tokens draws from: a token labels a row, it is never computed with.
VOCABULARY = ("the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to", "it", "was", "in", "red", "house",
              "by", "sea", "we", "saw")
PAD = "<pad>"

# A number in the document costs its float64 in numpy, its Python float in the lists and about a
# dozen characters of JSON text: estimated generously, so a refusal comes before any allocation.
BYTES_PER_NUMBER = 64


def document_bytes(seq_len: int, d_model: int, *, batch: int | None = None, context_len: int | None = None,
                   out_proj: bool = False, bias: bool = False) -> int:
    """About how many bytes making and printing this random document takes."""
    tokens = (batch or 1) * (seq_len + (context_len or 0))
    weights = (4 if out_proj else 3) * d_model * d_model + (4 * d_model if bias else 0)
    return (tokens * d_model + weights) * BYTES_PER_NUMBER


def random_document(
    seq_len: int,
    d_model: int,
    *,
    heads: int = 1,
    batch: int | None = None,
    context_len: int | None = None,
    out_proj: bool = False,
    bias: bool = False,
    causal: bool = False,
    seed: int | None = None,
    causal_lower_right: bool = False,
    kv_heads: int | None = None,
    rope: str | None = None,
    window: int | None = None,
    softcap: float | None = None,
    alibi: bool = False,
    sinks: bool = False,
    qk_norm: bool = False,
    padding: bool = False,
    tokens: bool = False,
) -> dict[str, Any]:
    """A problem document: x (batch?, seq_len, d_model) drawn from N(0, 1); weights
    (d_model, d_model) from N(0, 1/d_model), so scores stay of order 1; with ``context_len``
    a context (batch?, context_len, d_model); optional biases, W_O and causal mask (top-left, or
    ``causal_lower_right``).

    The variants of modern attention: ``kv_heads`` key/value heads (w_key and w_value
    kv_heads*head_dim wide), ``rope`` "neox" or "gptj", a sliding ``window``, a ``softcap``,
    ``alibi`` (Press et al.'s slopes), ``sinks`` (one logit per head from N(0, 1)), ``qk_norm``
    (RMSNorm weights per head from N(1, 0.1²)) and ``padding`` at the end of the keys (batched: the
    first item unpadded, each other of a random length; unbatched: the last 1 to k_len/2 keys).
    Each is checked as the document's key is. ``tokens``: words from VOCABULARY labelling the
    queries (and the context's keys, ``context_tokens``), drawn after every number (so the numbers
    are those of the same document without them), padded keys labelled PAD (then one list per batch
    item).

    The same arguments and ``seed`` give the same document; without the variants, the same as
    before they existed.
    """
    for name, value in (("seq_len", seq_len), ("d_model", d_model), ("heads", heads)):
        if value < 1:
            raise ProblemError(f"{name} is {value}; it must be at least 1")
    if batch is not None and batch < 1:
        raise ProblemError(f"batch is {batch}; it must be at least 1")
    if context_len is not None and context_len < 1:
        raise ProblemError(f"context_len is {context_len}; it must be at least 1")
    if d_model % heads:
        raise ProblemError(
            f"d_model {d_model} does not split into {heads} heads "
            f"(head counts that would: {head_counts(d_model, heads)})"
        )
    head_dim = d_model // heads
    key_heads = heads if kv_heads is None else variants.kv_heads(kv_heads, heads, {})
    if rope is not None:
        variants.rope(rope, head_dim)
    variants.window(window)
    variants.softcap(softcap)
    if causal and causal_lower_right:
        raise ProblemError("causal and causal_lower_right are two masks: give one")
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)

    def draw(*shape: int, spread: float = 1.0, mean: float = 0.0) -> list:
        return np.round(rng.normal(mean, spread, shape), DECIMALS).tolist()

    weight_spread = 1.0 / math.sqrt(d_model)
    kv_width = key_heads * head_dim
    document: dict[str, Any] = {"x": draw(*lead, seq_len, d_model)}
    if context_len is not None:
        document["context"] = draw(*lead, context_len, d_model)
    for name, width in (("w_query", d_model), ("w_key", kv_width), ("w_value", kv_width)):
        document[name] = draw(d_model, width, spread=weight_spread)
    if bias:
        for name, width in (("b_query", d_model), ("b_key", kv_width), ("b_value", kv_width)):
            document[name] = draw(width, spread=weight_spread)
    if out_proj:
        document["w_out"] = draw(d_model, d_model, spread=weight_spread)
        if bias:
            document["b_out"] = draw(d_model, spread=weight_spread)
    document["heads"] = heads
    if kv_heads is not None:
        document["kv_heads"] = key_heads
    if causal:
        document["mask"] = "causal"
    if causal_lower_right:
        document["mask"] = "causal_lower_right"
    if rope is not None:
        document["rope"] = rope
    if qk_norm:
        document["qk_norm"] = {"q_weight": draw(head_dim, spread=0.1, mean=1.0),
                               "k_weight": draw(head_dim, spread=0.1, mean=1.0), "eps": 1e-6}
    for key, value in (("window", window), ("softcap", softcap)):
        if value is not None:
            document[key] = value
    if alibi:
        document["alibi"] = True
    if sinks:
        document["sinks"] = draw(heads)
    if padding:
        document["padding"] = _padding(rng, batch, context_len or seq_len)
    if tokens:
        document.update(_tokens(rng, seq_len, context_len, document.get("padding")))
    return document


def _tokens(rng: np.random.Generator, seq_len: int, context_len: int | None, padding: list | None) -> dict[str, list]:
    """``tokens`` (and ``context_tokens``) from VOCABULARY; the padded keys' (``padding``'s 0s) PAD."""
    def words(length: int) -> list[str]:
        return [VOCABULARY[index] for index in rng.integers(0, len(VOCABULARY), length)]

    labelled = {"tokens": words(seq_len)}
    keys = "tokens" if context_len is None else "context_tokens"
    if context_len is not None:
        labelled["context_tokens"] = words(context_len)
    if padding is not None:
        items = padding if isinstance(padding[0], list) else [padding]
        padded = [[token if real else PAD for token, real in zip(labelled[keys], item, strict=True)] for item in items]
        labelled[keys] = padded if isinstance(padding[0], list) else padded[0]
    return labelled


def _padding(rng: np.random.Generator, batch: int | None, k_len: int) -> list:
    """1 for each real key, 0 for the padding at the end: batched, the first item is the longest
    (unpadded, as a batch is padded to its longest) and each other is 1 to k_len keys long;
    unbatched, the last 1 to k_len/2 keys are padding (none of one key)."""
    if batch is None:
        real = k_len - int(rng.integers(1, k_len // 2 + 1)) if k_len > 1 else k_len
        return [1] * real + [0] * (k_len - real)
    lengths = [k_len] + [int(length) for length in rng.integers(1, k_len + 1, batch - 1)]
    return [[1] * length + [0] * (k_len - length) for length in lengths]
