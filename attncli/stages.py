"""The forward pass of attention, defined once: an ordered list of stages.

Each Stage has its name, the axes of what it makes, its formula, how it changes the shape, and
the function that computes it from the stages before it (the arithmetic is in arithmetic.py,
and a stage reads its inputs through the Flow of its run, flow.py). The full trace runs them
all (pipeline.py); the blocked path runs the same stages on a block of queries of one head;
``shapes`` reads their axes, formulas and explanations; the memory estimate their shapes;
``explain`` reads one row through their functions; and ``check``'s mistakes are these stages
run with a Slip. The arithmetic is PyTorch's (``nn.MultiheadAttention`` and
``F.scaled_dot_product_attention``).

Internally every array has both a batch and a heads axis:
q (batch, heads, q_len, head_dim), k (batch, heads, k_len, head_dim),
v (batch, heads, k_len, head_dim_v), scores/logits/softmax (batch, heads, q_len, k_len),
weighted (batch, heads, q_len, head_dim_v), concat (batch, q_len, heads*head_dim_v),
output (batch, q_len, d_out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from attncli.arithmetic import (
    dot_scores,
    exponentials,
    masked,
    masked_softmax,
    merge_heads,
    output_projection,
    project,
    row_shift,
    scaled,
    split_heads,
    weighted_values,
)
from attncli.flow import Flow
from attncli.keys import STEP_NAMES
from attncli.sizes import Sizes

# --- the stages, in order ----------------------------------------------------------------------------


class Stage(NamedTuple):
    """One stage: its ``name`` (a step of the trace when ``shown``), the ``axes`` of its array,
    the ``formula`` and ``how`` its shape comes about for given Sizes, whether a problem of those
    sizes has it as a step (``present``), which of its values must be finite (``checked``: "all",
    "allowed" for those a query may see, or None), the function that runs it, and its ``unit``
    on the blocked path: "problem" (made once, before the blocks: keys and values), "block" (made
    per block of queries of one head) or "heads" (made once from every block: it mixes heads).
    Later stages read what it made by its ``slot``: its name, or the slot of the array it
    transforms (a rotation of Q would fill the slot ``q``, so the scores read the rotated Q)."""

    name: str
    axes: tuple[str, ...]
    run: Callable[[Flow], np.ndarray]
    formula: Callable[[Sizes], str]
    how: Callable[[Sizes], str]
    present: Callable[[Sizes], bool] = lambda sizes: True
    checked: str | None = "all"
    shown: bool = True
    unit: str = "block"
    transforms: str | None = None

    @property
    def slot(self) -> str:
        return self.transforms or self.name


def _projection_stage(name: str, source: str, weight: str, bias: str, length: str, dim: str) -> Stage:
    letter = name.upper()

    def run(flow: Flow) -> np.ndarray:
        inputs, weights, biases, heads = flow.projection(source, weight, bias, length)
        return split_heads(project(inputs, weights, biases), heads, flow.slip.interleaved_heads)

    def formula(sizes: Sizes) -> str:
        bias_term = f" + b_{letter}" if bias in sizes.biases else ""
        return f"{letter} = {'x' if name == 'q' else sizes.source}·W_{letter}{bias_term}"

    def how(sizes: Sizes) -> str:
        d_in = sizes.d_model if name == "q" else sizes.d_source
        per_head = sizes.dim_v if name == "v" else sizes.dim
        text = f"times W_{letter} ({d_in}×{sizes.heads * per_head})"
        return text + (f", split into {sizes.heads} heads × {per_head}" if sizes.heads > 1 else "")

    return Stage(name, ("batch", "heads", length, dim), run, formula, how,
                 unit="block" if length == "q_len" else "problem")


def _scores(flow: Flow) -> np.ndarray:
    queries = flow.arrays["q"]
    if flow.fast:
        queries = flow.fold(queries)  # the scale (and log2 e) on Q: one multiplication per query, not per score
    return dot_scores(queries, flow.arrays["k"], flow.slip.scores_transposed)


def _logits(flow: Flow) -> np.ndarray:
    if flow.fast:  # the scale is in Q already, and these scores are this block's own to overwrite
        return masked(flow.arrays["scores"], flow.allowed, in_place=True)
    return masked(scaled(flow.arrays["scores"], flow.problem), flow.allowed)


def _softmax(flow: Flow) -> np.ndarray:
    logits = flow.arrays["logits"]
    if flow.fast:  # in place, and normalised after the product with V (see _weighted)
        return exponentials(logits, row_shift(logits, any_masked=True), flow.power, out=logits)
    return masked_softmax(logits, flow.allowed, flow.slip.softmax_axis)


def _weighted(flow: Flow) -> np.ndarray:
    if flow.fast:
        return weighted_values(flow.arrays["softmax"], flow.values_with_ones(), totals_appended=True)
    return weighted_values(flow.arrays["softmax"], flow.arrays["v"], transposed=flow.slip.weights_transposed)


def _logits_formula(sizes: Sizes) -> str:
    if not sizes.exact:
        return "logits = scores × scale"
    scaling = "scores" if sizes.factor == 1.0 else (
        "scores / √head_dim" if sizes.scale == "sqrt" else f"scores × {sizes.factor:g}")
    return "logits = " + scaling + (", masked → −∞" if sizes.masked else "")


def _has_logits(sizes: Sizes) -> bool:
    return sizes.scaled or sizes.masked


def _merge_how(sizes: Sizes) -> str:
    if sizes.heads > 1:
        return f"softmax·V per head, heads joined: {sizes.heads}×{sizes.dim_v} = {sizes.width_v}"
    return "softmax·V: weighted sums of V's rows"


def _concat_formula(sizes: Sizes) -> str:
    return "concat = [softmax·V for each head]" if sizes.heads > 1 or not sizes.exact else "concat = softmax·V"


def _output_formula(sizes: Sizes) -> str:
    if sizes.d_out is not None:
        return "output = concat·W_O" + (" + b_O" if "b_out" in sizes.biases else "")
    return "output = [softmax·V for each head]" if sizes.heads > 1 else "output = softmax·V"


def _output_how(sizes: Sizes) -> str:
    return f"times W_O ({sizes.width_v}×{sizes.d_out})" if sizes.d_out is not None else _merge_how(sizes)


STAGES: tuple[Stage, ...] = (
    _projection_stage("q", "x", "w_query", "b_query", "q_len", "head_dim"),
    _projection_stage("k", "context", "w_key", "b_key", "k_len", "head_dim"),
    _projection_stage("v", "context", "w_value", "b_value", "k_len", "head_dim_v"),
    Stage(
        "scores", ("batch", "heads", "q_len", "k_len"),
        _scores,
        lambda sizes: "scores = Q·Kᵀ",
        lambda sizes: f"each query·each key{', per head' if sizes.heads > 1 else ''}: {sizes.dim} dims summed away",
        checked="allowed",
    ),
    Stage(
        "logits", ("batch", "heads", "q_len", "k_len"),
        _logits,
        _logits_formula,
        lambda sizes: " and ".join(word for word, flag in (("scaled", sizes.scaled), ("masked", sizes.masked))
                                   if flag) + " cell by cell",
        present=_has_logits, checked="allowed",
    ),
    Stage(
        "softmax", ("batch", "heads", "q_len", "k_len"),
        _softmax,
        lambda sizes: (f"softmax = softmax({'logits' if _has_logits(sizes) else 'scores'}) over keys"
                       if sizes.exact else "softmax over keys"),
        lambda sizes: "along k_len: each row sums to 1",
        checked=None,
    ),
    Stage(
        "weighted", ("batch", "heads", "q_len", "head_dim_v"),
        _weighted,
        lambda sizes: "softmax·V", _merge_how, checked=None, shown=False,
    ),
    Stage(
        "concat", ("batch", "q_len", "heads*head_dim_v"),
        lambda flow: merge_heads(flow.arrays["weighted"]),
        _concat_formula, _merge_how,
        # finite: each row was kept within the range of V's rows, which are finite
        present=lambda sizes: sizes.d_out is not None, checked=None,
    ),
    Stage(
        "output", ("batch", "q_len", "d_out"),
        lambda flow: output_projection(flow.arrays["concat"], flow.problem),
        _output_formula, _output_how, unit="heads",
    ),
)

STAGE = {stage.name: stage for stage in STAGES}
def last_in_slot(slot: str, names: Iterable[str]) -> str | None:
    """Of the stages named in ``names`` (a trace's steps), the last that fills ``slot``: the Q the
    scores were made from is the last stage in slot q (a rotation's, when there is one)."""
    present = set(names)
    return next((stage.name for stage in reversed(STAGES) if stage.slot == slot and stage.name in present), None)


# Axes that count heads: a Trace leaves them out for a single head (grouped-query attention's
# key/value heads would join them).
HEAD_AXES = frozenset({"heads"})
# The steps a trace can show, in order: the stages that are shown.
STEP_AXES = {stage.name: stage.axes for stage in STAGES if stage.shown}
assert tuple(STEP_AXES) == STEP_NAMES, "keys.STEP_NAMES must list the shown stages in order"
