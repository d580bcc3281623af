"""The forward pass of attention, defined once: an ordered list of stages.

Each Stage has its name, the axes of what it makes, its formula, how it changes the shape, and
the function that computes it from the stages before it. The full trace runs them all
(pipeline.py), the blocked path runs the same functions on a block of queries, ``shapes`` reads
their axes, formulas and explanations, ``explain`` reads one row through them, and ``check``'s
mistakes are these stages run with a Slip. The arithmetic is PyTorch's (``nn.MultiheadAttention``
and ``F.scaled_dot_product_attention``). Pure numpy: no I/O, no printing.

Internally every array has both a batch and a heads axis:
q (batch, heads, q_len, head_dim), k (batch, heads, k_len, head_dim),
v (batch, heads, k_len, head_dim_v), scores/logits/softmax (batch, heads, q_len, k_len),
weighted (batch, heads, q_len, head_dim_v), concat (batch, q_len, heads*head_dim_v),
output (batch, q_len, d_out).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from attncli.errors import ProblemError
from attncli.keys import STEP_NAMES
from attncli.problem import Problem
from attncli.sizes import Sizes

# --- the arithmetic of each stage ------------------------------------------------------------------


def project(source: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """source·weight + bias: (..., seq, d_in)·(..., d_in, width) -> (..., seq, width)."""
    projected = source @ weight
    if bias is not None:
        projected += bias
    return projected


def split_heads(projected: np.ndarray, heads: int, interleaved: bool = False) -> np.ndarray:
    """(batch, seq, heads*dim) -> (batch, heads, seq, dim); head h takes columns h*dim:(h+1)*dim.

    ``interleaved`` is the slip of reshaping to (batch, seq, dim, heads): every heads-th column."""
    batch, seq, width = projected.shape
    if interleaved:
        return projected.reshape(batch, seq, width // heads, heads).transpose(0, 3, 1, 2)
    return projected.reshape(batch, seq, heads, width // heads).transpose(0, 2, 1, 3)


def merge_heads(per_head: np.ndarray) -> np.ndarray:
    """(batch, heads, seq, dim) -> (batch, seq, heads*dim): the inverse of split_heads."""
    batch, heads, seq, dim = per_head.shape
    return per_head.transpose(0, 2, 1, 3).reshape(batch, seq, heads * dim)


def dot_scores(queries: np.ndarray, keys: np.ndarray, transposed: bool = False) -> np.ndarray:
    """Q·Kᵀ: (..., q_len, head_dim)·(..., k_len, head_dim) -> (..., q_len, k_len).

    ``transposed`` is the slip of computing K·Qᵀ (which only fits when q_len == k_len)."""
    if transposed:
        if queries.shape[-2] != keys.shape[-2]:
            raise ProblemError("K·Qᵀ does not fit the mask or values when q_len != k_len")
        return keys @ queries.swapaxes(-1, -2)
    return queries @ keys.swapaxes(-1, -2)


def scaled(scores: np.ndarray, problem: Problem) -> np.ndarray:
    """scores × the problem's scale (scores itself when that is 1)."""
    if problem.scale == "sqrt":
        # one rounding (÷√d) instead of two (×(1/√d)): closer to the exact value
        return scores if problem.head_dim == 1 else scores / math.sqrt(problem.head_dim)
    factor = problem.scale_factor
    return scores if factor == 1.0 else scores * factor


def masked(logits: np.ndarray, allowed: np.ndarray | None, in_place: bool = False) -> np.ndarray:
    """−∞ where ``allowed`` (broadcastable, True = may attend) is False; ``in_place`` writes into
    ``logits``, which must then be an array of this run's own."""
    if allowed is None:
        return logits
    if in_place:
        np.copyto(logits, -np.inf, where=~allowed)
        return logits
    return np.where(allowed, logits, -np.inf)


def row_shift(logits: np.ndarray, any_masked: bool) -> np.ndarray:
    """Each row's largest logit (..., 1), subtracted before exponentiating so none overflows.

    A fully masked row has max −∞; shifting it by 0 instead keeps exp(−∞) = 0, not NaN."""
    # ufuncs called directly: this runs once per problem of a JSON Lines stream, where the
    # method wrappers' overhead is a fair share of the whole
    row_max = np.maximum.reduce(logits, axis=-1, keepdims=True)
    if any_masked:
        row_max[np.isneginf(row_max)] = 0.0
    return row_max


def exponentials(logits: np.ndarray, shift: np.ndarray, power: Callable = np.exp,
                 out: np.ndarray | None = None) -> np.ndarray:
    """power(logits − shift), into ``out`` when given (the blocked path reuses its scores)."""
    shifted = np.subtract(logits, shift, out=out)
    return power(shifted, out=shifted)


def masked_softmax(logits: np.ndarray, allowed: np.ndarray | None, axis: int = -1) -> np.ndarray:
    """Softmax over the keys (the last axis) of ``logits`` (..., q_len, k_len), computed stably.

    ``allowed`` (broadcastable to ``logits``, True = may attend) marks the keys a query may see;
    masked logits are expected to be −∞ already. A row with no allowed key gets weights 0, as
    PyTorch's SDPA gives, rather than NaN. ``axis=-2`` is the slip of normalising over queries.
    """
    if axis != -1:
        swapped = None if allowed is None else np.broadcast_to(allowed, logits.shape).swapaxes(-1, -2)
        return masked_softmax(logits.swapaxes(-1, -2), swapped).swapaxes(-1, -2)
    weights = exponentials(logits, row_shift(logits, allowed is not None))
    totals = np.add.reduce(weights, axis=-1, keepdims=True)
    if allowed is None:
        return np.divide(weights, totals, out=weights)  # every row has a positive total
    np.divide(weights, totals, out=weights, where=totals > 0)
    return weights


def weighted_values(weights: np.ndarray, values: np.ndarray, *, totals_appended: bool = False,
                    transposed: bool = False) -> np.ndarray:
    """softmax·V per head: (..., q_len, k_len)·(..., k_len, head_dim_v) -> (..., q_len, head_dim_v).

    With ``totals_appended``, ``values`` ends in a column of ones and ``weights`` are not yet
    normalised: the last column of the product is each row's total, and the rest is divided by it
    (0 for a row with no weight). ``transposed`` is the slip of softmaxᵀ·V. Each row is a convex
    combination of V's rows, so it lies within their range: when rounding pushes a sum of values
    near ±1.8e308 to ±inf, the range's bound is the right answer.
    """
    if transposed:
        if weights.shape[-1] != weights.shape[-2]:
            raise ProblemError("softmaxᵀ·V does not fit when q_len != k_len")
        weights = weights.swapaxes(-1, -2)
    per_head = weights @ values
    if totals_appended:
        totals, values = per_head[..., -1:], values[..., :-1]
        per_head = np.divide(per_head[..., :-1], totals, out=np.zeros_like(per_head[..., :-1]), where=totals > 0)
    if math.isfinite(np.add.reduce(per_head, axis=None)):
        return per_head
    if not np.isfinite(per_head).all() and np.isfinite(values).all():
        low, high = values.min(axis=-2, keepdims=True), values.max(axis=-2, keepdims=True)
        per_head = np.where(np.isfinite(per_head), per_head, np.clip(per_head, low, high))
    return per_head


def output_projection(concat: np.ndarray, problem: Problem) -> np.ndarray:
    """concat·W_O + b_O (batch, q_len, d_out), or concat itself without W_O."""
    return concat if problem.w_out is None else project(concat, problem.w_out, problem.b_out)


# --- the stages, in order ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Slip:
    """How to run the stages: right (the defaults), or with one of the structural slips that
    ``check`` knows: heads taken as interleaved columns, K·Qᵀ, softmax over the queries, softmaxᵀ·V."""

    interleaved_heads: bool = False
    scores_transposed: bool = False
    softmax_axis: int = -1
    weights_transposed: bool = False


RIGHT = Slip()


@dataclass
class Flow:
    """What the stages of one run share: the ``problem``, the ``slip`` to make, the ``allowed``
    mask (batch | 1, heads | 1, q_len, k_len) or None, and the ``arrays`` made so far by name."""

    problem: Problem
    slip: Slip = RIGHT
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def allowed(self) -> np.ndarray | None:
        return self.problem.mask


@dataclass(frozen=True)
class Stage:
    """One stage: its ``name`` (a step of the trace when ``shown``), the ``axes`` of its array,
    the ``formula`` and ``how`` its shape comes about for given Sizes, whether a problem of those
    sizes has it as a step (``present``), which of its values must be finite (``checked``: "all",
    "allowed" for those a query may see, or None) and the function that runs it."""

    name: str
    axes: tuple[str, ...]
    run: Callable[[Flow], np.ndarray]
    formula: Callable[[Sizes], str]
    how: Callable[[Sizes], str]
    present: Callable[[Sizes], bool] = lambda sizes: True
    checked: str | None = "all"
    shown: bool = True


def _projection_stage(name: str, source: str, weight: str, bias: str, length: str, dim: str) -> Stage:
    letter = name.upper()

    def run(flow: Flow) -> np.ndarray:
        problem = flow.problem
        projected = project(getattr(problem, source), getattr(problem, weight), getattr(problem, bias))
        return split_heads(projected, problem.heads, flow.slip.interleaved_heads)

    def formula(sizes: Sizes) -> str:
        bias_term = f" + b_{letter}" if bias in sizes.biases else ""
        return f"{letter} = {'x' if name == 'q' else sizes.source}·W_{letter}{bias_term}"

    def how(sizes: Sizes) -> str:
        d_in = sizes.d_model if name == "q" else sizes.d_source
        per_head = sizes.dim_v if name == "v" else sizes.dim
        text = f"times W_{letter} ({d_in}×{sizes.heads * per_head})"
        return text + (f", split into {sizes.heads} heads × {per_head}" if sizes.heads > 1 else "")

    return Stage(name, ("batch", "heads", length, dim), run, formula, how)


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
        lambda flow: dot_scores(flow.arrays["q"], flow.arrays["k"], flow.slip.scores_transposed),
        lambda sizes: "scores = Q·Kᵀ",
        lambda sizes: f"each query·each key{', per head' if sizes.heads > 1 else ''}: {sizes.dim} dims summed away",
        checked="allowed",
    ),
    Stage(
        "logits", ("batch", "heads", "q_len", "k_len"),
        lambda flow: masked(scaled(flow.arrays["scores"], flow.problem), flow.allowed),
        _logits_formula,
        lambda sizes: " and ".join(word for word, flag in (("scaled", sizes.scaled), ("masked", sizes.masked))
                                   if flag) + " cell by cell",
        present=_has_logits, checked="allowed",
    ),
    Stage(
        "softmax", ("batch", "heads", "q_len", "k_len"),
        lambda flow: masked_softmax(flow.arrays["logits"], flow.allowed, flow.slip.softmax_axis),
        lambda sizes: (f"softmax = softmax({'logits' if _has_logits(sizes) else 'scores'}) over keys"
                       if sizes.exact else "softmax over keys"),
        lambda sizes: "along k_len: each row sums to 1",
        checked=None,
    ),
    Stage(
        "weighted", ("batch", "heads", "q_len", "head_dim_v"),
        lambda flow: weighted_values(flow.arrays["softmax"], flow.arrays["v"],
                                     transposed=flow.slip.weights_transposed),
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
        _output_formula, _output_how,
    ),
)

STAGE = {stage.name: stage for stage in STAGES}
# The steps a trace can show, in order: the stages that are shown.
STEP_AXES = {stage.name: stage.axes for stage in STAGES if stage.shown}
assert tuple(STEP_AXES) == STEP_NAMES, "keys.STEP_NAMES must list the shown stages in order"
