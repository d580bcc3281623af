"""The forward pass of attention, defined once: an ordered list of stages.

Each Stage has its name, the axes of what it makes, its formula, how it changes the shape, and
the function that computes it from the stages before it (the arithmetic is in arithmetic.py,
and a stage reads its inputs through the Flow of its run, flow.py). The full trace runs them
all (pipeline.py); the blocked path runs the same stages on a block of queries of one head;
``shapes`` reads their axes, formulas and explanations; the memory estimate their shapes;
``explain`` reads one row through their functions; and ``check``'s mistakes are these stages
run with a Slip. The arithmetic is PyTorch's (``nn.MultiheadAttention`` and
``F.scaled_dot_product_attention``).

Internally every array has both a batch and a heads axis:
q, q_normed, q_rotated (batch, heads, q_len, head_dim); k, k_normed, k_rotated
(batch, kv_heads, k_len, head_dim); v (batch, kv_heads, k_len, head_dim_v);
scores/logits/capped/biased/softmax (batch, heads, q_len, k_len),
weighted (batch, heads, q_len, head_dim_v), concat (batch, q_len, heads*head_dim_v),
output (batch, q_len, d_out). The order is the reference code's (Hugging Face's Llama, Gemma 2,
gpt-oss): project, QK-norm, RoPE, scores, scale, soft-cap, ALiBi and bias, masks, softmax (with
sinks), values, heads joined, output projection.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import numpy as np

from attncli.appended import joined
from attncli.arithmetic import (
    add_alibi,
    dot_scores,
    exponentials,
    head_mean,
    masked,
    masked_softmax,
    merge_heads,
    output_projection,
    project,
    rms_norm,
    rotary_angles,
    rotate,
    row_shift,
    scaled,
    soft_capped,
    split_heads,
    weighted_values,
)
from attncli.flow import Flow
from attncli.formulas import (
    biased_formula,
    biased_how,
    capped_formula,
    concat_formula,
    has_logits,
    logits_formula,
    masks_at,
    merge_how,
    output_formula,
    output_how,
    softmax_formula,
)
from attncli.keys import STEP_NAMES
from attncli.numbers import counted
from attncli.sizes import Sizes

# --- the stages, in order ----------------------------------------------------------------------------


class Stage(NamedTuple):
    """One stage: its ``name`` (a step of the trace when ``shown``), the ``axes`` of its array,
    the ``formula`` and ``how`` its shape comes about for given Sizes, whether a problem of those
    sizes has it as a step (``present``), which of its values must be finite (``checked``: "all",
    "allowed" for those a query may see, or None), the function that runs it, and its ``unit``
    on the blocked path: "problem" (made once, before the blocks: keys and values), "block" (made
    per block of queries of one head) or "heads" (made once from every block: it mixes heads).
    Later stages read what it made by its ``slot``: its name, or the slot of the array it
    transforms (a rotation of Q would fill the slot ``q``, so the scores read the rotated Q). A
    ``requested`` stage is made only when a list of steps names it: it is not in a trace of every
    step, nor in ``shapes``. ``said`` is what it does in one line, for a reader (``demo FILE``)."""

    name: str
    axes: tuple[str, ...]
    run: Callable[[Flow], np.ndarray]
    formula: Callable[[Sizes], str]
    how: Callable[[Sizes], str]
    present: Callable[[Sizes], bool] = lambda sizes: True
    checked: str | None = "all"
    shown: bool = True
    unit: str = "block"
    transforms: str | None = None
    requested: bool = False
    said: str = ""

    @property
    def slot(self) -> str:
        return self.transforms or self.name

    def make(self, flow: Flow) -> np.ndarray:
        """What this stage makes in ``flow``: its result, rounded to the problem's reduced dtype
        when it has one (float16, bfloat16: each product and the softmax computed in float32, then
        rounded, as frameworks do), so every later stage reads rounded values."""
        made = self.run(flow)
        return made if flow.rounding is None else flow.rounding(made)


def _projection_stage(name: str, source: str, weight: str, bias: str, length: str, dim: str) -> Stage:
    letter = name.upper()
    heads_axis = "heads" if name == "q" else "kv_heads"

    def run(flow: Flow) -> np.ndarray:
        inputs, weights, biases, heads = flow.projection(source, weight, bias, length, heads_axis)
        projected, extra, slip = project(inputs, weights, biases), flow.problem.appended, flow.slip
        if extra is not None and name != "q":  # after the projection and its bias, as PyTorch appends them
            projected = joined(projected, extra.keys if name == "k" else extra.values)
        return split_heads(projected, heads, slip.interleaved_heads, slip.split_untransposed)

    def formula(sizes: Sizes) -> str:
        bias_term = f" + b_{letter}" if bias in sizes.biases else ""
        product = f"{'x' if name == 'q' else sizes.source}·W_{letter}{bias_term}"
        rows = [{"bias_k": f"bias_{name}", "zero": "0"}[row] for row in sizes.appended] if name != "q" else []
        return f"{letter} = " + (f"[{product}; {'; '.join(rows)}]" if rows else product)

    def how(sizes: Sizes) -> str:
        d_in = sizes.d_model if name == "q" else sizes.d_source
        per_head = sizes.dim_v if name == "v" else sizes.dim
        heads = sizes.heads if name == "q" else sizes.key_heads
        text = f"times W_{letter} ({d_in}×{heads * per_head})"
        kind = " key/value" if heads != sizes.heads else ""
        text += f", {counted(len(sizes.appended), 'row')} appended" if sizes.appended and name != "q" else ""
        return text + (f", split into {heads}{kind} heads × {per_head}" if sizes.heads > 1 else "")

    return Stage(name, ("batch", heads_axis, length, dim), run, formula, how,
                 unit="block" if length == "q_len" else "problem", said=_PROJECTED[name])


_PROJECTED = {
    "q": "each token of x becomes a query: what it looks for among the keys",
    "k": "each token of the keys' source becomes a key: what a query is matched against",
    "v": "each token of the keys' source becomes a value: what it passes on to the queries that attend to it",
}


def _q_or_k_stage(letter: str, suffix: str, change: Callable[[np.ndarray, Flow], np.ndarray | None],
                  formula: Callable[[Sizes], str], how: Callable[[Sizes], str],
                  present: Callable[[Sizes], bool], said: str) -> Stage:
    """A stage that changes Q (per block) or K (once), in its slot: ``change(values, flow)`` gives
    the new values, or None when the problem lacks this variant (the values pass through)."""
    heads_axis, length = ("heads", "q_len") if letter == "q" else ("kv_heads", "k_len")
    name = f"{letter}_{suffix}"

    def run(flow: Flow) -> np.ndarray:
        values = flow.arrays[letter]
        changed = None if name in flow.slip.skipped else change(values, flow)
        return values if changed is None else changed

    return Stage(name, ("batch", heads_axis, length, "head_dim"), run, formula, how,
                 present=present, unit="block" if letter == "q" else "problem", transforms=letter, said=said)


def _norm_stage(letter: str) -> Stage:
    """QK-norm of Q or K (Qwen3, Gemma 3 per head; OLMo 2 over the whole projection)."""

    def change(values: np.ndarray, flow: Flow) -> np.ndarray | None:
        problem = flow.problem
        norm = problem.qk_norm
        if norm is None:
            return None
        weight = norm.q_weight if letter == "q" else norm.k_weight
        if norm.over == "head":
            return rms_norm(values, weight, norm.eps)
        count, axes = (problem.heads, STEP_AXES_Q) if letter == "q" else (problem.kv_heads, STEP_AXES_K)
        mean_square = flow.query_mean_square() if letter == "q" else None
        return rms_norm(values, flow.take(weight.reshape(1, count, 1, -1), axes), norm.eps, (-3, -1), mean_square)

    def formula(sizes: Sizes) -> str:
        over = "each head" if sizes.qk_norm != "all" else "all heads"
        return f"{letter.upper()} = RMSNorm({letter.upper()}) over {over}"

    def how(sizes: Sizes) -> str:
        width = f"{sizes.dim}" if sizes.qk_norm != "all" else (
            f"{sizes.heads if letter == 'q' else sizes.key_heads}×{sizes.dim}")
        return f"÷ √(mean of the {width} squares + eps), × {letter}_weight"

    which = "query" if letter == "q" else "key"
    return _q_or_k_stage(letter, "normed", change, formula, how, lambda sizes: sizes.qk_norm is not None,
                         f"each {which} vector is divided by its root mean square and weighted (RMSNorm), so no "
                         "score can grow without bound")


def _rotation_stage(letter: str) -> Stage:
    """Rotary embeddings of Q or K, by each query's or key's position."""

    def change(values: np.ndarray, flow: Flow) -> np.ndarray | None:
        rope = flow.problem.rope
        if rope is None:
            return None
        positions = flow.rotation_positions(letter)
        cos, sin = rotary_angles(positions, rope.inv_freq, values.dtype, rope.attention_factor)
        return rotate(values, cos, sin, rope.style)

    def formula(sizes: Sizes) -> str:
        style = "halves, neox" if sizes.rope == "neox" else "pairs, gptj"
        return f"{letter.upper()} = RoPE({letter.upper()}, {'query' if letter == 'q' else 'key'} positions) ({style})"

    def how(sizes: Sizes) -> str:
        return "each pair of dims turned by position × frequency; shape unchanged"

    which = "query" if letter == "q" else "key"
    return _q_or_k_stage(letter, "rotated", change, formula, how, lambda sizes: sizes.rope is not None,
                         f"each {which} is turned by an angle that grows with its position (RoPE), so a score "
                         "depends on how far apart the query and the key are")


STEP_AXES_Q = ("batch", "heads", "q_len", "head_dim")
STEP_AXES_K = ("batch", "kv_heads", "k_len", "head_dim")


def _scores(flow: Flow) -> np.ndarray:
    queries = flow.arrays["q"]
    if flow.fast:
        queries = flow.fold(queries)  # the scale (and log2 e) on Q: one multiplication per query, not per score
    return dot_scores(queries, flow.arrays["k"], flow.slip.scores_transposed, flow.slip.kv_tiled)


def _masked_here(flow: Flow, name: str, logits: np.ndarray, in_place: bool = False) -> np.ndarray:
    return masked(logits, flow.allowed, in_place) if masks_at(flow.problem) == name else logits


# On a block the score-sized arrays are the block's own and no step but the output is kept, so the
# logit stages work in place: memory stays a few score blocks per worker. The full path keeps each.


def _logits(flow: Flow) -> np.ndarray:
    if flow.fast:  # the scale is in Q already, and these scores are this block's own to overwrite
        return masked(flow.arrays["scores"], flow.allowed, in_place=True)
    own, scores = flow.block is not None, flow.arrays["scores"]
    if flow.slip.softcap_order == "before_scale":  # the slip: capped, then scaled (and not capped again)
        scores = soft_capped(scores, flow.problem.softcap)
    return _masked_here(flow, "logits", scaled(scores, flow.problem, in_place=own), in_place=own)


def _capped(flow: Flow) -> np.ndarray:
    cap, order, logits = flow.problem.softcap, flow.slip.softcap_order, flow.arrays["logits"]
    if cap is None:
        return logits
    if order:  # the slips: capped before the scale (done), or after the mask (−∞ capped to −cap)
        logits = masked(logits, flow.allowed)
        return soft_capped(logits, cap) if order == "after_mask" else logits
    # a new array on the full path: the logits step is kept as it was
    return _masked_here(flow, "capped", soft_capped(logits, cap, in_place=flow.block is not None), in_place=True)


def _biased(flow: Flow) -> np.ndarray:
    problem, logits = flow.problem, flow.arrays["logits"]
    if not problem.additive:
        return logits
    biased = logits if flow.block is not None else logits.copy()
    if problem.alibi is not None:
        add_alibi(biased, flow.per_head(problem.alibi), flow.query_positions(), flow.key_positions(), in_place=True)
    if problem.bias is not None:
        biased += flow.take(problem.bias, STAGE_AXES_LOGITS).astype(biased.dtype, copy=False)
    return masked(biased, flow.allowed, in_place=True)


def _softmax(flow: Flow) -> np.ndarray:
    logits, problem = flow.arrays["logits"], flow.problem
    if flow.fast:  # in place, and normalised after the product with V (see _weighted)
        # no row's maximum subtracted when the block's scores are bounded small enough
        shift = None if flow.shift_free() else row_shift(logits, any_masked=True)
        return exponentials(logits, shift, flow.power, out=logits)
    sinks = None if problem.sinks is None else flow.per_head(problem.sinks).astype(logits.dtype, copy=False)
    slip = flow.slip
    return masked_softmax(logits, flow.allowed, slip.softmax_axis, sinks, slip.empty_rows or problem.masked_rows,
                          in_place=flow.block is not None and slip.softmax_axis == -1, sink_kept=slip.sink_kept)


def _weighted(flow: Flow) -> np.ndarray:
    if flow.fast:
        return weighted_values(flow.arrays["softmax"], flow.values_with_ones(), totals_appended=True)
    slip = flow.slip
    return weighted_values(flow.arrays["softmax"], flow.arrays["v"], transposed=slip.weights_transposed,
                           tiled=slip.kv_tiled)


STAGE_AXES_LOGITS = ("batch", "heads", "q_len", "k_len")
STAGES: tuple[Stage, ...] = (
    _projection_stage("q", "x", "w_query", "b_query", "q_len", "head_dim"),
    _projection_stage("k", "context", "w_key", "b_key", "k_len", "head_dim"),
    _projection_stage("v", "context", "w_value", "b_value", "k_len", "head_dim_v"),
    _norm_stage("q"),
    _norm_stage("k"),
    _rotation_stage("q"),
    _rotation_stage("k"),
    Stage(
        "scores", STAGE_AXES_LOGITS, _scores, lambda sizes: "scores = Q·Kᵀ",
        lambda sizes: f"each query·each key{', per head' if sizes.heads > 1 else ''}: {sizes.dim} dims summed away",
        checked="allowed", said="how well each query matches each key: the dot product of their vectors",
    ),
    Stage(
        "logits", STAGE_AXES_LOGITS, _logits, logits_formula,
        lambda sizes: " and ".join(word for word, flag in (
            ("scaled", sizes.scaled), ("masked", sizes.masked and masks_at(sizes) == "logits")) if flag)
        + " cell by cell",
        present=has_logits, checked="allowed",
        said="the scores scaled, so their spread does not grow with a head's width, and −∞ where a key is hidden "
        "(its weight will be 0)",
    ),
    Stage(
        "capped", STAGE_AXES_LOGITS, _capped, capped_formula,
        lambda sizes: "soft-capped cell by cell into (−c, c)" + (", masked" if masks_at(sizes) == "capped" else ""),
        present=lambda sizes: sizes.softcap is not None, checked="allowed", transforms="logits",
        said="large logits squashed smoothly below the cap (tanh), so no single key can take all the weight",
    ),
    Stage(
        "biased", STAGE_AXES_LOGITS, _biased, biased_formula, biased_how,
        present=lambda sizes: sizes.additive, checked="allowed", transforms="logits",
        said="terms added to the logits (ALiBi's distance penalty, a given bias), moving weight between keys",
    ),
    Stage(
        "softmax", STAGE_AXES_LOGITS, _softmax, softmax_formula,
        lambda sizes: "along k_len: each row sums to " + ("less than 1 (the sink takes the rest)" if sizes.sinks
                                                           else "1"),
        checked=None, said="each query's logits made into weights, e^logit / Σ e^logit: positive, summing to 1 over "
        "the keys it may see",
    ),
    Stage(
        # nn.MultiheadAttention's weights with average_attn_weights=True (its default)
        "averaged", ("batch", "q_len", "k_len"),
        lambda flow: head_mean(flow.arrays["softmax"]),
        lambda sizes: "averaged = mean of softmax over heads" if sizes.heads > 1 else "averaged = softmax",
        lambda sizes: f"the {sizes.heads} heads' weights averaged cell by cell" if sizes.heads > 1 else
        "one head: its weights",
        checked=None, unit="heads", requested=True,
    ),
    Stage("weighted", ("batch", "heads", "q_len", "head_dim_v"), _weighted, lambda sizes: "softmax·V", merge_how,
          checked=None, shown=False),
    Stage(
        "concat", ("batch", "q_len", "heads*head_dim_v"),
        lambda flow: merge_heads(flow.arrays["weighted"], flow.slip.merge_untransposed),
        concat_formula, merge_how,
        # finite: each row was kept within the range of V's rows, which are finite
        present=lambda sizes: sizes.d_out is not None, checked=None,
        said="each query's weighted sum of the value rows, per head, the heads' results side by side",
    ),
    Stage("output", ("batch", "q_len", "d_out"), lambda flow: output_projection(flow.arrays["concat"], flow.problem),
          output_formula, output_how, unit="heads",
          said="what attention gives back for each query: the weighted sum of the values, mixed by W_O when there "
          "is one"),
)

STAGE = {stage.name: stage for stage in STAGES}


def last_in_slot(slot: str, names: Iterable[str]) -> str | None:
    """Of the stages named in ``names`` (a trace's steps), the last that fills ``slot``: the Q the
    scores were made from is the last stage in slot q (a rotation's, when there is one)."""
    present = set(names)
    return next((stage.name for stage in reversed(STAGES) if stage.slot == slot and stage.name in present), None)


# Axes that count heads: a Trace leaves each out when it counts a single head.
HEAD_AXES = frozenset({"heads", "kv_heads"})
# The steps made only when named (see Stage.requested).
REQUESTED = frozenset(stage.name for stage in STAGES if stage.requested)


def running(sizes: Sizes) -> tuple[Stage, ...]:
    """The stages a problem of these sizes runs, in order: one that transforms a slot and that the
    problem lacks (a rotation without RoPE) would hand its slot on unchanged, so it is not run."""
    return tuple(stage for stage in STAGES if stage.transforms is None or stage.present(sizes))
# The steps a trace can show, in order: the stages that are shown.
STEP_AXES = {stage.name: stage.axes for stage in STAGES if stage.shown}
assert tuple(STEP_AXES) == STEP_NAMES, "keys.STEP_NAMES must list the shown stages in order"
