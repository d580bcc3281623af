"""Check a user's numbers for one step against attncli's, and name the common mistake they show.

Each known mistake is a deliberately wrong variant of the computation; when the user's numbers
match a variant's (and not the right answer), that mistake is the likely cause. Pure numpy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from attncli.errors import ProblemError
from attncli.flow import RIGHT, Slip
from attncli.keys import DEFAULT_ATOL, DEFAULT_RTOL
from attncli.pipeline import full_attention
from attncli.problem import Problem
from attncli.trace import Trace
from attncli.visibility import visibility

# A user's logit this low where attncli has −∞ is a mask too (masked_fill(-1e9) is common): e^-1e4 is 0.
MASKED_ENOUGH = -1e4


@dataclass(frozen=True)
class Mistake:
    """A common mistake: a short ``name``, what it ``means`` and the one-line ``fix``."""

    name: str
    means: str
    fix: str


@dataclass(frozen=True)
class Verdict:
    """How the user's array for ``step`` compares with attncli's.

    ``agree``: every cell within tolerance; ``max_error``: the largest |yours − attncli|;
    ``worst``: that cell's index; ``yours``/``attncli``: the two values there; ``wrong_cells``:
    how many cells are out of tolerance; ``mistakes``: the known mistakes the numbers match (more
    than one when, for these inputs, they give the same numbers), most common first.
    """

    step: str
    agree: bool
    max_error: float
    worst: tuple[int, ...]
    yours: float
    attncli: float
    wrong_cells: int
    cells: int
    atol: float
    rtol: float
    mistakes: tuple[Mistake, ...]

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready data; a value that is not finite is a string ("-inf", "nan")."""
        return {
            "step": self.step,
            "agree": self.agree,
            "max_error": _number(self.max_error),
            "worst": {"index": list(self.worst), "yours": _number(self.yours), "attncli": _number(self.attncli)},
            "wrong_cells": self.wrong_cells,
            "cells": self.cells,
            "atol": self.atol,
            "rtol": self.rtol,
            "mistakes": [dataclasses.asdict(mistake) for mistake in self.mistakes],
        }


def check_step(
    problem: Problem, trace: Trace, step: str, yours: np.ndarray,
    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
) -> Verdict:
    """Compare ``yours`` with the trace's ``step`` (shapes must agree once size-1 axes are set
    aside) and, when they differ, try the known mistakes. Raises ProblemError on a shape mismatch."""
    expected = trace.steps[step].array
    yours = _fit(yours, expected.shape, step)
    with np.errstate(invalid="ignore"):  # −∞ − −∞, a masked logit in both, is set to 0 below
        difference = np.abs(yours - expected)
    # a masked logit is −∞ in both (or very low in yours): equal, not NaN
    difference[(yours <= MASKED_ENOUGH) & np.isneginf(expected)] = 0.0
    # a query that sees no key has NaN outputs when masked_rows is "nan": NaN (or JSON's null) in yours too
    difference[np.isnan(expected) & (np.isnan(yours) | np.isneginf(yours))] = 0.0
    difference[np.isnan(difference)] = np.inf
    wrong = difference > atol + rtol * np.abs(np.where(np.isfinite(expected), expected, 0.0))
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(difference)), difference.shape))
    mistakes = _matching_mistakes(problem, step, yours, atol, rtol) if wrong.any() else ()
    return Verdict(
        step=step, agree=not wrong.any(), max_error=float(difference.max()), worst=worst,
        yours=float(yours[worst]), attncli=float(expected[worst]),
        wrong_cells=int(wrong.sum()), cells=int(wrong.size), atol=atol, rtol=rtol, mistakes=mistakes,
    )


def _fit(yours: np.ndarray, shape: tuple[int, ...], step: str) -> np.ndarray:
    """``yours`` in the step's shape: axes of size 1 the step does not have are dropped (a user's
    (1, 3, 3) for an unbatched 3×3 is the same numbers)."""
    yours = np.asarray(yours, dtype=np.float64)
    if yours.shape != shape and [n for n in yours.shape if n != 1] == [n for n in shape if n != 1]:
        yours = yours.reshape(shape)
    if yours.shape != shape:
        raise ProblemError(
            f"has shape {'×'.join(map(str, yours.shape))} but {step} is {'×'.join(map(str, shape))}",
            {step: shape},
        )
    return yours


def _matching_mistakes(
    problem: Problem, step: str, yours: np.ndarray, atol: float, rtol: float
) -> tuple[Mistake, ...]:
    matches = []
    for mistake, arrays in variants(problem):
        wrong = arrays.get(step)
        if wrong is None or wrong.shape != yours.shape:
            continue
        close = np.isclose(yours, wrong, atol=atol, rtol=rtol)
        close |= (yours <= MASKED_ENOUGH) & np.isneginf(wrong)
        # a row with every key masked: attncli's variants give 0 there, naive code (and PyTorch's
        # nn.MultiheadAttention) NaN; both are the same mistake
        close |= np.isnan(yours) & (wrong == 0)
        if close.all():
            matches.append(mistake)
    return tuple(matches)


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)


MISTAKES = {
    "transposed_weighted_sum": Mistake(
        "weighted values summed over the query axis",
        "the output was computed as softmaxᵀ·V: each value row weighted by a column of the weights",
        "sum over the keys: output[i] = Σ_j softmax[i, j]·V[j], i.e. softmax·V, not softmax.T·V",
    ),
    "softmax_over_queries": Mistake(
        "softmax over the wrong axis",
        "each column of the weights sums to 1 (softmax over the queries) instead of each row",
        "normalise over the keys, the last axis: softmax(scores, axis=-1)",
    ),
    "no_scaling": Mistake(
        "scores not scaled",
        "the scores went into the softmax without the 1/√head_dim factor",
        "divide the scores by √head_dim before the softmax",
    ),
    "sqrt_d_model": Mistake(
        "scaled by √d_model instead of √head_dim",
        "the scores were divided by the square root of the model width, not of one head's width",
        "divide by √head_dim = √(d_model / heads)",
    ),
    "scaled_twice": Mistake(
        "scaled twice",
        "the 1/√head_dim factor was applied twice (e.g. to Q and again to the scores)",
        "apply the scale once: to the scores, or √ of it to Q and K each",
    ),
    "scores_transposed": Mistake(
        "Q and K swapped",
        "the scores are K·Qᵀ, the transpose of Q·Kᵀ",
        "scores[i, j] = q_i·k_j: compute Q·Kᵀ with queries on the rows",
    ),
    "mask_inverted": Mistake(
        "mask inverted",
        "the mask was read with the opposite meaning: 1 as blocked (PyTorch's nn.MultiheadAttention "
        "convention) where 1 means may attend",
        "flip the mask: attncli and F.scaled_dot_product_attention take 1/True = may attend",
    ),
    "causal_not_asked": Mistake(
        "causal mask applied",
        "each query only saw the keys up to itself, but this problem has no mask",
        "drop the causal mask (is_causal=False), or add \"mask\": \"causal\" to the problem if it was meant",
    ),
    "mask_ignored": Mistake(
        "mask ignored",
        "every key was attended to, though the problem masks some",
        "apply the mask: masked logits must be −∞ before the softmax",
    ),
    "weights_not_transposed": Mistake(
        "weights used as (out, in) without transposing",
        "the weights were applied as x·Wᵀ (PyTorch's layout) to weights stored (in, out)",
        "use x·W for attncli's (in, out) weights; PyTorch's (out, in) weights need x·Wᵀ",
    ),
    "heads_interleaved": Mistake(
        "heads split with the wrong reshape",
        "each head took every heads-th column (reshape to (head_dim, heads)) instead of a contiguous block",
        "reshape (batch, seq, heads*head_dim) to (batch, seq, heads, head_dim), then move heads forward",
    ),
    "no_output_projection": Mistake(
        "output projection left out",
        "the result is the concatenated heads, without W_O",
        "multiply the concatenated heads by W_O (and add b_O)",
    ),
}


def _bias_mistake(name: str) -> Mistake:
    return Mistake(f"{name} left out", f"the computation ran without the bias {name}",
                   f"add {name} after its projection")


def variants(problem: Problem) -> Iterator[tuple[Mistake, dict[str, np.ndarray]]]:
    """Each known mistake that applies to this problem, with the steps it would produce (in the
    Trace's shapes): the same stages, run with a slip or on the problem with one thing changed."""
    factor = problem.scale_factor
    d_model = problem.x.shape[2]
    replace = dataclasses.replace

    def traced(changed: Problem, slip: Slip = RIGHT) -> dict[str, np.ndarray]:
        try:
            arrays = {name: step.array for name, step in full_attention(changed, slip=slip).steps.items()}
        except ProblemError:
            return {}  # the slip cannot even run for this problem's shapes, or overflows
        # without scale or mask a variant has no logits step: its logits are its scores
        arrays.setdefault("logits", arrays["scores"])
        return arrays

    yield MISTAKES["transposed_weighted_sum"], traced(problem, Slip(weights_transposed=True))
    yield MISTAKES["softmax_over_queries"], traced(problem, Slip(softmax_axis=-2))
    yield MISTAKES["scores_transposed"], traced(problem, Slip(scores_transposed=True))
    if problem.heads > 1:
        yield MISTAKES["heads_interleaved"], traced(problem, Slip(interleaved_heads=True))
    if factor != 1.0:
        yield MISTAKES["no_scaling"], traced(replace(problem, scale="none"))
        yield MISTAKES["scaled_twice"], traced(replace(problem, scale=factor * factor))
    if problem.scale == "sqrt" and d_model != problem.head_dim:
        yield MISTAKES["sqrt_d_model"], traced(replace(problem, scale=1.0 / math.sqrt(d_model)))
    positions = problem.query_positions, problem.key_positions
    if problem.visibility is not None:
        inverted = visibility(~problem.mask, "array", None, None, None, *positions)
        yield MISTAKES["mask_inverted"], traced(replace(problem, visibility=inverted))
        yield MISTAKES["mask_ignored"], traced(replace(problem, visibility=None, mask_rule=None))
    else:
        causal = visibility(None, "causal", None, None, None, *positions)
        yield MISTAKES["causal_not_asked"], traced(replace(problem, visibility=causal, mask_rule="causal"))
    transposed = _transposed_weights(problem)
    if transposed is not None:
        yield MISTAKES["weights_not_transposed"], traced(transposed)
    if problem.w_out is not None:
        yield MISTAKES["no_output_projection"], _without_projection(traced(replace(problem, w_out=None, b_out=None)))
    for name in ("b_query", "b_key", "b_value", "b_out"):
        if getattr(problem, name) is not None:
            yield _bias_mistake(name), traced(replace(problem, **{name: None}))


def _without_projection(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    # only the output differs: the earlier steps are the right ones
    return {"output": arrays["output"]} if "output" in arrays else {}


def _transposed_weights(problem: Problem) -> Problem | None:
    """The problem with every weight transposed, when every weight is square (else x·Wᵀ would not fit)."""
    weights = {name: getattr(problem, name) for name in ("w_query", "w_key", "w_value", "w_out")}
    present = {name: weight for name, weight in weights.items() if weight is not None}
    if any(weight.shape[0] != weight.shape[1] for weight in present.values()):
        return None
    if all(np.array_equal(weight, weight.T) for weight in present.values()):
        return None  # symmetric weights: the mistake would change nothing
    return dataclasses.replace(problem, **{name: weight.T.copy() for name, weight in present.items()})
