"""The sizes and switches that fix every step's shape and formula, with or without the numbers.

A real Problem has them (``sizes_of``); ``attncli shapes --seq-len … --d-model …`` has only the
sizes, and then the formulas are shown in their general form. Pure Python: no numpy needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attncli.problem import Problem


@dataclass(frozen=True)
class Sizes:
    """The sizes that fix every shape. ``batch`` None: x has no batch axis; ``context_len`` None:
    self-attention. ``scale`` None: only the sizes are known (no problem), so formulas are general;
    otherwise the problem's scale rule ("sqrt", "none" or a number) with its ``factor``, and
    ``biases`` names the biases it has."""

    seq_len: int
    d_model: int
    heads: int = 1
    batch: int | None = None
    context_len: int | None = None
    d_context: int | None = None
    head_dim: int | None = None
    head_dim_v: int | None = None
    d_out: int | None = None
    scaled: bool = True
    masked: bool = False
    scale: str | float | None = None
    factor: float = 1.0
    biases: frozenset[str] = frozenset()

    @property
    def exact(self) -> bool:
        """Whether these are a real problem's sizes (formulas name its scale and biases)."""
        return self.scale is not None

    @property
    def batched(self) -> bool:
        return self.batch is not None

    @property
    def source(self) -> str:
        """What keys and values are computed from: ``context`` (cross-attention) or ``x``."""
        return "context" if self.context_len else "x"

    @property
    def k_len(self) -> int:
        return self.context_len or self.seq_len

    @property
    def d_source(self) -> int:
        return self.d_context or self.d_model

    @property
    def dim(self) -> int:
        """One head's width of queries and keys."""
        return self.head_dim or self.d_model // self.heads

    @property
    def dim_v(self) -> int:
        """One head's width of values."""
        return self.head_dim_v or self.dim

    @property
    def width_v(self) -> int:
        """The heads' values side by side: heads × head_dim_v."""
        return self.heads * self.dim_v

    def axis_sizes(self) -> dict[str, int]:
        """The size of every axis a step can have (batch 1 when x has none)."""
        return {
            "batch": self.batch or 1, "heads": self.heads, "q_len": self.seq_len, "k_len": self.k_len,
            "head_dim": self.dim, "head_dim_v": self.dim_v, "heads*head_dim_v": self.width_v,
            "d_out": self.d_out or self.width_v,
        }


def sizes_of(problem: Problem) -> Sizes:
    """The Sizes (and scale, mask and biases) of a validated Problem."""
    return Sizes(
        seq_len=problem.x.shape[1],
        d_model=problem.x.shape[2],
        heads=problem.heads,
        batch=problem.x.shape[0] if problem.batched else None,
        context_len=problem.context.shape[1] if problem.cross else None,
        d_context=problem.context.shape[2] if problem.cross else None,
        head_dim=problem.head_dim,
        head_dim_v=problem.head_dim_v,
        d_out=problem.w_out.shape[1] if problem.w_out is not None else None,
        scaled=problem.scale_factor != 1.0,
        masked=problem.mask is not None,
        scale=problem.scale,
        factor=problem.scale_factor,
        biases=frozenset(name for name in ("b_query", "b_key", "b_value", "b_out")
                         if getattr(problem, name) is not None),
    )
