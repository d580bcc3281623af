"""check's tolerance for numbers a framework computed in float32, float16 or bfloat16 (``check
--dtype``): how far from the exact (float64) numbers that dtype's rounding may take them, on this
problem, measured rather than assumed.

The stages are run ``RUNS`` times in the dtype's emulation (precision.py: inputs and every stage's
result rounded to the dtype) with stochastic rounding, each run with its own fixed seed, so each is
one way rounding could have gone. Their differences from the exact numbers give each cell's spread
(the root mean square over the runs) and the spread of the whole array's norm. A cell's allowed
difference is ``CELL_FACTOR`` × √(its spread² + the mean cell spread² + (u·|exact|)²): the mean term
keeps a cell whose few runs happened to agree from getting a bound of nothing, and u·|exact| is one
rounding of the result itself. The array's difference must also stay within ``NORM_FACTOR`` × its
norm's spread. Pure numpy.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from attncli.pipeline import full_attention
from attncli.precision import UNIT_ROUNDOFF
from attncli.problem import Problem

RUNS = 8
# How many spreads a difference may be: a framework rounds in its own order (fused kernels, other
# accumulation orders), which the emulation's spread measures only in kind. Chosen on PyTorch's
# float32, float16 and bfloat16 outputs (benchmarks/precision.py).
CELL_FACTOR = 5.0
NORM_FACTOR = 3.0
SEED = 13


class Spread(NamedTuple):
    """The tolerance rounding to ``dtype`` explains for one step of one problem: ``cells`` (each
    cell's spread, the mean spread blended in), ``norm`` (the spread of the norm of the whole
    array's difference), from ``runs`` stochastically rounded runs."""

    dtype: str
    runs: int
    cells: np.ndarray
    norm: float

    @property
    def unit_roundoff(self) -> float:
        return UNIT_ROUNDOFF[self.dtype]

    def bound(self, reference: np.ndarray, emulated: np.ndarray | None = None) -> np.ndarray:
        """The difference each cell may have from ``reference`` (the exact numbers, or a mistake's);
        for a mistake's, its ``emulated`` numbers (computed once in the dtype) add their own
        rounding, each cell's and the mean, to the right computation's spread."""
        finite = np.where(np.isfinite(reference), reference, 0.0)
        squares = np.square(self.cells) + np.square(self.unit_roundoff * finite)
        if emulated is not None and emulated.shape == reference.shape:
            own = _finite_differences(emulated, reference)
            squares += np.square(own) + (float(np.mean(np.square(own))) if own.size else 0.0)
        return CELL_FACTOR * np.sqrt(squares)

    def norm_bound(self) -> float:
        return NORM_FACTOR * self.norm

    def as_dict(self, cell_share: float, norm_share: float, norm_difference: float) -> dict[str, Any]:
        """The model's numbers, for check's JSON."""
        spreads = self.cells[np.isfinite(self.cells)]
        return {
            "model": "stochastic rounding", "dtype": self.dtype, "runs": self.runs, "seed": SEED,
            "unit_roundoff": self.unit_roundoff, "cell_factor": CELL_FACTOR, "norm_factor": NORM_FACTOR,
            "cell_spread": {"median": float(np.median(spreads)) if spreads.size else 0.0,
                            "largest": float(spreads.max()) if spreads.size else 0.0},
            "norm_spread": self.norm, "norm_difference": norm_difference,
            "cell_share": cell_share, "norm_share": norm_share,
        }


def differences(values: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """values − exact as float64, 0 where both are −∞ (a masked logit) or NaN (a query that sees no key)."""
    with np.errstate(invalid="ignore"):
        difference = np.asarray(values, dtype=np.float64) - exact
    same = (np.isneginf(exact) & np.isneginf(values)) | (np.isnan(exact) & np.isnan(values))
    difference[same] = 0.0
    return difference


def rounding_spread(problem: Problem, step: str, exact: np.ndarray, dtype: str) -> Spread:
    """How far rounding to ``dtype`` takes ``step`` of ``problem`` (float64) from ``exact`` (its
    float64 numbers, in the Trace's shape). A ProblemError when the step overflows the dtype."""
    squares = np.zeros(exact.shape)
    for run in range(RUNS):
        emulated = problem.astype(dtype, np.random.default_rng([SEED, run]))
        squares += np.square(_finite_differences(full_attention(emulated, (step,)).steps[step].array, exact))
    cells = np.sqrt(squares / RUNS)
    mean = math.sqrt(float(np.mean(np.square(cells)))) if cells.size else 0.0
    return Spread(dtype, RUNS, np.sqrt(np.square(cells) + mean * mean), math.sqrt(float(squares.sum()) / RUNS))


def _finite_differences(values: np.ndarray, exact: np.ndarray) -> np.ndarray:
    # a masked cell may be −∞ in the one and very low in the other: it adds nothing to a spread
    difference = differences(values, exact)
    difference[~np.isfinite(difference)] = 0.0
    return difference
