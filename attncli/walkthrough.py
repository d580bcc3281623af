"""A walk through a user's own problem (``attncli demo FILE``): every step the stages make, each
with one line of explanation, its formula with the real sizes and its tables, and for each variant
the problem has a line with its own numbers (the mask drawn as a grid of reasons).

Words and numbers only, the view renders them. The steps, their formulas and how their shapes come
about are read from the stages (through ``shapes.shape_flow``); the numbers from the Trace, the
Problem and ``explain`` (one query's rotation and norm), so the walk and the tables never disagree.
"""

from __future__ import annotations

import math

import numpy as np

from attncli.arithmetic import alibi_term
from attncli.demo import MaskGrid, Note, Section
from attncli.explain import all_axes, explain_query
from attncli.formulas import masks_at
from attncli.numbers import counted, format_number
from attncli.problem import Problem
from attncli.shapes import ShapeRow, shape_flow
from attncli.sizes import sizes_of
from attncli.stages import STAGE
from attncli.trace import Step, Trace

# Lines about the sinks of one head: its first and last rows around a "…" past this many.
MAX_ROWS = 6
# Heads whose sinks get a line of their own, and logits shown before and after the soft-cap.
MAX_HEADS = 8
CAPPED_SHOWN = 3


def walk(problem: Problem, trace: Trace, precision: int = 4) -> list[Section]:
    """The sections: the inputs, then one per step of the trace in order (as ``shapes`` lists
    them), the variants' notes with the step that applies them, the mask's grid with the step
    that masks. Numbers in words have ``precision`` decimals; the tables keep every digit."""
    write = _Writer(precision)
    notes = _variant_notes(problem, trace, write)
    grid, masking = mask_grid(problem), masks_at(problem)
    sections = [_inputs(problem)]
    for row in shape_flow(sizes_of(problem)):
        if row.step not in trace.steps:
            continue  # x and context: the inputs' section
        sections.append(Section(
            f"{len(sections) + 1}. {row.step}", STAGE[row.step].said, formula=_formula(row),
            steps=(trace.steps[row.step],), notes=notes.get(row.step, ()),
            grid=grid if row.step == masking else None,
        ))
    return sections


def _formula(row: ShapeRow) -> str:
    shape = row.shape_text
    return f"{row.formula}   {shape} ({', '.join(row.axes)}): {row.how}"


def _inputs(problem: Problem) -> Section:
    batch, q_len, d_model = problem.x.shape
    lead, lead_axes = ((batch,), ("batch",)) if problem.batched else ((), ())
    steps = [Step("x", "x", problem.x if problem.batched else problem.x[0], lead_axes + ("q_len", "d_model"))]
    if problem.cross:
        context = problem.context if problem.batched else problem.context[0]
        steps.append(Step("context", "context", context, lead_axes + ("context_len", "d_context")))
    for key, name in (("w_query", "W_Q"), ("w_key", "W_K"), ("w_value", "W_V"), ("w_out", "W_O")):
        weight = getattr(problem, key)
        if weight is not None:
            steps.append(Step(key, name, weight, ("in", "out")))
    tokens = f"{counted(q_len, 'token')} of width {d_model}" + (f" in each of {batch} batch items" if lead else "")
    source = f"; the keys and values come from a context of {counted(problem.context.shape[1], 'token')}" \
        if problem.cross else ""
    weights = ", ".join(f"{step.formula} ({'×'.join(map(str, step.shape))})"
                        for step in steps if step.axes == ("in", "out"))
    formula = "; ".join(f"{step.name} ({', '.join(map(str, step.shape))}) ({', '.join(step.axes)})"
                        for step in steps if step.axes != ("in", "out"))
    return Section("1. Inputs", f"x holds one row per token ({tokens}){source}; the learned weights are {weights}.",
                   formula=formula, steps=tuple(steps))


class _Writer:
    """Numbers in words, with ``precision`` decimals."""

    def __init__(self, precision: int):
        self.precision = precision

    def __call__(self, value: float) -> str:
        return format_number(float(value), self.precision)


def _where(problem: Problem, batch: int = 0, head: int | None = 0) -> str:
    parts = ([f"head {head}"] if head is not None and problem.heads > 1 else []) + (
        [f"batch {batch}"] if problem.batched else [])
    return f" ({', '.join(parts)})" if parts else ""


# --- the variants, each in the problem's own numbers ------------------------------------------------

def _variant_notes(problem: Problem, trace: Trace, write: _Writer) -> dict[str, tuple[Note, ...]]:
    """Each step's notes: QK-norm and RoPE of query 1 (or 0) and key 1, the key/value head of each
    query head, the scale, the soft-cap, ALiBi, the bias, the sinks."""
    notes: dict[str, list[Note]] = {}
    q_len, k_len = problem.x.shape[1], problem.k_len
    query, key = min(1, q_len - 1), min(1, k_len - 1)
    if problem.rope is not None or problem.qk_norm is not None:
        explained = explain_query(problem, trace, query, key)
        for letter, norm, rotation, index in (("q", explained.query_norm, explained.query_rotation, query),
                                              ("k", explained.key_norm, explained.key_rotation, key)):
            if norm is not None:
                notes.setdefault(f"{letter}_normed", []).append(_norm_note(problem, letter, index, norm, write))
            if rotation is not None:
                notes.setdefault(f"{letter}_rotated", []).append(
                    _rotation_note(problem, letter, index, rotation, write))
    if problem.kv_heads != problem.heads:
        notes.setdefault("scores", []).append(_grouping_note(problem))
    if "logits" in trace.steps and problem.scale_factor != 1.0:
        notes.setdefault("logits", []).append(_scale_note(problem, trace, write))
    if problem.softcap is not None:
        notes.setdefault("capped", []).extend(_softcap_notes(problem, trace, write))
    if problem.alibi is not None:
        notes.setdefault("biased", []).append(_alibi_note(problem, write))
    if problem.bias is not None:
        notes.setdefault("biased", []).append(_bias_note(problem, write))
    if problem.sinks is not None:
        notes.setdefault("softmax", []).extend(_sink_notes(problem, trace, write))
    return {step: tuple(found) for step, found in notes.items()}


def _norm_note(problem: Problem, letter: str, index: int, norm, write: _Writer) -> Note:
    which = "query" if letter == "q" else "key"
    over = f"its {len(norm.squared)} values" + (" in every head" if norm.over == "all" else "")
    text = (f"{which} {index}{_where(problem)}: the mean square of {over} is {write(norm.mean_square)}; "
            f"× 1/√({write(norm.mean_square)} + {norm.eps:g}) = × {write(norm.factor)}, then × {letter}_weight")
    return Note(text, {"variant": "qk_norm", which: index, "head": 0, "mean_square": norm.mean_square,
                       "eps": norm.eps, "factor": norm.factor})


def _rotation_note(problem: Problem, letter: str, index: int, rotation, write: _Writer) -> Note:
    which = "query" if letter == "q" else "key"
    first, second = (int(dim) for dim in rotation.pairs[0])
    inv_freq, angle = float(rotation.inv_freq[0]), float(rotation.angles[0])
    before = (float(rotation.before[first]), float(rotation.before[second]))
    after = (float(rotation.after[first]), float(rotation.after[second]))
    text = (f"{which} {index}{_where(problem)} is at position {rotation.position}: its first pair, dims {first} and "
            f"{second}, turns by {rotation.position} × inv_freq[0] = {rotation.position} × {write(inv_freq)} = "
            f"{write(angle)} rad ({math.degrees(angle):.1f}°): ({write(before[0])}, {write(before[1])}) → "
            f"({write(after[0])}, {write(after[1])})")
    head_dim = len(rotation.before)
    if rotation.rotary_dim < head_dim:
        text += f"; dims {rotation.rotary_dim} to {head_dim - 1} are not turned"
    return Note(text, {"variant": "rope", which: index, "head": 0, "position": rotation.position,
                       "dims": [first, second], "inv_freq": inv_freq, "angle": angle,
                       "before": list(before), "after": list(after)})


def _grouping_note(problem: Problem) -> Note:
    groups = problem.groups
    uses = [head // groups for head in range(problem.heads)]
    spans = [f"{kv * groups}–{kv * groups + groups - 1}" if groups > 1 else f"{kv}" for kv in range(problem.kv_heads)]
    listed = "; ".join(f"query heads {span} use key/value head {kv}" if groups > 1 else
                       f"query head {span} uses key/value head {kv}" for kv, span in enumerate(spans))
    text = (f"{problem.heads} query heads share {counted(problem.kv_heads, 'key/value head')} "
            f"({groups} each): {listed}")
    return Note(text, {"variant": "kv_heads", "kv_head_of_head": uses})


def _scale_note(problem: Problem, trace: Trace, write: _Writer) -> Note:
    scores, logits = all_axes(trace, "scores")[0, 0, 0], all_axes(trace, "logits")[0, 0, 0]
    key = int(np.flatnonzero(np.isfinite(logits))[0]) if np.isfinite(logits).any() else 0
    factor = problem.scale_factor
    rule = f"1/√{problem.head_dim} = {write(factor)}" if problem.scale == "sqrt" else write(factor)
    text = (f"scale = {rule}: query 0's score for key {key}{_where(problem)}, {write(scores[key])}, "
            f"becomes the logit {write(logits[key])}")
    return Note(text, {"variant": "scale", "scale": factor, "query": 0, "key": key,
                       "score": float(scores[key]), "logit": float(logits[key])})


def _softcap_notes(problem: Problem, trace: Trace, write: _Writer) -> list[Note]:
    before = all_axes(trace, "logits" if "logits" in trace.steps else "scores")
    after = all_axes(trace, "capped")
    candidates = np.where(np.isfinite(after), before, -np.inf)
    order = np.argsort(candidates, axis=None)[::-1][:CAPPED_SHOWN]
    notes = []
    for flat in order:
        batch, head, query, key = (int(i) for i in np.unravel_index(flat, before.shape))
        if not np.isfinite(candidates[batch, head, query, key]):
            break
        old, new = float(before[batch, head, query, key]), float(after[batch, head, query, key])
        notes.append(Note(
            f"{write(old)} → {write(new)}: {problem.softcap:g}·tanh({write(old)} / {problem.softcap:g}), "
            f"query {query}, key {key}{_where(problem, batch, head)}",
            {"variant": "softcap", "cap": problem.softcap, "batch": batch, "head": head, "query": query, "key": key,
             "before": old, "after": new}))
    if notes:
        notes[0] = notes[0]._replace(text=f"the largest logits come closer to the cap {problem.softcap:g}: "
                                     + notes[0].text)
    return notes


def _alibi_note(problem: Problem, write: _Writer) -> Note:
    query, key = problem.x.shape[1] - 1, 0
    slope = float(problem.alibi[0])
    positions = problem.query_positions[query:query + 1], problem.key_positions[key:key + 1]
    term = float(alibi_term(np.asarray(slope), *positions, np.dtype(np.float64))[0, 0])
    distance = int(positions[0][0] - positions[1][0])
    text = (f"head 0's slope is {write(slope)}: query {query} (position {int(positions[0][0])}) and key {key} "
            f"(position {int(positions[1][0])}) are {distance} apart, so −{write(slope)} × {distance} = "
            f"{write(term)} is added to its logit")
    return Note(text, {"variant": "alibi", "head": 0, "slope": slope, "query": query, "key": key,
                       "distance": distance, "term": term})


def _bias_note(problem: Problem, write: _Writer) -> Note:
    bias = problem.bias
    finite = np.where(np.isfinite(bias), np.abs(bias), -1.0)
    batch, head, query, key = (int(i) for i in np.unravel_index(int(np.argmax(finite)), bias.shape))
    value = float(bias[batch, head, query, key])
    text = (f"the bias's largest term adds {write(value)} to query {query}'s logit for key {key}"
            f"{_where(problem, batch, head) if bias.shape[:2] != (1, 1) else ''}")
    return Note(text, {"variant": "bias", "batch": batch, "head": head, "query": query, "key": key, "value": value})


def _sink_notes(problem: Problem, trace: Trace, write: _Writer) -> list[Note]:
    sums = np.add.reduce(all_axes(trace, "softmax")[0], axis=-1)  # (heads, q_len): batch 0
    notes = []
    q_len = sums.shape[1]
    rows = list(range(q_len)) if q_len <= MAX_ROWS else [0, 1, 2, None, q_len - 2, q_len - 1]
    sink = float(problem.sinks[0])
    for query in rows:
        if query is None:
            notes.append(Note(f"… {q_len - 4} more queries", {"variant": "sinks", "elided": q_len - 4}))
            continue
        total = float(sums[0, query])
        notes.append(Note(f"query {query}{_where(problem)}: weights sum to {write(total)}; {write(1 - total)} went "
                          f"to the sink ({write(sink)})",
                          {"variant": "sinks", "head": 0, "query": query, "sum": total, "sink_share": 1 - total}))
    for head in range(1, min(problem.heads, MAX_HEADS)):
        share = 1 - sums[head]
        notes.append(Note(f"head {head} (sink {write(problem.sinks[head])}): the sink takes {write(share.min())} "
                          f"to {write(share.max())} of each row",
                          {"variant": "sinks", "head": head, "least": float(share.min()), "most": float(share.max())}))
    if problem.heads > MAX_HEADS:
        notes.append(Note(f"… {problem.heads - MAX_HEADS} more heads", {"variant": "sinks",
                                                                         "elided": problem.heads - MAX_HEADS}))
    return notes


# --- the mask, as a grid of reasons -------------------------------------------------------------------

ALLOWED = "●"


def mask_grid(problem: Problem) -> MaskGrid | None:
    """The problem's mask as a grid of characters, one per reason a key is hidden (the first that
    applies: padding, the causal rule, the window, the mask array, −∞ in the bias); None without a
    mask."""
    rules = problem.visibility
    if rules is None:
        return None
    bare = rules._replace(array=None, causal_offset=None, window=None, padding=None)
    bias_hidden = None if problem.bias is None else np.isneginf(problem.bias)
    reasons = []  # (mark, words, hidden)
    if rules.padding is not None:
        reasons.append(("p", "a padded key", ~bare._replace(padding=rules.padding).full()))
    if rules.causal_offset is not None:
        corner = "" if problem.mask_rule == "causal" else " (lower right: the last query sees every key)"
        reasons.append(("c", f"a key after the query (causal{corner})",
                        ~bare._replace(causal_offset=rules.causal_offset).full()))
    if rules.window is not None:
        reasons.append(("w", f"outside the window of {rules.window}: the query at position p sees keys at "
                        f"p−{rules.window - 1} to p", ~bare._replace(window=rules.window).full()))
    if rules.array is not None:  # the mask array's cells, and the bias's −∞ folded into it
        if problem.mask_rule == "array":
            hidden = ~rules.array if bias_hidden is None else ~rules.array & ~bias_hidden
            reasons.append(("m", "hidden by the mask array", hidden))
        if bias_hidden is not None:
            reasons.append(("b", "−∞ in the bias", bias_hidden))
    reasons = [reason for reason in reasons if reason[2].any()]  # a bias with no −∞ hides nothing
    if not reasons:
        return None
    marks = ALLOWED + "".join(mark for mark, _, _ in reasons)
    shape = np.broadcast_shapes(*(hidden.shape for _, _, hidden in reasons))
    codes = np.zeros(shape, dtype=np.uint8)
    for code, (_, _, hidden) in reversed(list(enumerate(reasons, start=1))):
        codes[np.broadcast_to(hidden, shape)] = code
    batches, heads = shape[:2]
    titles = tuple(", ".join(([f"batch {b}"] if batches > 1 else []) + ([f"head {h}"] if heads > 1 else []))
                   for b in range(batches) for h in range(heads))
    codes = codes.reshape(batches * heads, *shape[2:])
    counts = np.bincount(codes.ravel(), minlength=len(marks))
    legend = ((ALLOWED, "may attend", int(counts[0])),) + tuple(
        (mark, words, int(counts[code])) for code, (mark, words, _) in enumerate(reasons, start=1))
    return MaskGrid(codes, titles, marks, legend)
