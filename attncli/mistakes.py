"""Check a user's numbers for one step against attncli's, and name the common mistake they show.

Each known mistake is a deliberately wrong variant of the computation (wrong_runs.py; its words
in known_mistakes.py); when the user's numbers match a variant's (and not the right answer), that
mistake is the likely cause; when no single one does, two made at once are tried. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from attncli.errors import ProblemError
from attncli.keys import DEFAULT_ATOL, DEFAULT_RTOL
from attncli.known_mistakes import MISTAKES, Mistake
from attncli.layouts import Layout, Reading, read_layout
from attncli.problem import Problem
from attncli.tolerance import Spread, differences
from attncli.trace import Trace
from attncli.wrong_runs import Wrong, run, variants, wrongs

__all__ = ["MISTAKES", "Mistake", "NotFinite", "StepsVerdict", "Verdict", "check_step", "check_steps", "variants"]

# A user's logit this low where attncli has −∞ is a mask too (masked_fill(-1e9) is common): e^-1e4 is 0.
MASKED_ENOUGH = -1e4
# Two mistakes at once are tried only when no single one matches, and for at most this many score
# cells summed over the pairs run (a few seconds at most): a small problem tries every pair.
PAIR_CELLS = 1 << 22


class NotFinite(NamedTuple):
    """Where the user's numbers are NaN or ±∞ but attncli's are finite: the first such cell
    (``index``), the two values there and how many ``cells`` are so."""

    index: tuple[int, ...]
    yours: float
    attncli: float
    cells: int

    def as_dict(self) -> dict[str, Any]:
        return {"index": list(self.index), "yours": str(self.yours), "attncli": self.attncli, "cells": self.cells}


@dataclass(frozen=True)
class Verdict:
    """How the user's array for ``step`` compares with attncli's.

    ``agree``: every cell within tolerance; ``max_error``: the largest |yours − attncli| of the
    cells where yours is a number (``not_finite`` says where yours is NaN or ±∞ and attncli's is
    finite, or is None); ``worst``: that cell's index; ``yours``/``attncli``: the two values there;
    ``wrong_cells``: how many cells are out of tolerance (those not finite included); ``mistakes``:
    the known mistakes the numbers match (more than one when, for these inputs, they give the same
    numbers), the closest and most common first; a pair of mistakes made at once has ``parts``;
    ``layout``: how the user's array was read (attncli.layouts: its axes, e.g. (batch, q_len,
    heads, head_dim), and the other layouts its shape fits).
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
    not_finite: NotFinite | None = None
    layout: Layout | None = None
    # check --dtype: the tolerance rounding to a dtype explains (tolerance.py), and the share of it
    # the largest difference of a cell uses (and the norm of the difference of its own bound)
    spread: Spread | None = None
    cell_share: float = 0.0
    norm_share: float = 0.0
    norm_difference: float = 0.0

    @property
    def share(self) -> float:
        """The largest share of the tolerance rounding explains used: a cell's, or the norm's."""
        return max(self.cell_share, self.norm_share)

    def as_dict(self) -> dict[str, Any]:
        """The verdict as JSON-ready data; a value that is not finite is a string ("-inf", "nan")."""
        data = {
            "step": self.step,
            "agree": self.agree,
            "max_error": _number(self.max_error),
            "worst": {"index": list(self.worst), "yours": _number(self.yours), "attncli": _number(self.attncli)},
            "not_finite": None if self.not_finite is None else self.not_finite.as_dict(),
            "wrong_cells": self.wrong_cells,
            "cells": self.cells,
            # with check --dtype the tolerance is the rounding's (below), not atol/rtol
            "atol": self.atol if self.spread is None else None,
            "rtol": self.rtol if self.spread is None else None,
            "mistakes": [{"name": mistake.name, "means": mistake.means, "fix": mistake.fix,
                          "parts": list(mistake.parts)} for mistake in self.mistakes],
            "layout": None if self.layout is None else self.layout.as_dict(),
        }
        if self.spread is not None:
            data["tolerance"] = self.spread.as_dict(_number(self.cell_share), _number(self.norm_share),
                                                    _number(self.norm_difference))
        return data


def check_step(
    problem: Problem, trace: Trace, step: str, yours: np.ndarray,
    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, weight_names: tuple[str, ...] = (),
    name_mistakes: bool = True, spread: Spread | None = None,
) -> Verdict:
    """Compare ``yours`` with the trace's ``step`` (in attncli's layout or another its shape says,
    see attncli.layouts) and, when they differ and ``name_mistakes``, try the known mistakes
    (``weight_names``: the names the document gave its weights, PyTorch's or attncli's, which say
    how they should be applied). The tolerance is ``atol`` + ``rtol``·|attncli|, or with ``spread``
    what a dtype's rounding explains (then also for the norm of the difference). Raises
    ProblemError when no layout fits the shape."""
    expected = trace.steps[step].array
    reading = _fit(yours, trace.steps[step].axes, expected.shape, step, sinks=problem.sinks is not None)
    yours = reading.array
    with np.errstate(invalid="ignore"):  # −∞ − −∞, a masked logit in both, is set to 0 below
        difference = np.abs(yours - expected)
    # a masked logit is −∞ in both (or very low in yours): equal, not NaN
    difference[(yours <= MASKED_ENOUGH) & np.isneginf(expected)] = 0.0
    # a query that sees no key has NaN outputs when masked_rows is "nan": NaN (or JSON's null) in yours too
    difference[np.isnan(expected) & (np.isnan(yours) | np.isneginf(yours))] = 0.0
    difference[np.isnan(difference)] = np.inf
    def bound(reference: np.ndarray, emulated: np.ndarray | None = None) -> np.ndarray:
        return atol + rtol * np.abs(np.where(np.isfinite(reference), reference, 0.0)) if spread is None \
            else spread.bound(reference, emulated)

    allowed = bound(expected)
    wrong = difference > allowed
    cell_share = norm_share = norm_difference = 0.0
    if spread is not None:
        cell_share = float(np.max(difference / allowed, initial=0.0))
        finite = differences(yours, expected)
        finite[difference == 0.0] = 0.0  # a masked logit, very low in yours
        norm_difference = float(np.sqrt(np.sum(np.square(finite))))
        norm_share = norm_difference / spread.norm_bound() if spread.norm_bound() > 0 else (
            0.0 if norm_difference == 0 else math.inf)
    # yours NaN or ±∞ where attncli's is a number: said as such, not as a difference of ∞
    broken = ~np.isfinite(yours) & np.isfinite(expected)
    not_finite = None
    if broken.any():
        first = tuple(int(i) for i in np.argwhere(broken)[0])
        not_finite = NotFinite(first, float(yours[first]), float(expected[first]), int(broken.sum()))
        difference[broken] = 0.0
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(difference)), difference.shape))
    agree = not wrong.any() and norm_share <= 1.0
    mistakes = () if agree or not name_mistakes else _matching_mistakes(
        problem, step, yours, bound, weight_names, None if spread is None else spread.dtype)
    return Verdict(
        step=step, agree=agree, max_error=float(difference.max()), worst=worst,
        yours=float(yours[worst]), attncli=float(expected[worst]),
        wrong_cells=int(wrong.sum()), cells=int(wrong.size), atol=atol, rtol=rtol, mistakes=mistakes,
        not_finite=not_finite, layout=reading.layout, spread=spread, cell_share=cell_share, norm_share=norm_share,
        norm_difference=norm_difference,
    )


def _fit(yours: np.ndarray, axes: tuple[str, ...], shape: tuple[int, ...], step: str, sinks: bool = False) -> Reading:
    """``yours`` read into the step's ``shape`` over ``axes`` (attncli.layouts: axes of size 1 the
    step does not have are dropped, a user's (1, 3, 3) for an unbatched 3×3 is the same numbers;
    another layout its shape says is rearranged). With ``sinks``, weights with one column too many
    are said to hold the sink's."""
    yours = np.asarray(yours, dtype=np.float64)
    if sinks and step == "softmax" and yours.shape[:-1] == shape[:-1] and yours.shape[-1] == shape[-1] + 1:
        raise ProblemError(f"has shape {'×'.join(map(str, yours.shape))} but {step} is {'×'.join(map(str, shape))}; "
                           "one column more than the keys: the sink's weight kept? Drop its column (probs[..., :-1])",
                           {step: shape})
    return read_layout(yours, shape, axes, step)


@dataclass(frozen=True)
class StepsVerdict:
    """How a user's numbers for several steps compare with attncli's: a Verdict per step, in
    pipeline order (``verdicts``), and the first step that differs (``first_divergence``, None when
    every step agrees), the place to look. Only that step's verdict names mistakes: the steps
    after it differ because it does."""

    verdicts: tuple[Verdict, ...]
    first_divergence: str | None

    @property
    def agree(self) -> bool:
        return self.first_divergence is None

    def as_dict(self) -> dict[str, Any]:
        return {"agree": self.agree, "first_divergence": self.first_divergence,
                "verdicts": [verdict.as_dict() for verdict in self.verdicts]}


def check_steps(
    problem: Problem, trace: Trace, yours: dict[str, np.ndarray],
    atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, weight_names: tuple[str, ...] = (),
    spreads: dict[str, Spread] | None = None,
) -> StepsVerdict:
    """Compare each of ``yours`` (step name -> the user's array, each in any layout check_step
    reads) with the trace's step of that name, in the trace's order (with ``spreads``, each step
    within what its dtype's rounding explains); the first that differs is checked for the known
    mistakes. Every step named must be in the trace."""
    spreads = spreads or {}
    verdicts, first = [], None
    for name in (name for name in trace.steps if name in yours):
        # mistakes are looked for (only where the numbers differ) until a step differs: the later
        # ones differ because it does
        verdict = check_step(problem, trace, name, yours[name], atol, rtol, weight_names,
                             name_mistakes=first is None, spread=spreads.get(name))
        verdicts.append(verdict)
        first = first or (None if verdict.agree else name)
    return StepsVerdict(tuple(verdicts), first)


def _matching_mistakes(
    problem: Problem, step: str, yours: np.ndarray, bound: Callable[..., np.ndarray],
    weight_names: tuple[str, ...], dtype: str | None = None,
) -> tuple[Mistake, ...]:
    """The known mistakes whose numbers for ``step`` are ``yours`` within tolerance: those that
    give the closest numbers (tied: equal to rounding) first, in the catalogue's order; when no
    single one does, pairs of them made at once. With a ``dtype`` (check --dtype) each mistake is
    also run once in that dtype's emulation: its own rounding widens its tolerance (a mistake that
    makes larger logits is rounded more than the right computation)."""

    def distance(wrong: Wrong) -> float | None:
        numbers = run(problem, wrong).get(step)
        emulated = None if numbers is None or dtype is None else run(problem, wrong, dtype).get(step)
        return _distance(yours, numbers, lambda reference: bound(reference, emulated))

    singles = wrongs(problem, weight_names)
    found = [(found, wrong.mistake) for wrong in singles if (found := distance(wrong)) is not None]
    if not found:
        cells = problem.score_cells
        cells *= 1 if dtype is None else 2
        pairs = (joined for index, first in enumerate(singles) for second in singles[index + 1:]
                 if (joined := first.joined(second)) is not None)
        for tried, pair in enumerate(pairs):
            if (tried + 1) * cells > PAIR_CELLS:
                break
            share = distance(pair)
            if share is not None:
                found.append((share, pair.mistake))
    if not found:
        return ()
    # equal to rounding: far below the tolerance, and within a few times the closest
    tied = 4 * min(distance for distance, _ in found) + 1e-6
    ranked = sorted(range(len(found)), key=lambda index: (found[index][0] > tied, index))
    return tuple(found[index][1] for index in ranked)


def _distance(yours: np.ndarray, wrong: np.ndarray | None, bound: Callable[[np.ndarray], np.ndarray]
              ) -> float | None:
    """How far ``yours`` is from a mistake's numbers, as the largest share of the tolerance any
    cell uses (0: the same numbers; at most 1: a match), or None when they do not match."""
    if wrong is None or wrong.shape != yours.shape:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.abs(yours - wrong) / bound(wrong)
    share[yours == wrong] = 0.0  # ∞ in both, or any equal cell with no tolerance at all
    # a masked logit: −∞ in the mistake's, very low in yours
    same = (yours <= MASKED_ENOUGH) & np.isneginf(wrong)
    # a row with every key masked: attncli's variants give 0 there, naive code (and PyTorch's
    # nn.MultiheadAttention) NaN; both are the same mistake; NaN in both is the same number
    same |= np.isnan(yours) & ((wrong == 0) | np.isnan(wrong))
    share[same] = 0.0
    share[np.isnan(share)] = np.inf
    largest = float(share.max()) if share.size else 0.0
    return largest if largest <= 1.0 else None


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
