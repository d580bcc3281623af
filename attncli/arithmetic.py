"""The arithmetic of attention's stages: functions of numpy arrays (and, for the scale and the
output projection, of the Problem that holds them), with no side effects.

Each works on arrays with any leading axes, so the same function serves the whole problem
(batch, heads, q_len, …) and the blocked path's block of queries of one head. The stage
definitions (stages.py) say in which order they run and what they make. No I/O, no printing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from attncli.errors import ProblemError
from attncli.problem import Problem


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
        if math.isfinite(np.add.reduce(per_head, axis=None)):
            # a NaN total (an overflow upstream) stays NaN, for the caller to find
            per_head = np.divide(per_head[..., :-1], totals, out=np.zeros_like(per_head[..., :-1]), where=totals != 0)
        else:
            # values near ±1.8e308: a sum of unnormalised weights × values may overflow where the
            # weighted mean does not, so normalise first, as the full path does
            weights = np.divide(weights, totals, out=np.zeros_like(weights), where=totals != 0)
            per_head = weights @ values
    if math.isfinite(np.add.reduce(per_head, axis=None)):
        return per_head
    if not np.isfinite(per_head).all() and np.isfinite(values).all():
        low, high = values.min(axis=-2, keepdims=True), values.max(axis=-2, keepdims=True)
        per_head = np.where(np.isfinite(per_head), per_head, np.clip(per_head, low, high))
    return per_head


def output_projection(concat: np.ndarray, problem: Problem) -> np.ndarray:
    """concat·W_O + b_O (batch, q_len, d_out), or concat itself without W_O."""
    return concat if problem.w_out is None else project(concat, problem.w_out, problem.b_out)
