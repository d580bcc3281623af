"""The arithmetic behind one query's row, as numbers: what the view spells out line by line.

Every number is read from the Trace or computed by the same stage functions the pipeline uses
(the exponentials and their sum), so the explanation and the tables never disagree.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from attncli.arithmetic import exponentials, row_shift
from attncli.errors import ProblemError, option
from attncli.problem import Problem
from attncli.stages import STEP_AXES, last_in_slot
from attncli.trace import Trace


class Explanation(NamedTuple):
    """One query's row of one head and batch item.

    ``batch``/``head`` are None when the problem has no batch axis / a single head. Vectors:
    ``query_vector`` (head_dim,), ``key_vectors`` (k_len, head_dim), ``values`` (k_len, head_dim_v).
    Rows over the keys (k_len,): ``scores``, ``logits`` (−∞ where masked; None when the problem
    has no logits step), ``allowed``, ``exponentials`` (e^(logit − shift), 0 where masked),
    ``weights``. ``keys`` are the keys whose dot products are spelled out (all, or the one asked).
    ``shift`` is the largest logit a query may see (None when every key is masked), ``total``
    the sum of the exponentials, ``output`` (head_dim_v,) this head's output row. ``scale_rule``
    is "sqrt", "none" or "number", with its ``scale_factor``; ``heads`` and whether there is an
    output projection (``w_out``, ``b_out``) say what follows the row.
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

    @property
    def visible(self) -> list[int]:
        """The keys this query may see."""
        return [int(j) for j in np.flatnonzero(self.allowed)]


def _full(trace: Trace, name: str, array: np.ndarray | None = None) -> np.ndarray:
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
    that key's dot product alone is to be spelled out.

    Raises ProblemError (naming the option) for an index out of range.
    """
    # the arrays the scores and weights were made from: the last stage in each slot
    q, k, v = (_full(trace, last_in_slot(slot, trace.steps)) for slot in ("q", "k", "v"))
    n_batch, n_heads, q_len, head_dim = q.shape
    k_len = k.shape[2]
    _check_index("batch", batch, n_batch, "batch item", "batch items")
    _check_index("head", head, n_heads, "head", "heads")
    _check_index("query", query, q_len, "query", "queries")
    if key is not None:
        _check_index("key", key, k_len, "key", "keys")

    scores = _full(trace, "scores")[batch, head, query]
    logits_step = last_in_slot("logits", trace.steps)
    logits = None if logits_step is None else _full(trace, logits_step)[batch, head, query]
    masked = trace.masked(trace.steps["scores"])
    allowed = np.ones(k_len, dtype=bool) if masked is None else ~_full(trace, "scores", masked)[batch, head, query]
    row = scores if logits is None else logits
    shift = row_shift(row[None], any_masked=True)
    exps = exponentials(row, shift[0])
    # this head's output row: its block of the heads side by side (concat, or the output without W_O)
    merged = trace.steps["concat" if "concat" in trace.steps else "output"].array
    merged = merged if problem.batched else merged[None]
    dim_v = v.shape[3]
    return Explanation(
        query=query,
        batch=batch if problem.batched else None,
        head=head if problem.heads > 1 else None,
        keys=(key,) if key is not None else tuple(range(k_len)),
        query_vector=q[batch, head, query],
        key_vectors=k[batch, head // (n_heads // k.shape[1])],
        scores=scores,
        logits=logits,
        allowed=allowed,
        scale_rule=problem.scale if isinstance(problem.scale, str) else "number",
        scale_factor=problem.scale_factor,
        head_dim=head_dim,
        shift=float(shift[0, 0]) if allowed.any() else None,
        exponentials=exps,
        total=float(np.add.reduce(exps)),
        weights=_full(trace, "softmax")[batch, head, query],
        values=v[batch, head // (n_heads // v.shape[1])],
        output=merged[batch, query, head * dim_v:(head + 1) * dim_v],
        heads=problem.heads,
        w_out=problem.w_out is not None,
        b_out=problem.b_out is not None,
    )


def _check_index(field: str, index: int, size: int, one: str, many: str) -> None:
    if not 0 <= index < size:
        there = f"there is 1 {one} (0)" if size == 1 else f"there are {size} {many} (0 to {size - 1})"
        raise ProblemError(f"{option(field)} {index} is out of range: {there}")
