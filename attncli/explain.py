"""The arithmetic behind one query's row, as numbers: what the view spells out line by line.

Every number is read from the Trace, from the Problem's own fields (positions, frequencies,
slopes, the bias, the sinks, the QK-norm's weights) or computed by the same functions the stages
use (the angles, the ALiBi term, the exponentials and their sum), so the explanation and the
tables never disagree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from attncli.arithmetic import alibi_term, exponentials, rms_factor, rotary_angles, row_shift
from attncli.errors import ProblemError, option
from attncli.formulas import masks_at
from attncli.problem import Problem
from attncli.stages import STEP_AXES, last_in_slot
from attncli.trace import Trace


class Norm(NamedTuple):
    """QK-norm (RMSNorm) of one query's or key's vector in one head: ``before`` (head_dim,), the
    projection's row; ``squared`` the values whose squares are averaged (this head's, or with
    ``over`` "all" the row's values in every head), their ``mean_square``, ``eps``, ``factor``
    = 1/√(mean_square + eps), this head's ``weight`` (head_dim,) and ``after``, the step's row."""

    over: str
    before: np.ndarray
    squared: np.ndarray
    mean_square: float
    eps: float
    factor: float
    weight: np.ndarray
    after: np.ndarray


class Rotation(NamedTuple):
    """RoPE of one query's or key's vector: its ``position``, the ``style`` ("neox" or "gptj"),
    ``pairs`` (rotary_dim / 2, 2) the dims turned together, each pair's ``inv_freq``, ``angles``
    (position × inv_freq), ``cos`` and ``sin`` (as the stage rounds them); ``before`` and
    ``after`` (head_dim,) the vector before and after (the step's row); dims from ``rotary_dim``
    on pass through."""

    position: int
    style: str
    pairs: np.ndarray
    inv_freq: np.ndarray
    angles: np.ndarray
    cos: np.ndarray
    sin: np.ndarray
    rotary_dim: int
    before: np.ndarray
    after: np.ndarray


class Explanation(NamedTuple):
    """One query's row of one head and batch item.

    ``batch``/``head`` are None when the problem has no batch axis / a single head; ``kv_head``
    is the key/value head the query head reads (None unless grouped: fewer key/value heads than
    heads). Vectors: ``query_vector`` (head_dim,), ``key_vectors`` (k_len, head_dim), ``values``
    (k_len, head_dim_v), as the scores and weights read them (after QK-norm and RoPE).
    ``query_norm``/``key_norm`` and ``query_rotation``/``key_rotation`` spell out the QK-norm and
    RoPE of the query, and of the key asked for (None without the variant, or without a key).
    Rows over the keys (k_len,): ``scores``; ``logits`` (the logits step's: scaled, −∞ where it
    masks; None without that step), ``capped`` (after the soft-cap ``softcap``; None without),
    ``biased`` (with the ALiBi term ``alibi`` = −``slope``·(``query_position`` −
    ``key_positions``) and the ``bias`` row added; None without), ``allowed``, ``exponentials``
    (e^(x − shift), 0 where masked), ``weights``. ``masked_at`` is the step that puts −∞ in
    masked cells (logits, capped or biased), ``window`` the window (or None). ``keys`` are the
    keys whose dot products are spelled out (all, or the one asked). ``shift`` is the largest
    logit a query may see, or the head's ``sink`` when larger (None when every key is masked);
    ``sink_term`` e^(sink − shift) (0 without sinks), ``total`` the exponentials' sum with the
    sink term, ``output`` (head_dim_v,) this head's output row; ``masked_rows`` what a row with
    no key gets ("zero" or "nan"). ``scale_rule`` is "sqrt", "none" or "number", with its
    ``scale_factor``; ``heads`` and whether there is an output projection (``w_out``,
    ``b_out``) say what follows the row. ``query_token`` and ``key_tokens`` (every key's) are the
    tokens of the document (None without them): labels, never computed with.
    """

    query: int
    batch: int | None
    head: int | None
    keys: tuple[int, ...]
    query_vector: np.ndarray
    key_vectors: np.ndarray
    scores: np.ndarray
    logits: np.ndarray | None
    allowed: np.ndarray
    scale_rule: str
    scale_factor: float
    head_dim: int
    shift: float | None
    exponentials: np.ndarray
    total: float
    weights: np.ndarray
    values: np.ndarray
    output: np.ndarray
    heads: int
    w_out: bool
    b_out: bool
    kv_head: int | None = None
    query_norm: Norm | None = None
    key_norm: Norm | None = None
    query_rotation: Rotation | None = None
    key_rotation: Rotation | None = None
    softcap: float | None = None
    capped: np.ndarray | None = None
    slope: float | None = None
    query_position: int = 0
    key_positions: np.ndarray | None = None
    alibi: np.ndarray | None = None
    bias: np.ndarray | None = None
    biased: np.ndarray | None = None
    masked_at: str = "logits"
    window: int | None = None
    sink: float | None = None
    sink_term: float = 0.0
    masked_rows: str = "zero"
    query_token: str | None = None
    key_tokens: tuple[str, ...] | None = None

    @property
    def visible(self) -> list[int]:
        """The keys this query may see."""
        return [int(j) for j in np.flatnonzero(self.allowed)]

    @property
    def softmax_input(self) -> np.ndarray:
        """The row the softmax reads: the last of biased, capped, logits and scores it has."""
        return next(row for row in (self.biased, self.capped, self.logits, self.scores) if row is not None)


def all_axes(trace: Trace, name: str, array: np.ndarray | None = None) -> np.ndarray:
    """A step's array (or ``array``, in the step's shape) with its batch and heads axes put back
    (size 1 where the Trace dropped them)."""
    step = trace.steps[name]
    array = step.array if array is None else array
    array = array if "batch" in step.axes else array[None]
    # the heads (or key/value heads) axis is the second of the full axes when the stage has one
    return array[:, None] if array.ndim < len(STEP_AXES[name]) else array


def explain_query(
    problem: Problem, trace: Trace, query: int, key: int | None = None, head: int = 0, batch: int = 0,
) -> Explanation:
    """The numbers behind query ``query`` of batch item ``batch`` in head ``head``; with ``key``,
    that key's dot product alone is to be spelled out (and its QK-norm and rotation).

    Raises ProblemError (naming the option) for an index out of range.
    """
    # the arrays the scores and weights were made from: the last stage in each slot
    q, k, v = (all_axes(trace, last_in_slot(slot, trace.steps)) for slot in ("q", "k", "v"))
    n_batch, n_heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    _check_index("batch", batch, n_batch, "batch item", "batch items")
    _check_index("head", head, n_heads, "head", "heads")
    _check_index("query", query, q_len, "query", "queries")
    if key is not None:
        _check_index("key", key, k_len, "key", "keys")
    kv_head = head // (n_heads // k.shape[1])

    def row(name: str) -> np.ndarray | None:
        return all_axes(trace, name)[batch, head, query] if name in trace.steps else None

    scores = row("scores")
    masked = trace.masked(trace.steps["scores"])
    allowed = np.ones(k_len, dtype=bool) if masked is None else ~all_axes(trace, "scores", masked)[batch, head, query]
    capped, biased = row("capped"), row("biased")
    softmax_input = next(found for found in (biased, capped, row("logits"), scores) if found is not None)
    # a sink of −∞ is no sink: nothing joins the denominator
    sink = None if problem.sinks is None or np.isneginf(problem.sinks[head]) else float(problem.sinks[head])
    # as the softmax stage shifts: by the row's largest logit, or the sink when that is larger
    shift = row_shift(softmax_input[None], any_masked=True)
    if sink is not None:
        shift = np.maximum(shift, np.asarray(sink, dtype=shift.dtype))
    exps = exponentials(softmax_input, shift[0])
    sink_term = 0.0 if sink is None else float(exponentials(np.asarray([sink], dtype=shift.dtype), shift[0])[0])
    total = np.add.reduce(exps) + (0.0 if sink is None else sink_term)
    # this head's output row: its block of the heads side by side (concat, or the output without W_O)
    merged = trace.steps["concat" if "concat" in trace.steps else "output"].array
    merged = merged.swapaxes(0, 1) if problem.seq_first else merged if problem.batched else merged[None]
    dim_v = v.shape[3]
    query_position = int(problem.query_positions[query])
    slope = None if problem.alibi is None else float(problem.alibi[head])
    tokens = trace.meta.tokens
    return Explanation(
        query=query,
        batch=batch if problem.batched else None,
        head=head if problem.heads > 1 else None,
        keys=(key,) if key is not None else tuple(range(k_len)),
        query_vector=q[batch, head, query],
        key_vectors=k[batch, kv_head],
        scores=scores,
        logits=row("logits"),
        allowed=allowed,
        scale_rule=problem.scale if isinstance(problem.scale, str) else "number",
        scale_factor=problem.scale_factor,
        head_dim=head_dim,
        shift=float(shift[0, 0]) if allowed.any() else None,
        exponentials=exps,
        total=float(total),
        weights=all_axes(trace, "softmax")[batch, head, query],
        values=v[batch, kv_head],
        output=merged[batch, query, head * dim_v:(head + 1) * dim_v],
        heads=problem.heads,
        w_out=problem.w_out is not None,
        b_out=problem.b_out is not None,
        kv_head=kv_head if problem.kv_heads != problem.heads else None,
        query_norm=_norm(problem, trace, "q", batch, head, query),
        key_norm=None if key is None else _norm(problem, trace, "k", batch, kv_head, key),
        query_rotation=_rotation(problem, trace, "q", batch, head, query),
        key_rotation=None if key is None else _rotation(problem, trace, "k", batch, kv_head, key),
        softcap=problem.softcap,
        capped=capped,
        slope=slope,
        query_position=query_position,
        key_positions=problem.key_positions,
        alibi=None if slope is None else alibi_term(
            np.asarray(slope), problem.query_positions[query:query + 1], problem.key_positions,
            softmax_input.dtype)[0],
        bias=None if problem.bias is None else problem.bias[
            min(batch, problem.bias.shape[0] - 1), min(head, problem.bias.shape[1] - 1), query],
        biased=biased,
        masked_at=masks_at(problem),
        window=problem.window,
        sink=sink,
        sink_term=sink_term,
        masked_rows=problem.masked_rows,
        query_token=None if tokens is None or tokens.query_labels(batch) is None else tokens.query_labels(batch)[query],
        key_tokens=None if tokens is None else tokens.key_labels(batch),
    )


def _norm(problem: Problem, trace: Trace, letter: str, batch: int, head: int, index: int) -> Norm | None:
    """The QK-norm of row ``index`` of Q's head ``head`` (``letter`` "q") or K's key/value head."""
    norm = problem.qk_norm
    if norm is None:
        return None
    projected = all_axes(trace, letter)[batch, :, index]  # (heads | kv_heads, head_dim)
    weight = norm.q_weight if letter == "q" else norm.k_weight
    squared = projected[head] if norm.over == "head" else projected.reshape(-1)
    mean_square, factor = rms_factor(squared, norm.eps)
    return Norm(
        over=norm.over,
        before=projected[head],
        squared=squared,
        mean_square=float(mean_square[0]),
        eps=norm.eps,
        factor=float(factor[0]),
        weight=weight if norm.over == "head" else weight.reshape(-1, projected.shape[1])[head],
        after=all_axes(trace, f"{letter}_normed")[batch, head, index],
    )


def _rotation(problem: Problem, trace: Trace, letter: str, batch: int, head: int, index: int) -> Rotation | None:
    """The RoPE of row ``index`` of Q's head ``head`` (``letter`` "q") or K's key/value head."""
    rope = problem.rope
    if rope is None:
        return None
    before = all_axes(trace, f"{letter}_normed" if f"{letter}_normed" in trace.steps else letter)[batch, head, index]
    position = (problem.query_positions if letter == "q" else problem.key_positions)[index]
    cos, sin = rotary_angles(np.array([position]), rope.inv_freq, before.dtype, rope.attention_factor)
    half = len(rope.inv_freq)
    pair = np.arange(half)
    pairs = np.stack([pair, pair + half] if rope.style == "neox" else [2 * pair, 2 * pair + 1], axis=1)
    return Rotation(
        position=int(position),
        style=rope.style,
        pairs=pairs,
        inv_freq=rope.inv_freq,
        angles=float(position) * rope.inv_freq,
        cos=cos[0],
        sin=sin[0],
        rotary_dim=rope.rotary_dim,
        before=before,
        after=all_axes(trace, f"{letter}_rotated")[batch, head, index],
    )


def _check_index(field: str, index: int, size: int, one: str, many: str) -> None:
    if not 0 <= index < size:
        there = f"there is 1 {one} (0)" if size == 1 else f"there are {size} {many} (0 to {size - 1})"
        raise ProblemError(f"{option(field)} {index} is out of range: {there}")
