"""The arithmetic behind one query's row, with the real numbers, as lines of text.

Every number shown is taken from the Trace (or is one product or exponential of its
numbers), so the explanation and the tables never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from attncli.errors import ProblemError
from attncli.keys import format_number
from attncli.problem import Problem
from attncli.trace import Trace

# Past this many terms a sum shows its first and last few around "…".
MAX_TERMS = 8
EDGE_TERMS = 3


@dataclass(frozen=True)
class Section:
    """A heading and its lines."""

    heading: str
    lines: tuple[str, ...]


def _full(trace: Trace, name: str, problem: Problem) -> np.ndarray:
    """A step's array with its batch and heads axes put back (size 1 where the Trace dropped them)."""
    step = trace.steps[name]
    array = step.array
    if "batch" not in step.axes:
        array = array[None]
    if name in ("q", "k", "v", "scores", "logits", "softmax") and "heads" not in step.axes:
        array = array[:, None]
    return array


def explain_query(
    problem: Problem, trace: Trace, query: int, key: int | None = None, head: int = 0, batch: int = 0,
    precision: int = 4,
) -> list[Section]:
    """The sections for query ``query`` of batch item ``batch`` in head ``head``: q and k vectors,
    each dot product term by term, the scale, the mask, the softmax (exponentials, their sum, the
    weights) and the output row as the weighted sum of V's rows. With ``key``, the dot product of
    that key alone is spelled out (the others are given as results).

    Raises ProblemError for an index out of range.
    """
    q = _full(trace, "q", problem)
    k = _full(trace, "k", problem)
    v = _full(trace, "v", problem)
    scores = _full(trace, "scores", problem)
    weights = _full(trace, "softmax", problem)
    n_batch, n_heads, q_len, _ = q.shape
    k_len = k.shape[2]
    _check_index("--batch", batch, n_batch, "batch items")
    _check_index("--head", head, n_heads, "heads")
    _check_index("--query", query, q_len, "queries")
    if key is not None:
        _check_index("--key", key, k_len, "keys")

    def number(value: float) -> str:
        return _number(value, precision)

    def factor_text(value: float) -> str:
        # a negative factor in brackets: 2×(-3), not 2×-3
        return f"({number(value)})" if value < 0 else number(value)

    def vector(values: np.ndarray) -> str:
        return "[" + _join([number(value) for value in values], ", ") + "]"

    q_row = q[batch, head, query]
    keys = [key] if key is not None else list(range(k_len))
    where = ", ".join(part for part in (f"batch {batch}" if problem.batched else "",
                                        f"head {head}" if problem.heads > 1 else "") if part)
    sections = [Section(
        f"Query {query}" + (f" ({where})" if where else "") + ": its query vector and the key vectors",
        (f"q[{query}] = {vector(q_row)}",)
        + tuple("…" if j is None else f"k[{j}] = {vector(k[batch, head, j])}" for j in _elide(keys)),
    )]

    dot_lines = []
    for j in _elide(keys):
        if j is None:
            dot_lines.append("…")
            continue
        terms = [f"{factor_text(a)}×{factor_text(b)}" for a, b in zip(q_row, k[batch, head, j], strict=True)]
        dot_lines.append(f"q[{query}]·k[{j}] = {_join(terms, ' + ')} = {number(scores[batch, head, query, j])}")
    sections.append(Section("Scores: the dot product of the query with each key", tuple(dot_lines)))

    factor = problem.scale_factor
    allowed = _allowed_row(problem, batch, head, query, k_len)
    logit_row = scores[batch, head, query] * 1.0
    if "logits" in trace.steps:
        logit_row = _full(trace, "logits", problem)[batch, head, query]
        rule = "1/√head_dim = 1/√" + str(q.shape[3]) if problem.scale == "sqrt" else "the given scale"
        lines = [f"scale = {rule} = {number(factor)}"] if factor != 1.0 else ["no scaling"]
        masked = [j for j in range(k_len) if not allowed[j]]
        if masked:
            lines.append(f"masked keys (-∞, weight 0): {_join([str(j) for j in masked], ', ')}")
        scaling = f" / √{q.shape[3]}" if problem.scale == "sqrt" else f" × {number(factor)}" if factor != 1.0 else ""
        lines += [
            "…" if j is None else
            (f"logit[{j}] = {number(scores[batch, head, query, j])}{scaling} = {number(logit_row[j])}" if scaling
             else f"logit[{j}] = {number(logit_row[j])}")
            if allowed[j] else f"logit[{j}] = -∞ (masked)"
            for j in _elide(list(range(k_len)))
        ]
        sections.append(Section("Scale and mask", tuple(lines)))

    visible = [j for j in range(k_len) if allowed[j]]
    if not visible:
        sections.append(Section("Softmax", ("every key is masked: every weight is 0 and this output row is 0",)))
    else:
        top = max(logit_row[j] for j in visible)
        exps = {j: math.exp(logit_row[j] - top) for j in visible}
        total = sum(exps[j] for j in visible)
        lines = [f"subtract the largest logit, {number(top)}, so no exponential overflows"]
        lines += ["…" if j is None else f"e^({number(logit_row[j])} - {number(top)}) = {number(exps[j])}"
                  for j in _elide(visible)]
        lines.append(f"sum = {_join([number(exps[j]) for j in visible], ' + ')} = {number(total)}")
        lines += ["…" if j is None else
                  f"weight[{j}] = {number(exps[j])} / {number(total)} = {number(weights[batch, head, query, j])}"
                  for j in _elide(visible)]
        sections.append(Section("Softmax over the keys", tuple(lines)))

        row = weights[batch, head, query] @ v[batch, head]
        terms = [f"{number(weights[batch, head, query, j])}×{vector(v[batch, head, j])}" for j in visible]
        sections.append(Section("Output: the weighted sum of the value rows", (
            f"out[{query}] = {_join(terms, ' + ')}",
            f"       = {vector(row)}",
        ) + _projection_note(problem)))
    return sections


def _projection_note(problem: Problem) -> tuple[str, ...]:
    steps = []
    if problem.heads > 1:
        steps.append("the heads' rows are put side by side (concat)")
    if problem.w_out is not None:
        steps.append("multiplied by W_O" + (" plus b_O" if problem.b_out is not None else "") + " (output)")
    return ("then " + " and ".join(steps),) if steps else ()


def _allowed_row(problem: Problem, batch: int, head: int, query: int, k_len: int) -> np.ndarray:
    if problem.mask is None:
        return np.ones(k_len, dtype=bool)
    mask = problem.mask
    return mask[min(batch, mask.shape[0] - 1), min(head, mask.shape[1] - 1), query]


def _check_index(option: str, index: int, size: int, what: str) -> None:
    if not 0 <= index < size:
        there = f"there is 1 {what.rstrip('s')} (0)" if size == 1 else f"there are {size} {what} (0 to {size - 1})"
        raise ProblemError(f"{option} {index} is out of range: {there}")


def _elide(items: list) -> list:
    """The items, or their first and last few around None (shown as …) when there are many."""
    if len(items) <= MAX_TERMS:
        return items
    return [*items[:EDGE_TERMS], None, *items[-EDGE_TERMS:]]


def _join(texts: list[str], separator: str) -> str:
    return separator.join("…" if text is None else text for text in _elide(texts))


def _number(value: float, precision: int) -> str:
    whole = math.isfinite(value) and value == int(value) and abs(value) < 1e9
    return format_number(value, precision, integers=whole)
