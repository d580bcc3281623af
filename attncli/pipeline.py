"""Scaled dot-product attention, step by step, in float64 numpy.

The arithmetic is that of PyTorch's ``nn.MultiheadAttention`` and
``F.scaled_dot_product_attention``: project, split the width into contiguous
per-head blocks, scores = Q·Kᵀ, multiply by the scale, mask with −∞, softmax
over the keys, weight the values, concatenate the heads, project out.
No I/O and no printing: problems are reported by raising ProblemError.
"""

from __future__ import annotations

import math

import numpy as np

from attncli.errors import ProblemError
from attncli.problem import Problem
from attncli.trace import STEP_AXES, Step, Trace, present_axes, present_shape


def split_heads(projected: np.ndarray, heads: int) -> np.ndarray:
    """(batch, seq, heads*dim) -> (batch, heads, seq, dim); head h takes columns h*dim:(h+1)*dim."""
    batch, seq, width = projected.shape
    return projected.reshape(batch, seq, heads, width // heads).transpose(0, 2, 1, 3)


def merge_heads(per_head: np.ndarray) -> np.ndarray:
    """(batch, heads, seq, dim) -> (batch, seq, heads*dim): the inverse of split_heads."""
    batch, heads, seq, dim = per_head.shape
    return per_head.transpose(0, 2, 1, 3).reshape(batch, seq, heads * dim)


def masked_softmax(logits: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """Softmax over the last axis of ``logits`` (..., q_len, k_len), computed stably.

    ``allowed`` (broadcastable to ``logits``, True = may attend) marks the keys
    a query may see; masked logits are expected to be −∞ already. A row with
    no allowed key gets weights 0, as PyTorch's SDPA gives, rather than NaN.
    """
    row_max = logits.max(axis=-1, keepdims=True)
    if allowed is not None:
        # a fully masked row has max −∞; shifting by 0 instead keeps exp(−∞) = 0, not NaN
        row_max[np.isneginf(row_max)] = 0.0
    weights = np.exp(logits - row_max)
    totals = weights.sum(axis=-1, keepdims=True)
    np.divide(weights, totals, out=weights, where=totals > 0)
    return weights


def weighted_values(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """softmax·V per head: (batch, heads, q_len, k_len) · (batch, heads, k_len, head_dim_v).

    Each row is a convex combination of V's rows, so it lies within their range; when rounding
    pushes a sum of values near ±1.8e308 to ±inf, the range's bound is the right answer.
    """
    per_head = weights @ values
    if not np.isfinite(per_head).all() and np.isfinite(values).all():
        low, high = values.min(axis=-2, keepdims=True), values.max(axis=-2, keepdims=True)
        per_head = np.where(np.isfinite(per_head), per_head, np.clip(per_head, low, high))
    return per_head


def attention(problem: Problem) -> Trace:
    """Run the whole pipeline on a validated Problem and return its Trace.

    Internally every array has both a batch and a heads axis:
    q (batch, heads, q_len, head_dim), k (batch, heads, k_len, head_dim),
    v (batch, heads, k_len, head_dim_v), scores/logits/softmax
    (batch, heads, q_len, k_len), concat (batch, q_len, heads*head_dim_v),
    output (batch, q_len, d_out). The Trace drops the batch axis when x had
    none and the heads axis when heads == 1.
    Raises ProblemError when a step overflows float64.
    """
    heads = problem.heads
    factor = problem.scale_factor
    arrays: dict[str, np.ndarray] = {}
    # Overflow is checked step by step below and reported by name, so numpy's warnings are noise.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for name, source, weight, bias in (
            ("q", problem.x, problem.w_query, problem.b_query),
            ("k", problem.context, problem.w_key, problem.b_key),
            ("v", problem.context, problem.w_value, problem.b_value),
        ):
            projected = source @ weight
            if bias is not None:
                projected += bias
            arrays[name] = split_heads(projected, heads)
            _check_finite(name, arrays[name], problem)

        allowed = problem.mask
        arrays["scores"] = arrays["q"] @ arrays["k"].swapaxes(-1, -2)
        # a masked score may overflow: it is never used
        _check_finite("scores", arrays["scores"], problem, allowed)

        logits = arrays["scores"]
        if _has_logits(problem):
            if problem.scale == "sqrt":
                # one rounding (÷√d) instead of two (×(1/√d)): closer to the exact value
                logits = logits / math.sqrt(problem.head_dim)
            else:
                logits = logits * factor
            if allowed is not None:
                logits = np.where(allowed, logits, -np.inf)
            _check_finite("logits", logits, problem, allowed)
            arrays["logits"] = logits

        arrays["softmax"] = masked_softmax(logits, allowed)
        # finite: each row is clipped into the range of V's rows, which are finite
        concat = merge_heads(weighted_values(arrays["softmax"], arrays["v"]))
        if problem.w_out is not None:
            arrays["concat"] = concat
            output = concat @ problem.w_out
            if problem.b_out is not None:
                output += problem.b_out
        else:
            output = concat
        arrays["output"] = output
        _check_finite("output", output, problem)

    steps = {
        name: _step(name, arrays[name], problem)
        for name in STEP_AXES
        if name in arrays
    }
    return Trace(steps=steps, meta=_meta(problem), warnings=_masked_row_warnings(problem))


def _check_finite(name: str, array: np.ndarray, problem: Problem, allowed: np.ndarray | None = None) -> None:
    finite = np.isfinite(array)
    if allowed is not None:
        finite |= ~allowed
    if not finite.all():
        where = np.argwhere(~finite)[0]
        axes = present_axes(name, problem.batched, problem.heads)
        position = ", ".join(
            f"{axis} {int(index)}" for axis, index in zip(STEP_AXES[name], where, strict=True) if axis in axes
        )
        raise ProblemError(
            f"{name} overflows float64 at ({position}): beyond ±1.8e308; scale the inputs or weights down",
            {name: present_shape(array.shape, name, problem.batched, problem.heads)},
        )


def _step(name: str, array: np.ndarray, problem: Problem) -> Step:
    axes = present_axes(name, problem.batched, problem.heads)
    return Step(
        name=name,
        formula=formula(name, problem),
        array=array.reshape(present_shape(array.shape, name, problem.batched, problem.heads)),
        axes=axes,
    )


def formula(name: str, problem: Problem) -> str:
    """The formula of step ``name`` for this problem, e.g. ``Q = x·W_Q + b_Q``."""
    source = "context" if problem.cross else "x"
    match name:
        case "q":
            return "Q = x·W_Q" + (" + b_Q" if problem.b_query is not None else "")
        case "k":
            return f"K = {source}·W_K" + (" + b_K" if problem.b_key is not None else "")
        case "v":
            return f"V = {source}·W_V" + (" + b_V" if problem.b_value is not None else "")
        case "scores":
            return "scores = Q·Kᵀ"
        case "logits":
            factor = problem.scale_factor
            scaled = "scores" if factor == 1.0 else (
                "scores / √head_dim" if problem.scale == "sqrt" else f"scores × {factor:g}"
            )
            return "logits = " + scaled + (", masked → −∞" if problem.mask is not None else "")
        case "softmax":
            return "softmax = softmax(" + ("logits" if _has_logits(problem) else "scores") + ") over keys"
        case "concat":
            return "concat = [softmax·V for each head]" if problem.heads > 1 else "concat = softmax·V"
        case _:
            if problem.w_out is not None:
                return "output = concat·W_O" + (" + b_O" if problem.b_out is not None else "")
            return "output = [softmax·V for each head]" if problem.heads > 1 else "output = softmax·V"


def _has_logits(problem: Problem) -> bool:
    return problem.scale_factor != 1.0 or problem.mask is not None


def _meta(problem: Problem) -> dict:
    return {
        "heads": problem.heads,
        "head_dim": problem.head_dim,
        "head_dim_v": problem.head_dim_v,
        "batched": problem.batched,
        "cross_attention": problem.cross,
        "scale": {
            "rule": problem.scale if isinstance(problem.scale, str) else "number",
            "factor": problem.scale_factor,
        },
        "mask": problem.mask_rule,
    }


def _masked_row_warnings(problem: Problem) -> tuple[str, ...]:
    if problem.mask is None:
        return ()
    blind = ~problem.mask.any(axis=-1)  # (batch | 1, heads | 1, q_len)
    places = np.argwhere(blind)
    if not len(places):
        return ()
    names = []
    for batch_index, head_index, query in places[:5]:
        name = f"query {query}"
        if problem.batched:
            name += f" of batch item {batch_index}" if problem.mask.shape[0] > 1 else " of every batch item"
        if problem.heads > 1:
            name += f", head {head_index}" if problem.mask.shape[1] > 1 else ", every head"
        names.append(name)
    more = f" and {len(places) - 5} more" if len(places) > 5 else ""
    return (
        f"every key is masked for {'; '.join(names)}{more}: "
        "its weights are 0 and its per-head output is 0",
    )
