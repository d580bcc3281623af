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


def split_heads(projected: np.ndarray, heads: int, interleaved: bool = False, untransposed: bool = False
                ) -> np.ndarray:
    """(batch, seq, heads*dim) -> (batch, heads, seq, dim); head h takes columns h*dim:(h+1)*dim.

    ``interleaved`` is the slip of reshaping to (batch, seq, dim, heads): every heads-th column;
    ``untransposed`` the slip of viewing the array as (batch·heads, seq, dim) with no transpose,
    so a head's "rows" are runs of seq·dim numbers across tokens and heads."""
    batch, seq, width = projected.shape
    if untransposed:
        return projected.reshape(batch, heads, seq, width // heads)
    if interleaved:
        return projected.reshape(batch, seq, width // heads, heads).transpose(0, 3, 1, 2)
    return projected.reshape(batch, seq, heads, width // heads).transpose(0, 2, 1, 3)


def merge_heads(per_head: np.ndarray, untransposed: bool = False) -> np.ndarray:
    """(batch, heads, seq, dim) -> (batch, seq, heads*dim): the inverse of split_heads.
    ``untransposed`` is the slip of viewing it as (batch, seq, heads*dim) without moving heads back."""
    batch, heads, seq, dim = per_head.shape
    if untransposed:
        return per_head.reshape(batch, seq, heads * dim)
    return per_head.transpose(0, 2, 1, 3).reshape(batch, seq, heads * dim)


def grouped_product(per_head: np.ndarray, per_kv_head: np.ndarray, tiled: bool = False) -> np.ndarray:
    """per_head·per_kv_head for grouped-query attention: (..., heads, m, n)·(..., kv_heads, n, p)
    -> (..., heads, m, p), query head h paired with key/value head h // (heads / kv_heads), as
    Hugging Face's repeat_kv and PyTorch's repeat_interleave pair them (not tiled), without
    copying the key/value heads. ``tiled`` is the slip of tiling them (``repeat``): h % kv_heads."""
    if per_head.ndim < 3 or per_kv_head.ndim < 3 or per_head.shape[-3] in (per_kv_head.shape[-3], 1):
        return per_head @ per_kv_head
    heads, kv_heads = per_head.shape[-3], per_kv_head.shape[-3]
    if kv_heads == 1:
        return per_head @ per_kv_head
    lead, rows = per_head.shape[:-3], per_head.shape[-2:]
    if tiled:  # (groups, kv_heads): query head h = g·kv_heads + kv reads key/value head kv
        grouped = per_head.reshape(*lead, heads // kv_heads, kv_heads, *rows) @ per_kv_head[..., None, :, :, :]
    else:
        grouped = per_head.reshape(*lead, kv_heads, heads // kv_heads, *rows) @ per_kv_head[..., None, :, :]
    return grouped.reshape(*lead, heads, *grouped.shape[-2:])


def per_query_head(per_kv_head: np.ndarray, per_head: np.ndarray) -> np.ndarray:
    """(..., kv_heads, n, p) -> (..., heads, n, p), heads as ``per_head`` has them: each key/value
    head repeated for its group."""
    if per_kv_head.ndim < 3 or per_head.ndim < 3:
        return per_kv_head
    kv_heads, heads = per_kv_head.shape[-3], per_head.shape[-3]
    return per_kv_head if kv_heads in (heads, 1) else np.repeat(per_kv_head, heads // kv_heads, axis=-3)


def dot_scores(queries: np.ndarray, keys: np.ndarray, transposed: bool = False, tiled: bool = False) -> np.ndarray:
    """Q·Kᵀ: (..., heads, q_len, head_dim)·(..., kv_heads, k_len, head_dim) -> (..., heads, q_len, k_len).

    ``transposed`` is the slip of computing K·Qᵀ (which only fits when q_len == k_len); ``tiled``
    the slip of pairing the heads as tiled key/value heads (see grouped_product)."""
    if transposed:
        if queries.shape[-2] != keys.shape[-2]:
            raise ProblemError("K·Qᵀ does not fit the mask or values when q_len != k_len")
        return per_query_head(keys, queries) @ queries.swapaxes(-1, -2)
    return grouped_product(queries, keys.swapaxes(-1, -2), tiled)


def rms_norm(values: np.ndarray, weight: np.ndarray, eps: float, axis: int | tuple[int, ...] = -1,
             mean_square: np.ndarray | None = None) -> np.ndarray:
    """RMSNorm: values / sqrt(mean(values²) + eps) · weight, the mean over ``axis`` (one head's
    head_dim values, or (-3, -1) for all heads of a (..., heads, seq, head_dim) array; or the
    ``mean_square`` given, when the other heads are elsewhere), in Hugging Face's order:
    (values · 1/sqrt(…)) · weight."""
    return values * rms_factor(values, eps, axis, mean_square)[1] * weight


def rms_factor(values: np.ndarray, eps: float, axis: int | tuple[int, ...] = -1,
               mean_square: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """RMSNorm's mean of squares over ``axis`` (kept; or the one given) and its factor
    1/sqrt(mean of squares + eps)."""
    if mean_square is None:
        mean_square = np.mean(np.square(values), axis=axis, keepdims=True)
    return mean_square, 1.0 / np.sqrt(mean_square + np.asarray(eps, dtype=values.dtype))


def rotary_angles(positions: np.ndarray, inv_freq: np.ndarray, dtype: np.dtype,
                  attention_factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin of position × frequency, (seq, rotary_dim / 2), each × ``attention_factor``
    (YaRN's), computed in float64 and then rounded to ``dtype`` (Hugging Face computes them in
    float32 even for a float64 model)."""
    angles = positions.astype(np.float64)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos.astype(dtype, copy=False), sin.astype(dtype, copy=False)


def rotate(values: np.ndarray, cos: np.ndarray, sin: np.ndarray, style: str) -> np.ndarray:
    """Rotary embeddings of (..., seq, head_dim), pair i turned by angle i of each row's position:
    ``style`` "neox" pairs dim i with i + rotary_dim/2 (Llama's rotate_half), "gptj" pairs 2i with
    2i + 1 (GPT-J's rotate_every_two). Dims past rotary_dim = 2·cos.shape[-1] pass through.
    Each pair (a, b) becomes (a·cos − b·sin, b·cos + a·sin), as x·cos + rotate(x)·sin does."""
    half = cos.shape[-1]
    first, second = (slice(0, half), slice(half, 2 * half)) if style == "neox" else (
        slice(0, 2 * half, 2), slice(1, 2 * half, 2))
    a, b = values[..., first], values[..., second]
    rotated = values.copy()
    rotated[..., first] = a * cos - b * sin
    rotated[..., second] = b * cos + a * sin
    return rotated


def soft_capped(logits: np.ndarray, cap: float, in_place: bool = False) -> np.ndarray:
    """cap · tanh(logits / cap), as Gemma 2 caps its logits (divide, tanh, multiply)."""
    cap_value = np.asarray(cap, dtype=logits.dtype)
    capped = np.divide(logits, cap_value, out=logits if in_place else None)
    np.tanh(capped, out=capped)
    return np.multiply(capped, cap_value, out=capped)


def alibi_term(slopes: np.ndarray, query_positions: np.ndarray, key_positions: np.ndarray,
               dtype: np.dtype) -> np.ndarray:
    """ALiBi's bias −slope_h · (query position − key position): slopes (..., heads, 1, 1) ->
    (..., heads, q_len, k_len) in ``dtype``. The distances are whole numbers, exact in the
    logits' dtype (below 2^24 in float32)."""
    distance = np.subtract.outer(query_positions.astype(dtype), key_positions.astype(dtype))
    term = np.multiply(slopes.astype(dtype, copy=False), distance)
    return np.negative(term, out=term)


def add_alibi(logits: np.ndarray, slopes: np.ndarray, query_positions: np.ndarray, key_positions: np.ndarray,
              in_place: bool = False) -> np.ndarray:
    """logits + alibi_term: logits (..., heads, q_len, k_len), slopes (..., heads, 1, 1); ``in_place``
    writes into ``logits``."""
    term = alibi_term(slopes, query_positions, key_positions, logits.dtype)
    return np.add(logits, term, out=logits if in_place else None)


def scaled(scores: np.ndarray, problem: Problem, in_place: bool = False) -> np.ndarray:
    """scores × the problem's scale (scores itself when that is 1); ``in_place`` writes into
    ``scores``, which must then be an array of this run's own."""
    out = scores if in_place else None
    if problem.scale == "sqrt":
        # one rounding (÷√d) instead of two (×(1/√d)): closer to the exact value
        return scores if problem.head_dim == 1 else np.divide(scores, math.sqrt(problem.head_dim), out=out)
    factor = problem.scale_factor
    return scores if factor == 1.0 else np.multiply(scores, factor, out=out)


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


def exponentials(logits: np.ndarray, shift: np.ndarray | None, power: Callable = np.exp,
                 out: np.ndarray | None = None) -> np.ndarray:
    """power(logits − shift) (of logits when ``shift`` is None), into ``out`` when given (the
    blocked path reuses its scores)."""
    shifted = logits if shift is None else np.subtract(logits, shift, out=out)
    return power(shifted, out=out if shift is None else shifted)


def masked_softmax(logits: np.ndarray, allowed: np.ndarray | None, axis: int = -1,
                   sinks: np.ndarray | None = None, empty: str = "zero", in_place: bool = False,
                   sink_kept: bool = False) -> np.ndarray:
    """Softmax over the keys (the last axis) of ``logits`` (..., q_len, k_len), computed stably.

    ``allowed`` (broadcastable to ``logits``, True = may attend) marks the keys a query may see;
    masked logits are expected to be −∞ already. A row with no allowed key gets weights 0, as
    PyTorch's SDPA gives (``empty`` "zero"), or NaN (``empty`` "nan", as nn.MultiheadAttention);
    ``empty`` "uniform" is the slip of masking with a large finite number (Hugging Face's
    finfo.min), which leaves such a row 1/k_len on every key.
    ``in_place`` writes the weights over ``logits`` (an array of this run's own).
    ``sinks`` (broadcastable to (..., 1, 1): one logit per head, gpt-oss) join each row's
    denominator and their weight is dropped, so a row sums to less than 1; ``sink_kept`` is the
    slip of slicing softmax([keys | sink]) as [..., 1:]: key 0's weight dropped, the sink's kept last.
    ``axis=-2`` is the slip of normalising over queries.
    """
    if axis != -1:
        swapped = None if allowed is None else np.broadcast_to(allowed, logits.shape).swapaxes(-1, -2)
        return masked_softmax(logits.swapaxes(-1, -2), swapped, sinks=sinks, empty=empty).swapaxes(-1, -2)
    shift = row_shift(logits, allowed is not None)
    if sinks is not None:
        shift = np.maximum(shift, sinks)
    weights = exponentials(logits, shift, out=logits if in_place else None)
    totals = np.add.reduce(weights, axis=-1, keepdims=True)
    sink_weights = None if sinks is None else np.exp(sinks - shift)
    if sink_weights is not None:
        totals += sink_weights
    if allowed is None and sinks is None:
        return np.divide(weights, totals, out=weights)  # every row has a positive total
    np.divide(weights, totals, out=weights, where=totals > 0)
    if empty != "zero":
        np.copyto(weights, np.nan if empty == "nan" else 1.0 / weights.shape[-1], where=totals == 0)
    if sink_kept and sink_weights is not None:
        sink_share = np.divide(sink_weights, totals, out=np.zeros_like(totals), where=totals > 0)
        weights = np.concatenate([weights[..., 1:], np.broadcast_to(sink_share, totals.shape)], axis=-1)
    return weights


def weighted_values(weights: np.ndarray, values: np.ndarray, *, totals_appended: bool = False,
                    transposed: bool = False, tiled: bool = False) -> np.ndarray:
    """softmax·V per head: (..., heads, q_len, k_len)·(..., kv_heads, k_len, head_dim_v)
    -> (..., heads, q_len, head_dim_v).

    With ``totals_appended``, ``values`` ends in a column of ones and ``weights`` are not yet
    normalised: the last column of the product is each row's total, and the rest is divided by it
    (0 for a row with no weight). ``transposed`` is the slip of softmaxᵀ·V, ``tiled`` that of
    tiled key/value heads (see grouped_product). Each row is a convex
    combination of V's rows, so it lies within their range: when rounding pushes a sum of values
    near ±1.8e308 to ±inf, the range's bound is the right answer.
    """
    if transposed:
        if weights.shape[-1] != weights.shape[-2]:
            raise ProblemError("softmaxᵀ·V does not fit when q_len != k_len")
        weights = weights.swapaxes(-1, -2)
    per_head = grouped_product(weights, values, tiled)
    if totals_appended:
        totals, values = per_head[..., -1:], values[..., :-1]
        if math.isfinite(np.add.reduce(per_head, axis=None)):
            # a NaN total (an overflow upstream) stays NaN, for the caller to find
            per_head = np.divide(per_head[..., :-1], totals, out=np.zeros_like(per_head[..., :-1]), where=totals != 0)
        else:
            # values near ±1.8e308: a sum of unnormalised weights × values may overflow where the
            # weighted mean does not, so normalise first, as the full path does
            weights = np.divide(weights, totals, out=np.zeros_like(weights), where=totals != 0)
            per_head = grouped_product(weights, values)
    if math.isfinite(np.add.reduce(per_head, axis=None)):
        return per_head
    if not np.isfinite(per_head).all() and np.isfinite(values).all():
        values = per_query_head(values, per_head)
        low, high = values.min(axis=-2, keepdims=True), values.max(axis=-2, keepdims=True)
        per_head = np.where(np.isfinite(per_head), per_head, np.clip(per_head, low, high))
    return per_head


def output_projection(concat: np.ndarray, problem: Problem) -> np.ndarray:
    """concat·W_O + b_O (batch, q_len, d_out), or concat itself without W_O."""
    return concat if problem.w_out is None else project(concat, problem.w_out, problem.b_out)


def head_mean(weights: np.ndarray) -> np.ndarray:
    """The heads' weights averaged: (batch, heads, q_len, k_len) -> (batch, q_len, k_len), summed
    over the heads and divided by their count, as PyTorch's ``mean(dim=1)``."""
    return np.mean(weights, axis=1)
