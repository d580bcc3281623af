"""The result of a computation: named steps in pipeline order, and what they mean."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attncli.errors import ProblemError
from attncli.keys import STEP_NAMES

# Axis names of every step, before the axes a problem does not have are dropped.
STEP_AXES = dict(zip(STEP_NAMES, (
    ("batch", "heads", "q_len", "head_dim"),  # q
    ("batch", "heads", "k_len", "head_dim"),  # k
    ("batch", "heads", "k_len", "head_dim_v"),  # v
    ("batch", "heads", "q_len", "k_len"),  # scores
    ("batch", "heads", "q_len", "k_len"),  # logits
    ("batch", "heads", "q_len", "k_len"),  # softmax
    ("batch", "q_len", "heads*head_dim_v"),  # concat
    ("batch", "q_len", "d_out"),  # output
), strict=True))


@functools.cache
def present_axes(name: str, batched: bool, heads: int) -> tuple[str, ...]:
    """The axes of step ``name`` as a Trace shows them: no batch axis when x had none, no heads
    axis for a single head."""
    return tuple(
        axis
        for axis in STEP_AXES[name]
        if not (axis == "batch" and not batched) and not (axis == "heads" and heads == 1)
    )


def present_shape(full_shape: tuple[int, ...], name: str, batched: bool, heads: int) -> tuple[int, ...]:
    """``full_shape`` (one size per axis of STEP_AXES[name]) without the axes the Trace drops."""
    axes = present_axes(name, batched, heads)
    return tuple(size for axis, size in zip(STEP_AXES[name], full_shape, strict=True) if axis in axes)


@dataclass(frozen=True)
class Step:
    """One intermediate: its ``name``, the ``formula`` that made it, the ``array``
    and the name of each of its ``axes`` (as many as ``array.ndim``)."""

    name: str
    formula: str
    array: np.ndarray
    axes: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape


@dataclass(frozen=True)
class Trace:
    """Every step of one computation.

    ``steps`` maps step names to Steps in pipeline order; ``meta`` holds heads,
    head_dim, head_dim_v, the scale rule and factor, the mask rule and whether
    x had a batch axis; ``warnings`` are sentences for the user (e.g. a query
    whose every key is masked).
    """

    steps: dict[str, Step]
    meta: dict[str, Any]
    warnings: tuple[str, ...] = field(default=())
    # every step this problem has, computed or not (a trace of chosen steps holds fewer)
    available: tuple[str, ...] = field(default=())

    def select(self, names: Iterable[str] | None) -> list[Step]:
        """The named steps in pipeline order (all of them for None or empty).

        Raises ProblemError listing the steps this trace has when a name is not one of them.
        """
        names = list(names or ())
        if not names:
            return list(self.steps.values())
        for name in names:
            if name not in self.steps:
                known = ", ".join(self.available or self.steps)
                reason = (
                    "this problem has no such step"
                    if name in STEP_NAMES
                    else "there is no such step"
                )
                raise ProblemError(f"step {name!r}: {reason}; the steps are {known}")
        return [step for name, step in self.steps.items() if name in names]
