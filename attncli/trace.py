"""The result of a computation: named steps in pipeline order, and what they mean."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from attncli.errors import ProblemError
from attncli.keys import STEP_NAMES


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

    def select(self, names: Iterable[str] | None) -> list[Step]:
        """The named steps in pipeline order (all of them for None or empty).

        Raises ProblemError listing the steps this trace has when a name is not one of them.
        """
        names = list(names or ())
        if not names:
            return list(self.steps.values())
        for name in names:
            if name not in self.steps:
                known = ", ".join(self.steps)
                reason = (
                    "this problem has no such step"
                    if name in STEP_NAMES
                    else "there is no such step"
                )
                raise ProblemError(f"step {name!r}: {reason}; the steps are {known}")
        return [step for name, step in self.steps.items() if name in names]
