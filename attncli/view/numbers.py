"""Numbers as text: how a value is written, and one query's arithmetic spelled out line by line.

No Rich here: lines of text that the console views print.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from attncli.numbers import format_number
from attncli.view.labels import shown_token

if TYPE_CHECKING:
    from attncli.explain import Explanation

# A token in the explanation is cut to this many cells.
TOKEN_WIDTH = 24
# Past this many terms a sum shows its first and last few around "…".
MAX_TERMS = 8
EDGE_TERMS = 3


class Section(NamedTuple):
    """A heading and its lines."""

    heading: str
    lines: tuple[str, ...]


def explanation_sections(explained: Explanation, precision: int) -> list[Section]:
    """The explanation as sections of text: the QK-norm and RoPE of the query (and of the key
    asked for), the query and key vectors, each dot product term by term, the scale, the soft-cap,
    the ALiBi term and bias, the mask, the softmax (exponentials, the sink, their sum, the
    weights) and the output row as the weighted sum of V's rows, every number written with
    ``precision`` decimals."""
    write = _Writer(precision)
    query, keys, q_row = explained.query, list(explained.keys), explained.query_vector
    where = ", ".join(part for part in (
        f"batch {explained.batch}" if explained.batch is not None else "",
        f"head {explained.head}" if explained.head is not None else "",
        f"key/value head {explained.kv_head}" if explained.kv_head is not None else "") if part)
    lead = f"Query {query}{_token(explained.query_token)}" + (f" ({where})" if where else "")

    sections = _norm_sections(explained, write) + _rotation_sections(explained, write)
    vectors = (f"q[{query}] = {write.vector(q_row)}",) + tuple(
        "…" if j is None else f"k[{j}]{_key_token(explained, j)} = {write.vector(explained.key_vectors[j])}"
        for j in _elide(keys))
    if sections:
        changes = " and ".join(name for name, done in (("QK-norm", explained.query_norm),
                                                        ("RoPE", explained.query_rotation)) if done)
        sections = [sections[0]._replace(heading=f"{lead}: {sections[0].heading}"), *sections[1:]]
        sections.append(Section(f"The query vector and the key vectors, after {changes}", vectors))
    else:
        sections.append(Section(f"{lead}: its query vector and the key vectors", vectors))
    dot_lines = []
    for j in _elide(keys):
        if j is None:
            dot_lines.append("…")
            continue
        terms = _join(list(zip(q_row, explained.key_vectors[j], strict=True)), " + ",
                      lambda pair: f"{write.factor(pair[0])}×{write.factor(pair[1])}")
        dot_lines.append(f"q[{query}]·k[{j}] = {terms} = {write.number(explained.scores[j])}")
    sections.append(Section("Scores: the dot product of the query with each key", tuple(dot_lines)))
    sections += _logit_sections(explained, write)
    return sections + _softmax_sections(explained, write)


def key_section(explained: Explanation, key: int, precision: int) -> Section:
    """Key ``key``'s part of the row, for one cell (the page): its exponential over the row's sum,
    its weight, and its part of the output row, weight × its value row."""
    write = _Writer(precision)
    weight, label = float(explained.weights[key]), f"{key}{_key_token(explained, key)}"
    heading = f"Key {label}: its weight and its part of out[{explained.query}]"
    if not explained.allowed[key] or explained.shift is None:
        state = "NaN" if math.isnan(weight) else "0"
        return Section(heading, (f"key {label} is masked (its logit is −∞): weight[{key}] = {state}, and nothing "
                                 f"of v[{key}] reaches out[{explained.query}]",))
    value, exponential = explained.values[key], float(explained.exponentials[key])
    return Section(heading, (
        f"e^({write.number(explained.softmax_input[key])} - {write.number(explained.shift)}) = "
        f"{write.number(exponential)}",
        f"weight[{key}] = {write.number(exponential)} / {write.number(explained.total)} = {write.number(weight)}",
        f"weight[{key}]×v[{key}] = {write.number(weight)}×{write.vector(value)} = {write.vector(weight * value)}",
        f"out[{explained.query}] = {write.vector(explained.output)}: the sum of every key's part",
    ))


class _Writer:
    """How the explanation writes numbers at one precision: whole numbers without decimals."""

    def __init__(self, precision: int):
        self.precision = precision

    def number(self, value: float) -> str:
        whole = math.isfinite(value) and value == int(value) and abs(value) < 1e9
        return format_number(value, self.precision, integers=whole)

    def factor(self, value: float) -> str:
        # a negative factor in brackets: 2×(-3), not 2×-3
        return f"({self.number(value)})" if value < 0 else self.number(value)

    def vector(self, values: np.ndarray) -> str:
        return "[" + _join(list(values), ", ", self.number) + "]"


def _query_and_key(explained: Explanation, of_query, of_key) -> list[tuple[str, str, object]]:
    """(label, words, part) for the query's part and the key's (the key asked for), where present."""
    key = explained.keys[0]
    return [(label, what, part) for label, what, part in ((f"q[{explained.query}]", "the query vector", of_query),
                                                          (f"k[{key}]", f"key {key}", of_key)) if part is not None]


def _norm_sections(explained: Explanation, write: _Writer) -> list[Section]:
    sections = []
    for label, what, norm in _query_and_key(explained, explained.query_norm, explained.key_norm):
        count = len(norm.squared)
        over = f"its {count} values" if norm.over == "head" else f"its {count} values in every head"
        squares = _join(list(norm.squared), " + ", lambda value: f"{write.factor(value)}²")
        sections.append(Section(f"QK-norm of {what} (RMSNorm over {over})", (
            f"projection {label} = {write.vector(norm.before)}",
            f"mean of squares = ({squares}) / {count} = {write.number(norm.mean_square)}",
            f"1/√(mean of squares + eps) = 1/√({write.number(norm.mean_square)} + {write.number(norm.eps)}) "
            f"= {write.number(norm.factor)}",
            f"weight = {write.vector(norm.weight)}",
            f"normed {label} = projection × {write.number(norm.factor)} × weight = {write.vector(norm.after)}",
        )))
    return sections


def _rotation_sections(explained: Explanation, write: _Writer) -> list[Section]:
    sections = []
    for label, what, turn in _query_and_key(explained, explained.query_rotation, explained.key_rotation):
        pairing = "neox: dim i with dim i + " + str(len(turn.pairs)) if turn.style == "neox" else (
            "gptj: dims 2i and 2i + 1")
        lines = []
        for n in _elide(list(range(len(turn.pairs)))):
            if n is None:
                lines.append("…")
                continue
            first, second = (int(dim) for dim in turn.pairs[n])
            a, b, cos, sin = turn.before[first], turn.before[second], turn.cos[n], turn.sin[n]
            lines.append(f"pair {n} (dims {first}, {second}): angle = {turn.position} × "
                         f"{write.number(turn.inv_freq[n])} = {write.number(turn.angles[n])}, "
                         f"cos = {write.number(cos)}, sin = {write.number(sin)}")
            lines.append(f"  (a·cos - b·sin, b·cos + a·sin) = ({write.factor(a)}×{write.factor(cos)} - "
                         f"{write.factor(b)}×{write.factor(sin)}, {write.factor(b)}×{write.factor(cos)} + "
                         f"{write.factor(a)}×{write.factor(sin)}) = "
                         f"({write.number(turn.after[first])}, {write.number(turn.after[second])})")
        head_dim = len(turn.before)
        passing = {0: "", 1: f"dim {turn.rotary_dim} passes", 2: f"dims {turn.rotary_dim} and {head_dim - 1} pass"}.get(
            head_dim - turn.rotary_dim, f"dims {turn.rotary_dim} to {head_dim - 1} pass")
        if passing:
            lines.append(f"{passing} through (rotary_dim {turn.rotary_dim})")
        lines.append(f"rotated {label} = {write.vector(turn.after)}")
        sections.append(Section(f"RoPE of {what}: each pair turned by its position {turn.position} × its "
                                f"frequency ({pairing})", tuple(lines)))
    return sections


def _logit_sections(explained: Explanation, write: _Writer) -> list[Section]:
    """The scale (logits), the soft-cap (capped) and the ALiBi term and bias (biased), each with
    the mask when it is the step that masks."""
    sections = []
    keys = _elide(list(range(len(explained.scores))))
    if explained.logits is not None:
        here = explained.masked_at == "logits"
        factor, root = explained.scale_factor, explained.head_dim
        rule = f"1/√head_dim = 1/√{root}" if explained.scale_rule == "sqrt" else "the given scale"
        lines = [f"scale = {rule} = {write.number(factor)}"] if factor != 1.0 else ["no scaling"]
        lines += _mask_lines(explained) if here else []
        scaling = f" / √{root}" if explained.scale_rule == "sqrt" else (
            f" × {write.number(factor)}" if factor != 1.0 else "")
        for j in keys:
            if j is None:
                lines.append("…")
            elif here and not explained.allowed[j]:
                lines.append(f"logit[{j}] = −∞ (masked)")
            elif scaling:
                lines.append(f"logit[{j}] = {write.number(explained.scores[j])}{scaling} = "
                             f"{write.number(explained.logits[j])}")
            else:
                lines.append(f"logit[{j}] = {write.number(explained.logits[j])}")
        sections.append(Section("Scale and mask" if here else "Scale", tuple(lines)))
    before = explained.scores if explained.logits is None else explained.logits
    if explained.capped is not None:
        here = explained.masked_at == "capped"
        cap = _constant(explained.softcap)
        lines = [f"capped = {cap}·tanh(x / {cap}): each logit squeezed into (-{cap}, {cap})"]
        lines += _mask_lines(explained) if here else []
        for j in keys:
            if j is None:
                lines.append("…")
            elif here and not explained.allowed[j]:
                lines.append(f"capped[{j}] = −∞ (masked)")
            else:
                lines.append(f"capped[{j}] = {cap}·tanh({write.number(before[j])} / {cap}) = "
                             f"{write.number(explained.capped[j])}")
        sections.append(Section("Soft-cap and mask" if here else "Soft-cap", tuple(lines)))
        before = explained.capped
    if explained.biased is not None:
        sections.append(_biased_section(explained, write, before, keys))
    return sections


def _biased_section(explained: Explanation, write: _Writer, before: np.ndarray, keys: list) -> Section:
    slope, position = explained.slope, explained.query_position
    lines = []
    if slope is not None:
        head = "" if explained.head is None else f"head {explained.head}'s "
        lines.append(f"ALiBi: -slope×(query position - key position), {head}slope {write.number(slope)}, "
                     f"query {explained.query} at position {position}")
    lines += _mask_lines(explained)
    for j in keys:
        if j is None:
            lines.append("…")
            continue
        if not explained.allowed[j]:
            lines.append(f"biased[{j}] = −∞ (masked)")
            continue
        formula, values = [write.number(before[j])], [write.number(before[j])]
        if slope is not None:
            formula.append(f"- {write.number(slope)}×({position} - {int(explained.key_positions[j])})")
            values.append(f"+ {write.factor(explained.alibi[j])}")
        if explained.bias is not None:
            formula.append(f"+ {write.factor(explained.bias[j])}")
            values.append(formula[-1])
        text = " ".join(formula) + (" = " + " ".join(values) if slope is not None else "")
        lines.append(f"biased[{j}] = {text} = {write.number(explained.biased[j])}")
    added = " and ".join(name for name, part in (("ALiBi", slope), ("bias", explained.bias)) if part is not None)
    masking = ", and mask" if not explained.allowed.all() else ""
    return Section(f"{added[0].upper()}{added[1:]} added{masking}", tuple(lines))


def _constant(value: float) -> str:
    """A number the document gave (the cap), as short as it was given: 50, 1.5."""
    return str(int(value)) if value.is_integer() else repr(value)


def _mask_lines(explained: Explanation) -> list[str]:
    lines = []
    if explained.window is not None:
        position, size = explained.query_position, explained.window
        lines.append(f"window {size}: query {explained.query} at position {position} sees keys at positions "
                     f"{position - size + 1} to {position}")
    masked = [j for j in range(len(explained.scores)) if not explained.allowed[j]]
    if masked:
        lines.append(f"masked keys (−∞, weight 0): {_join([f'{j}{_key_token(explained, j)}' for j in masked], ', ')}")
    return lines


def _softmax_sections(explained: Explanation, write: _Writer) -> list[Section]:
    visible, sink = explained.visible, explained.sink
    if not visible:
        if np.isnan(explained.weights).all():
            text = ('every key is masked and masked_rows is "nan": every weight is NaN and this output row '
                    "is NaN")
        elif sink is not None and math.isfinite(sink):
            text = ("every key is masked: only the sink is left, and its weight is dropped, so every weight is 0 "
                    "and this output row is 0")
        else:
            text = "every key is masked: every weight is 0 and this output row is 0"
        return [Section("Softmax", (text,))]
    row, exps, total, weights, top = (explained.softmax_input, explained.exponentials, explained.total,
                                      explained.weights, explained.shift)
    by_sink = sink is not None and top == sink and top > max(row[j] for j in visible)
    lines = [f"subtract the largest {'of the logits and the sink' if by_sink else 'logit'}, {write.number(top)}"
             f"{' (the sink)' if by_sink else ''}, so no exponential overflows"]
    lines += ["…" if j is None else f"e^({write.number(row[j])} - {write.number(top)}) = {write.number(exps[j])}"
              for j in _elide(visible)]
    terms = _join(visible, " + ", lambda j: write.number(exps[j]))
    if sink is not None:
        head = "" if explained.head is None else f"head {explained.head}'s "
        lines.append(f"the sink: e^({write.number(sink)} - {write.number(top)}) = {write.number(explained.sink_term)} "
                     f"({head}sink logit, not scaled), in the denominator only")
        terms += f" + {write.number(explained.sink_term)} (sink)"
    lines.append(f"sum = {terms} = {write.number(total)}")
    lines += ["…" if j is None else
              f"weight[{j}]{_key_token(explained, j)} = {write.number(exps[j])} / {write.number(total)} = "
              f"{write.number(weights[j])}"
              for j in _elide(visible)]
    if sink is not None:
        lines.append(f"the weights sum to {write.number(float(np.add.reduce(weights[visible])))}, less than 1: "
                     f"the sink's weight, {write.number(explained.sink_term)} / {write.number(total)} = "
                     f"{write.number(explained.sink_term / total)}, is dropped")
    sections = [Section("Softmax over the keys" + (" and the sink" if sink is not None else ""), tuple(lines))]
    terms = _join(visible, " + ", lambda j: f"{write.number(weights[j])}×{write.vector(explained.values[j])}")
    sections.append(Section("Output: the weighted sum of the value rows", (
        f"out[{explained.query}] = {terms}",
        f"       = {write.vector(explained.output)}",
    ) + _projection_note(explained)))
    return sections


def _projection_note(explained: Explanation) -> tuple[str, ...]:
    steps = []
    if explained.heads > 1:
        steps.append("the heads' rows are put side by side (concat)")
    if explained.w_out:
        steps.append("multiplied by W_O" + (" plus b_O" if explained.b_out else "") + " (output)")
    return ("then " + " and ".join(steps),) if steps else ()


def _token(token: str | None) -> str:
    """A token after its index, in quotes (so its spaces show): `` “sat”``; nothing without tokens."""
    return "" if token is None else f" “{shown_token(token, TOKEN_WIDTH)}”"


def _key_token(explained: Explanation, key: int) -> str:
    return "" if explained.key_tokens is None else _token(explained.key_tokens[key])


def _elide(items: list) -> list:
    """The items, or their first and last few around None (shown as …) when there are many."""
    if len(items) <= MAX_TERMS:
        return items
    return [*items[:EDGE_TERMS], None, *items[-EDGE_TERMS:]]


def _join(items: list, separator: str, write: Callable[[Any], str] = str) -> str:
    """The items written (by ``write``, after eliding: a long row is never written whole) and joined."""
    return separator.join("…" if item is None else write(item) for item in _elide(items))
