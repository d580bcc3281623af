"""Random, valid problem documents: for trying attncli, for pipelines and for benchmarks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from attncli.errors import ProblemError
from attncli.wording import head_counts

# Four decimals keep a document readable; the values need no more to be a fair test.
DECIMALS = 4


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
) -> dict[str, Any]:
    """A problem document: x (batch?, seq_len, d_model) drawn from N(0, 1); weights
    (d_model, d_model) from N(0, 1/d_model), so scores stay of order 1; with ``context_len``
    a context (batch?, context_len, d_model); optional biases, W_O and causal mask.

    The same arguments and ``seed`` give the same document.
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
    rng = np.random.default_rng(seed)
    lead = () if batch is None else (batch,)

    def draw(*shape: int, spread: float = 1.0) -> list:
        return np.round(rng.normal(0.0, spread, shape), DECIMALS).tolist()

    weight_spread = 1.0 / math.sqrt(d_model)
    document: dict[str, Any] = {"x": draw(*lead, seq_len, d_model)}
    if context_len is not None:
        document["context"] = draw(*lead, context_len, d_model)
    for name in ("w_query", "w_key", "w_value"):
        document[name] = draw(d_model, d_model, spread=weight_spread)
    if bias:
        for name in ("b_query", "b_key", "b_value"):
            document[name] = draw(d_model, spread=weight_spread)
    if out_proj:
        document["w_out"] = draw(d_model, d_model, spread=weight_spread)
        if bias:
            document["b_out"] = draw(d_model, spread=weight_spread)
    document["heads"] = heads
    if causal:
        document["mask"] = "causal"
    return document
