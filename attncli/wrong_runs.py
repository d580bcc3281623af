"""The known mistakes as computations: each is the stages run with a Slip (flow.py) or on the
problem with one thing changed (``dataclasses.replace``), never a second forward pass; two of
them can be made at once (``Wrong.joined``). Their words are in known_mistakes.py. Pure numpy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np

from attncli import torchnames
from attncli.errors import ProblemError
from attncli.flow import RIGHT, Slip
from attncli.known_mistakes import (
    MISTAKES,
    Mistake,
    alibi_heads_mistake,
    bias_mistake,
    pair_mistake,
    torch_weights_mistake,
)
from attncli.pipeline import full_attention, problem_steps
from attncli.problem import Problem
from attncli.variants import alibi_slopes
from attncli.visibility import CAUSAL_OFFSETS, visibility

BIASES = ("b_query", "b_key", "b_value", "b_out")


class Wrong(NamedTuple):
    """A known mistake as a change to the right computation: the Problem's ``fields`` replaced,
    the stages run with ``slip``, and of its steps only ``steps`` kept (None: every step; the
    output projection left out changes the output alone)."""

    mistake: Mistake
    fields: dict[str, Any]
    slip: Slip = RIGHT
    steps: tuple[str, ...] | None = None

    def joined(self, other: Wrong) -> Wrong | None:
        """Both mistakes at once, or None when they change the same field or slip (one would undo
        or hide the other)."""
        slip = self.slip.joined(other.slip)
        if slip is None or set(self.fields) & set(other.fields):
            return None
        kept = [set(wrong.steps) for wrong in (self, other) if wrong.steps is not None]
        steps = None if not kept else tuple(sorted(set.intersection(*kept)))
        return Wrong(pair_mistake(self.mistake, other.mistake), {**self.fields, **other.fields}, slip, steps)


def run(problem: Problem, wrong: Wrong, dtype: str | None = None) -> dict[str, np.ndarray]:
    """The steps ``wrong`` makes of ``problem`` (in the Trace's shapes; computed in ``dtype`` when
    given, as ``compute --dtype`` computes: float32, or float16/bfloat16 emulated), or {} when it
    cannot run for these shapes (K·Qᵀ with q_len ≠ k_len) or overflows."""
    try:
        changed = dataclasses.replace(problem, **wrong.fields) if wrong.fields else problem
        changed = changed if dtype is None else changed.astype(dtype)
        # every step, the heads' mean (made only when named) too
        steps = full_attention(changed, problem_steps(changed), slip=wrong.slip).steps
        arrays = {name: step.array for name, step in steps.items()}
    except ProblemError:
        return {}
    # without scale or mask a variant has no logits step: its logits are its scores
    arrays.setdefault("logits", arrays["scores"])
    return arrays if wrong.steps is None else {name: arrays[name] for name in wrong.steps if name in arrays}


def variants(problem: Problem, weight_names: tuple[str, ...] = ()) -> Iterator[tuple[Mistake, dict[str, np.ndarray]]]:
    """Each known mistake that applies to this problem, with the steps it would produce (in the
    Trace's shapes). ``weight_names``: the names the document gave its weights (PyTorch's or attncli's)."""
    for wrong in wrongs(problem, weight_names):
        yield wrong.mistake, run(problem, wrong)


def wrongs(problem: Problem, weight_names: tuple[str, ...] = ()) -> list[Wrong]:
    """The known mistakes that would change this problem's numbers, most common first."""
    found = [Wrong(MISTAKES["transposed_weighted_sum"], {}, Slip(weights_transposed=True)),
             Wrong(MISTAKES["softmax_over_queries"], {}, Slip(softmax_axis=-2)),
             Wrong(MISTAKES["scores_transposed"], {}, Slip(scores_transposed=True))]
    found += _heads(problem) + _scaling(problem) + _masks(problem)
    transposed = _transposed_weights(problem)
    if transposed is not None:
        torch = [name for name in weight_names if name in torchnames.WEIGHTS]
        found.append(Wrong(torch_weights_mistake(torch) if torch else MISTAKES["weights_not_transposed"], transposed))
    if problem.w_out is not None:
        found.append(Wrong(MISTAKES["no_output_projection"], {"w_out": None, "b_out": None}, steps=("output",)))
    biases = [name for name in BIASES if getattr(problem, name) is not None]
    found += [Wrong(bias_mistake(name), {name: None}) for name in biases]
    if len(biases) > 1:
        found.append(Wrong(MISTAKES["no_biases"], dict.fromkeys(biases)))
    return found + _modern(problem)


def _heads(problem: Problem) -> list[Wrong]:
    if problem.heads == 1:
        return []
    found = [Wrong(MISTAKES["heads_interleaved"], {}, Slip(interleaved_heads=True)),
             Wrong(MISTAKES["split_untransposed"], {}, Slip(split_untransposed=True))]
    if problem.x.shape[1] > 1:  # one query: (heads, 1, dim) and (1, heads·dim) hold the same numbers
        found.append(Wrong(MISTAKES["merge_untransposed"], {}, Slip(merge_untransposed=True)))
    return found


def _scaling(problem: Problem) -> list[Wrong]:
    factor, head_dim, d_model = problem.scale_factor, problem.head_dim, problem.x.shape[2]
    found = []
    if factor != 1.0:
        found += [Wrong(MISTAKES["no_scaling"], {"scale": "none"}),
                  Wrong(MISTAKES["scaled_twice"], {"scale": factor * factor})]
    if problem.scale == "sqrt" and d_model != head_dim:
        found.append(Wrong(MISTAKES["sqrt_d_model"], {"scale": 1.0 / math.sqrt(d_model)}))
    if problem.scale == "sqrt" and head_dim > 1:  # the same numbers as scaled twice: both are named
        found.append(Wrong(MISTAKES["divided_by_d"], {"scale": 1.0 / head_dim}))
    if problem.scale == "none" and head_dim > 1:
        found.append(Wrong(MISTAKES["scaled_not_asked"], {"scale": "sqrt"}))
    return found


def _masks(problem: Problem) -> list[Wrong]:
    seen = problem.visibility
    positions = problem.query_positions, problem.key_positions
    if seen is None:
        causal = visibility(None, "causal", None, None, None, *positions)
        return [Wrong(MISTAKES["causal_not_asked"], {"visibility": causal, "mask_rule": "causal"})]
    inverted = visibility(~problem.mask, "array", None, None, None, *positions)
    found = [Wrong(MISTAKES["mask_inverted"], {"visibility": inverted}),
             Wrong(MISTAKES["mask_ignored"], {"visibility": None, "mask_rule": None})]
    if seen.padding is not None:
        found.append(Wrong(MISTAKES["padding_ignored"], {"visibility": seen._replace(padding=None), "padding": None}))
    if seen.window is not None:
        for key, width in (("window_wider", seen.window + 1), ("window_narrower", seen.window - 1)):
            if width >= 1:
                found.append(Wrong(MISTAKES[key], {"visibility": seen._replace(window=width), "window": width}))
    q_len, k_len = (len(positions_of) for positions_of in positions)
    if problem.mask_rule in CAUSAL_OFFSETS and q_len != k_len:
        other = "causal" if problem.mask_rule == "causal_lower_right" else "causal_lower_right"
        found.append(Wrong(MISTAKES["causal_top_left" if other == "causal" else "causal_bottom_right"],
                           {"visibility": seen._replace(causal_offset=CAUSAL_OFFSETS[other](q_len, k_len)),
                            "mask_rule": other}))
    if seen.blind().any():
        found.append(Wrong(MISTAKES["empty_row_uniform"], {}, Slip(empty_rows="uniform")))
        if problem.masked_rows == "zero":
            found.append(Wrong(MISTAKES["empty_row_nan"], {"masked_rows": "nan"}))
    return found


def _modern(problem: Problem) -> list[Wrong]:
    found = []
    rope = problem.rope
    if rope is not None:
        if rope.rotary_dim > 2:  # one pair of dims is the same pair in either style
            style = "gptj" if rope.style == "neox" else "neox"
            found.append(Wrong(MISTAKES["rope_style_swapped"], {"rope": rope._replace(style=style)}))
        found += [Wrong(MISTAKES["rope_q_only"], {}, Slip(skipped=("k_rotated",))),
                  Wrong(MISTAKES["rope_left_out"], {}, Slip(skipped=("q_rotated", "k_rotated")))]
        if problem.query_positions[0] != 0:
            found.append(Wrong(MISTAKES["rope_from_zero"], {}, Slip(rope_from_zero=True)))
    if 1 < problem.kv_heads < problem.heads:
        found.append(Wrong(MISTAKES["kv_tiled"], {}, Slip(kv_tiled=True)))
    if problem.qk_norm is not None:
        found.append(Wrong(MISTAKES["qk_norm_left_out"], {}, Slip(skipped=("q_normed", "k_normed"))))
    if problem.softcap is not None:
        if problem.visibility is not None and not problem.additive:
            found.append(Wrong(MISTAKES["softcap_after_mask"], {}, Slip(softcap_order="after_mask")))
        if problem.scale_factor != 1.0:
            found.append(Wrong(MISTAKES["softcap_before_scale"], {}, Slip(softcap_order="before_scale")))
    if problem.sinks is not None and not np.isneginf(problem.sinks).all():
        found += [Wrong(MISTAKES["sink_left_out"], {"sinks": None}),
                  Wrong(MISTAKES["sink_kept"], {}, Slip(sink_kept=True))]
    if problem.alibi is not None:
        found.append(Wrong(MISTAKES["alibi_sign"], {"alibi": -problem.alibi}))
        heads = problem.heads
        if np.allclose(problem.alibi, alibi_slopes(heads), rtol=1e-6, atol=0):
            # slopes made for another head count: twice as many, or the power of two above
            for count in sorted({2 * heads, 2 ** math.ceil(math.log2(heads))} - {heads}):
                slopes = alibi_slopes(count)[:heads].astype(problem.alibi.dtype)
                found.append(Wrong(alibi_heads_mistake(count, heads), {"alibi": slopes}))
    return found


def _transposed_weights(problem: Problem) -> dict[str, np.ndarray] | None:
    """Every weight transposed, when every weight is square (else x·Wᵀ would not fit)."""
    weights = {name: getattr(problem, name) for name in ("w_query", "w_key", "w_value", "w_out")}
    present = {name: weight for name, weight in weights.items() if weight is not None}
    if any(weight.shape[0] != weight.shape[1] for weight in present.values()):
        return None
    if all(np.array_equal(weight, weight.T) for weight in present.values()):
        return None  # symmetric weights: the mistake would change nothing
    return {name: weight.T.copy() for name, weight in present.items()}
