"""Numbers as text: how a value is written, and one query's arithmetic spelled out line by line.

No Rich here: lines of text that the console views print.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from attncli.explain import Explanation

# Past this many terms a sum shows its first and last few around "…".
MAX_TERMS = 8
EDGE_TERMS = 3


def format_number(value: float, precision: int, integers: bool = False) -> str:
    """``value`` with ``precision`` decimals (as a whole number when ``integers``); a masked −∞
    as ``−∞`` (U+2212, as in the formulas); in scientific notation when ``precision`` decimals
    (2 or more) would show a nonzero value as 0, or for magnitudes of 1e9 and beyond."""
    if math.isinf(value) and value < 0:
        return "−∞"
    if integers:
        return str(int(value))
    magnitude = abs(value)
    hidden = value != 0 and precision >= 2 and magnitude < 0.5 * 10.0**-precision
    if hidden or magnitude >= 1e9:
        return f"{value:.{max(precision - 1, 1)}e}"
    return f"{value:.{precision}f}"


class Section(NamedTuple):
    """A heading and its lines."""

    heading: str
    lines: tuple[str, ...]


def explanation_sections(explained: Explanation, precision: int) -> list[Section]:
    """The explanation as sections of text: the query and key vectors, each dot product term by
    term, the scale and mask, the softmax (exponentials, their sum, the weights) and the output
    row as the weighted sum of V's rows, every number written with ``precision`` decimals."""

    def number(value: float) -> str:
        whole = math.isfinite(value) and value == int(value) and abs(value) < 1e9
        return format_number(value, precision, integers=whole)

    def factor_text(value: float) -> str:
        # a negative factor in brackets: 2×(-3), not 2×-3
        return f"({number(value)})" if value < 0 else number(value)

    def vector(values: np.ndarray) -> str:
        return "[" + _join([number(value) for value in values], ", ") + "]"

    query, keys, q_row = explained.query, list(explained.keys), explained.query_vector
    where = ", ".join(part for part in (f"batch {explained.batch}" if explained.batch is not None else "",
                                        f"head {explained.head}" if explained.head is not None else "") if part)
    sections = [Section(
        f"Query {query}" + (f" ({where})" if where else "") + ": its query vector and the key vectors",
        (f"q[{query}] = {vector(q_row)}",)
        + tuple("…" if j is None else f"k[{j}] = {vector(explained.key_vectors[j])}" for j in _elide(keys)),
    )]
    dot_lines = []
    for j in _elide(keys):
        if j is None:
            dot_lines.append("…")
            continue
        terms = [f"{factor_text(a)}×{factor_text(b)}" for a, b in zip(q_row, explained.key_vectors[j], strict=True)]
        dot_lines.append(f"q[{query}]·k[{j}] = {_join(terms, ' + ')} = {number(explained.scores[j])}")
    sections.append(Section("Scores: the dot product of the query with each key", tuple(dot_lines)))

    logit_row = explained.scores if explained.logits is None else explained.logits
    if explained.logits is not None:
        sections.append(Section("Scale and mask", tuple(_scale_lines(explained, number))))

    visible = explained.visible
    if not visible:
        sections.append(Section("Softmax", ("every key is masked: every weight is 0 and this output row is 0",)))
        return sections
    exps, total, weights, top = explained.exponentials, explained.total, explained.weights, explained.shift
    lines = [f"subtract the largest logit, {number(top)}, so no exponential overflows"]
    lines += ["…" if j is None else f"e^({number(logit_row[j])} - {number(top)}) = {number(exps[j])}"
              for j in _elide(visible)]
    lines.append(f"sum = {_join([number(exps[j]) for j in visible], ' + ')} = {number(total)}")
    lines += ["…" if j is None else f"weight[{j}] = {number(exps[j])} / {number(total)} = {number(weights[j])}"
              for j in _elide(visible)]
    sections.append(Section("Softmax over the keys", tuple(lines)))

    terms = [f"{number(weights[j])}×{vector(explained.values[j])}" for j in visible]
    sections.append(Section("Output: the weighted sum of the value rows", (
        f"out[{query}] = {_join(terms, ' + ')}",
        f"       = {vector(explained.output)}",
    ) + _projection_note(explained)))
    return sections


def _scale_lines(explained: Explanation, number) -> list[str]:
    factor, root = explained.scale_factor, explained.head_dim
    rule = f"1/√head_dim = 1/√{root}" if explained.scale_rule == "sqrt" else "the given scale"
    lines = [f"scale = {rule} = {number(factor)}"] if factor != 1.0 else ["no scaling"]
    masked = [j for j in range(len(explained.scores)) if not explained.allowed[j]]
    if masked:
        lines.append(f"masked keys (−∞, weight 0): {_join([str(j) for j in masked], ', ')}")
    scaling = f" / √{root}" if explained.scale_rule == "sqrt" else f" × {number(factor)}" if factor != 1.0 else ""
    for j in _elide(list(range(len(explained.scores)))):
        if j is None:
            lines.append("…")
        elif not explained.allowed[j]:
            lines.append(f"logit[{j}] = −∞ (masked)")
        elif scaling:
            lines.append(f"logit[{j}] = {number(explained.scores[j])}{scaling} = {number(explained.logits[j])}")
        else:
            lines.append(f"logit[{j}] = {number(explained.logits[j])}")
    return lines


def _projection_note(explained: Explanation) -> tuple[str, ...]:
    steps = []
    if explained.heads > 1:
        steps.append("the heads' rows are put side by side (concat)")
    if explained.w_out:
        steps.append("multiplied by W_O" + (" plus b_O" if explained.b_out else "") + " (output)")
    return ("then " + " and ".join(steps),) if steps else ()


def _elide(items: list) -> list:
    """The items, or their first and last few around None (shown as …) when there are many."""
    if len(items) <= MAX_TERMS:
        return items
    return [*items[:EDGE_TERMS], None, *items[-EDGE_TERMS:]]


def _join(texts: list[str], separator: str) -> str:
    return separator.join("…" if text is None else text for text in _elide(texts))
