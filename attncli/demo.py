"""The classic worked example of self-attention, and the words that walk through it.

Pure data and numpy: the view decides how it looks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from attncli.flow import Slip
from attncli.pipeline import full_attention
from attncli.problem import Problem
from attncli.trace import Step, Trace

# Three tokens of width 4 and 4×3 weights, applied as x·W; unscaled, as the
# well-known walk-through computes it. samples/classic.json holds the same document.
CLASSIC_DOCUMENT = {
    "about": "The classic worked example of single-head self-attention: three tokens of width 4, "
    "weights 4x3 applied as x @ W, scores left unscaled to match the well-known walk-through.",
    "x": [[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]],
    "w_query": [[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1]],
    "w_key": [[0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]],
    "w_value": [[0, 2, 0], [0, 3, 0], [1, 0, 3], [1, 1, 0]],
    "scale": "none",
}


@dataclass(frozen=True)
class Matrix:
    """One matrix to show: ``name`` (as in the formulas), ``array`` (rows, columns),
    and what its rows and columns are (``row_label``, ``column_label``)."""

    name: str
    array: np.ndarray
    row_label: str
    column_label: str


class Note(NamedTuple):
    """One line about a variant, with the problem's own numbers: its ``text`` and those numbers
    as ``data`` (for --format json)."""

    text: str
    data: dict[str, Any]


class MaskGrid(NamedTuple):
    """The mask drawn as characters: ``codes`` (tables, q_len, k_len), each cell an index into
    ``marks`` (0: may attend; others: the first rule that hides the key), one table per batch item
    and head the mask tells apart, named by ``titles`` ("" when one table holds for all);
    ``legend`` the (mark, words, cells) of each mark the grid uses."""

    codes: np.ndarray
    titles: tuple[str, ...]
    marks: str
    legend: tuple[tuple[str, str, int], ...]


@dataclass(frozen=True)
class Section:
    """One step of the walk-through: a heading, one line of explanation, its matrices in rows.

    A walk through a user's problem (attncli.walkthrough) gives a step its ``formula`` with the
    real sizes, its ``steps`` (a Trace's, shown as compute shows them: per batch item and head,
    large ones elided), ``notes`` about the variants it applies and the ``grid`` of the mask."""

    heading: str
    explanation: str
    rows: tuple[tuple[Matrix, ...], ...] = ()  # matrices shown side by side, row by row
    heatmap: bool = False
    formula: str = ""
    steps: tuple[Step, ...] = ()
    notes: tuple[Note, ...] = ()
    grid: MaskGrid | None = None


def walkthrough(problem: Problem, trace: Trace) -> tuple[list[Section], str]:
    """The five sections of the classic walk-through and the closing warning.

    Takes the classic Problem and its Trace (single head, no batch); returns
    sections for inputs, linear maps, scores, softmax and weighted sum.
    """
    arrays = {name: step.array for name, step in trace.steps.items()}
    sections = [
        Section(
            "1. Inputs",
            "x holds one row per token (3 tokens of width 4); W_Q, W_K and W_V are the learned weights (4×3).",
            (
                (Matrix("x", problem.x[0], "token", "dim"),),
                (
                    Matrix("W_Q", problem.w_query, "in", "out"),
                    Matrix("W_K", problem.w_key, "in", "out"),
                    Matrix("W_V", problem.w_value, "in", "out"),
                ),
            ),
        ),
        Section(
            "2. Linear maps",
            "Q = x·W_Q, K = x·W_K, V = x·W_V: each token becomes a query, a key and a value.",
            ((
                Matrix("Q", arrays["q"], "token", "dim"),
                Matrix("K", arrays["k"], "token", "dim"),
                Matrix("V", arrays["v"], "token", "dim"),
            ),),
        ),
        Section(
            "3. Scores",
            "scores = Q·Kᵀ: row i, column j is how well query i matches key j "
            "(left unscaled here, as the classic walk-through does; attncli's default divides by √head_dim).",
            ((Matrix("scores", arrays["scores"], "query", "key"),),),
        ),
        Section(
            "4. Softmax",
            "softmax over each row (over the keys): e^score / Σ e^score, so each query's weights sum to 1.",
            ((Matrix("softmax", arrays["softmax"], "query", "key"),),),
            heatmap=True,
        ),
        Section(
            "5. Weighted sum",
            "output = softmax·V: output row i is the sum over keys j of weight[i, j] × V row j.",
            ((Matrix("output", arrays["output"], "token", "dim"),),),
        ),
    ]
    return sections, mistake_warning(problem, arrays["output"])


def mistake_warning(problem: Problem, output: np.ndarray) -> str:
    """The closing warning: what summing over the query axis (softmaxᵀ·V) would print instead of
    ``output`` (q_len, dim): the stages run with that slip."""
    wrong = full_attention(problem, slip=Slip(weights_transposed=True)).steps["output"].array
    return (
        "Beware: published code for this very example sums the weighted values over the query "
        "axis, which computes softmaxᵀ·V; its first row would read "
        f"{_row(wrong[0])} instead of {_row(output[0])}. Weights are summed over the keys."
    )


def _row(values: np.ndarray) -> str:
    return ", ".join(f"{value:.4f}" for value in values)
