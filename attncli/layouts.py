"""The layouts a user's array for one step may be in, and the one its shape says: a user's code
may keep Q as (batch, seq, heads, head_dim), PyTorch's as (batch·heads, seq, head_dim), the
output as (seq, batch, E). Every candidate is derived from the step's own axes (as a Trace names
them) by a few rules, never listed per step:

- the sequence before the heads: (…, heads, q_len, …) read as (…, q_len, heads, …);
- then the heads merged with the width after them: (batch, q_len, heads·head_dim);
- the batch and the heads merged: (batch·heads, q_len, …), as PyTorch views them;
- the sequence first: (q_len, batch, …), PyTorch's batch_first=False (and its reverse for a
  trace given so).

A shape that several layouts fit, arranging the numbers differently (seq == heads, say), is read
in attncli's own layout, and the others are named. Pure numpy.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from attncli.errors import ProblemError
from attncli.stages import HEAD_AXES

SEQUENCE_AXES = frozenset({"q_len", "k_len"})
WIDTH_AXES = frozenset({"head_dim", "head_dim_v"})

# A layout: the step's axes (by their index in the step) in the user's order, axes merged into one
# of the user's axes grouped: ((0,), (2,), (1, 3)) is (batch, q_len, heads·head_dim) of (batch, heads, q_len, head_dim).
Groups = tuple[tuple[int, ...], ...]


class Layout(NamedTuple):
    """The layout a user's array was read in: its axes (``read_as``, e.g. ``(batch, q_len, heads,
    head_dim)``), attncli's own layout of the step (``attncli``), and the other layouts its shape
    fits with its numbers arranged otherwise (``also``: its shape was ambiguous, and attncli's was chosen)."""

    read_as: str
    attncli: str
    also: tuple[str, ...] = ()

    @property
    def own(self) -> bool:
        """Whether the array was read in attncli's own layout."""
        return self.read_as == self.attncli

    def as_dict(self) -> dict[str, object]:
        return {"read_as": self.read_as, "attncli": self.attncli, "also_fits": list(self.also)}


class Reading(NamedTuple):
    """A user's ``array`` in the step's own layout, and the ``layout`` it was given in."""

    array: np.ndarray
    layout: Layout


def layouts(axes: tuple[str, ...]) -> list[Groups]:
    """The layouts a step of these ``axes`` may be given in: its own first, then those the rules
    derive (see the module), each once."""
    own: Groups = tuple((index,) for index in range(len(axes)))
    heads_after = _swapped(own, axes, HEAD_AXES, SEQUENCE_AXES)  # (batch, q_len, heads, head_dim)
    heads_in_width = heads_after and _merged(heads_after, axes, HEAD_AXES, WIDTH_AXES, last=True)  # (…, heads·head_dim)
    found = [own, heads_after, heads_in_width,
             _merged(own, axes, {"batch"}, HEAD_AXES)]  # (batch·heads, q_len, head_dim)
    # each with the sequence first (a trace given sequence first: with the batch first)
    found += [_swapped(groups, axes, {"batch"}, SEQUENCE_AXES) or _swapped(groups, axes, SEQUENCE_AXES, {"batch"})
              for groups in found if groups is not None]
    unique: list[Groups] = []
    for groups in found:
        if groups is not None and groups not in unique:
            unique.append(groups)
    return unique


def layout_name(groups: Groups, axes: tuple[str, ...]) -> str:
    """``(batch, q_len, heads·head_dim)``: the user's axes, merged ones joined by ·."""
    return "(" + ", ".join("·".join(axes[index] for index in group) for group in groups) + ")"


def layout_shape(groups: Groups, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape of a step of ``shape`` given in the layout ``groups``."""
    return tuple(math.prod(shape[index] for index in group) for group in groups)


def read_layout(yours: np.ndarray, shape: tuple[int, ...], axes: tuple[str, ...], step: str) -> Reading:
    """``yours`` (any shape) in the step's ``shape`` (over ``axes``), read in the first layout its
    shape fits: attncli's own when it fits, else the first the rules derive. Axes of size 1 that
    either side lacks are set aside (a (1, 3, 3) of an unbatched 3×3 is the same numbers).
    Raises ProblemError naming the step's shape (and the other layouts) when none fits."""
    candidates = layouts(axes)
    fitting = [(groups, fitted) for groups in candidates
               if (fitted := _fitted(yours.shape, layout_shape(groups, shape))) is not None]
    if not fitting:
        raise ProblemError(_no_layout(yours.shape, shape, axes, candidates, step), {step: shape})
    groups, fitted = fitting[0]
    array = _to_own(yours.reshape(fitted), groups, shape)
    also: list[str] = []
    if len(fitting) > 1:  # the same shape, its cells placed otherwise? (an arange shows where each goes)
        cells = np.arange(yours.size).reshape(yours.shape)
        placements = [_to_own(cells.reshape(fitted), groups, shape)]
        for other, other_fitted in fitting[1:]:
            placed = _to_own(cells.reshape(other_fitted), other, shape)
            if not any(np.array_equal(placed, seen) for seen in placements):
                placements.append(placed)
                also.append(layout_name(other, axes))
    layout = Layout(layout_name(groups, axes), layout_name(candidates[0], axes), tuple(also))
    return Reading(array, layout)


def _fitted(given: tuple[int, ...], wanted: tuple[int, ...]) -> tuple[int, ...] | None:
    """``wanted`` when ``given`` is it, size-1 axes set aside; else None."""
    if given == wanted or [n for n in given if n != 1] == [n for n in wanted if n != 1]:
        return wanted
    return None


def _to_own(array: np.ndarray, groups: Groups, shape: tuple[int, ...]) -> np.ndarray:
    """An array in layout ``groups`` rearranged into the step's own ``shape``: merged axes split
    (row-major, as reshape merged them), then the axes put in the step's order."""
    order = [index for group in groups for index in group]
    split = array.reshape([shape[index] for index in order])
    return np.ascontiguousarray(split.transpose(np.argsort(order)))


def _swapped(groups: Groups, axes: tuple[str, ...], first: frozenset[str] | set[str],
             then: frozenset[str] | set[str]) -> Groups | None:
    """``groups`` with a single axis of ``first`` and the single axis of ``then`` right after it
    swapped, or None when there is no such pair."""
    at = _pair_at(groups, axes, first, then)
    return None if at is None else (*groups[:at], groups[at + 1], groups[at], *groups[at + 2:])


def _merged(groups: Groups, axes: tuple[str, ...], first: frozenset[str] | set[str],
            then: frozenset[str] | set[str], last: bool = False) -> Groups | None:
    """``groups`` with a single axis of ``first`` merged with the single axis of ``then`` right
    after it (with ``last``: only when that is the last axis), or None."""
    at = _pair_at(groups, axes, first, then, last)
    return None if at is None else (*groups[:at], groups[at] + groups[at + 1], *groups[at + 2:])


def _pair_at(groups: Groups, axes: tuple[str, ...], first: frozenset[str] | set[str],
             then: frozenset[str] | set[str], last: bool = False) -> int | None:
    """Where a single axis of ``first`` is followed by a single axis of ``then`` (with ``last``: as
    the last two groups), or None."""
    for at in range(len(groups) - 1):
        one, two = groups[at], groups[at + 1]
        if last and at + 2 != len(groups):
            continue
        if len(one) == len(two) == 1 and axes[one[0]] in first and axes[two[0]] in then:
            return at
    return None


def _no_layout(given: tuple[int, ...], shape: tuple[int, ...], axes: tuple[str, ...], candidates: list[Groups],
               step: str) -> str:
    message = f"has shape {_times(given)} but {step} is {_times(shape)}"
    others = [f"{_times(layout_shape(groups, shape))} {layout_name(groups, axes)}" for groups in candidates[1:]]
    if others:
        message += f" {layout_name(candidates[0], axes)}; nor does it fit another layout: {', '.join(others)}"
    return message


def _times(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))
