"""The result of a computation: named steps in pipeline order, and what they mean."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from attncli.errors import ProblemError
from attncli.keys import STEP_NAMES
from attncli.stages import HEAD_AXES, STEP_AXES
from attncli.tokens import Tokens

if TYPE_CHECKING:
    from attncli.problem import Problem

@functools.cache
def kept_axes(name: str, batched: bool, heads: int, kv_heads: int | None = None) -> tuple[str, ...]:
    """The axes of STEP_AXES[name] a Trace keeps: no batch axis when x had none, no heads axis
    for a single head, no kv_heads axis for a single key/value head (``kv_heads`` None: as many
    as ``heads``)."""
    counts = {"heads": heads, "kv_heads": heads if kv_heads is None else kv_heads}
    return tuple(
        axis
        for axis in STEP_AXES[name]
        if not (axis == "batch" and not batched) and not (axis in HEAD_AXES and counts[axis] == 1)
    )


@functools.cache
def present_axes(name: str, batched: bool, heads: int, kv_heads: int | None = None) -> tuple[str, ...]:
    """The axes of step ``name`` as a Trace shows and names them (see kept_axes): key/value heads
    are called ``heads`` when there are as many as query heads (no grouping)."""
    grouped = kv_heads is not None and kv_heads != heads
    return tuple("heads" if axis == "kv_heads" and not grouped else axis
                 for axis in kept_axes(name, batched, heads, kv_heads))


def present_shape(full_shape: tuple[int, ...], name: str, batched: bool, heads: int,
                  kv_heads: int | None = None) -> tuple[int, ...]:
    """``full_shape`` (one size per axis of STEP_AXES[name]) without the axes the Trace drops."""
    axes = kept_axes(name, batched, heads, kv_heads)
    return tuple(size for axis, size in zip(STEP_AXES[name], full_shape, strict=True) if axis in axes)


def in_layout(steps: dict[str, Step], seq_first: bool) -> dict[str, Step]:
    """``steps`` as the document's layout has them: with ``seq_first`` (PyTorch's batch_first=False)
    the steps shaped as x, (batch, q_len, width) (the output and the joined heads), are given
    (q_len, batch, width); the weights averaged stay (batch, q_len, k_len), as PyTorch returns them."""
    if not seq_first:
        return steps
    return {name: step._replace(array=step.array.swapaxes(0, 1), axes=(step.axes[1], step.axes[0], *step.axes[2:]))
            if shaped_as_x(name) else step for name, step in steps.items()}


def shaped_as_x(name: str) -> bool:
    """Whether step ``name`` is shaped as x, (batch, q_len, width) (the output, the joined heads): the
    steps a seq-first document gets sequence first (not the weights averaged, (batch, q_len, k_len))."""
    axes = STEP_AXES[name]
    return axes[:2] == ("batch", "q_len") and axes[2] != "k_len"


class Step(NamedTuple):
    """One intermediate: its ``name``, the ``formula`` that made it, the ``array``
    and the name of each of its ``axes`` (as many as ``array.ndim``)."""

    name: str
    formula: str
    array: np.ndarray
    axes: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.array.shape


# numpy's dtype.name is slow enough to matter once per problem in a stream
_DTYPE_NAMES = {"d": "float64", "f": "float32"}


class TraceMeta(NamedTuple):
    """What a computation was: ``heads``, ``head_dim``, ``head_dim_v``, whether x had a batch axis
    (``batched``) and a separate context (``cross_attention``), the ``scale_rule`` ("sqrt",
    "none" or "number") and its ``scale_factor``, the ``mask`` rule (None, "causal",
    "causal_lower_right", "array") and the ``dtype`` computed in.

    Then the variants the problem uses, each None (or False, or "zero") when it does not, so that
    a classic problem's meta is what it was before they existed: ``kv_heads`` (only when fewer
    than ``heads``), ``rope`` (style, theta, rotary_dim; theta None when the document gave the
    frequencies), ``qk_norm`` (what it normalises over), ``softcap``, ``alibi``, ``bias``,
    ``window``, ``padding``, ``sinks`` and ``masked_rows`` ("nan" when a query that sees no key
    gets NaN), ``appended``: the rows after K's and V's ("bias_k", "zero"; see appended.py), and
    ``seq_first``: the output given (q_len, batch, d_out), as the document's inputs were.
    ``tokens``: the rows' labels (tokens.py), or None; the views show them beside the indices.

    A stream of problems (JSON Lines) makes it once per sizes.layout_key: it may hold only what
    that key holds (ALiBi's slopes and the positions are not in it, so they are not here)."""

    heads: int
    head_dim: int
    head_dim_v: int
    batched: bool
    cross_attention: bool
    scale_rule: str
    scale_factor: float
    mask: str | None
    dtype: str
    kv_heads: int | None = None
    rope: tuple[str, float | None, int] | None = None
    qk_norm: str | None = None
    softcap: float | None = None
    alibi: bool = False
    bias: bool = False
    window: int | None = None
    padding: bool = False
    sinks: bool = False
    masked_rows: str = "zero"
    appended: tuple[str, ...] = ()
    seq_first: bool = False
    tokens: Tokens | None = None  # set per problem by the pipeline (not in a stream's layout key)

    @classmethod
    def of(cls, problem: Problem) -> TraceMeta:
        rope = problem.rope
        return cls(
            heads=problem.heads,
            head_dim=problem.head_dim,
            head_dim_v=problem.head_dim_v,
            batched=problem.batched,
            cross_attention=problem.cross,
            scale_rule=problem.scale if isinstance(problem.scale, str) else "number",
            scale_factor=problem.scale_factor,
            mask=problem.mask_rule,
            dtype=problem.precision.name if problem.precision else _DTYPE_NAMES.get(problem.x.dtype.char)
            or str(problem.x.dtype),
            kv_heads=problem.kv_heads if problem.kv_heads != problem.heads else None,
            rope=None if rope is None else (rope.style, rope.theta, rope.rotary_dim),
            qk_norm=None if problem.qk_norm is None else problem.qk_norm.over,
            softcap=problem.softcap,
            alibi=problem.alibi is not None,
            bias=problem.bias is not None,
            window=problem.window,
            padding=problem.padding is not None,
            sinks=problem.sinks is not None,
            masked_rows=problem.masked_rows,
            appended=() if problem.appended is None else problem.appended.names,
            seq_first=problem.seq_first,
        )

    def as_dict(self) -> dict[str, Any]:
        """As the JSON output's ``meta`` has it (the scale as {"rule", "factor"}); a variant's key
        only when the problem uses it."""
        meta: dict[str, Any] = {"heads": self.heads}
        if self.kv_heads is not None:
            meta["kv_heads"] = self.kv_heads
        meta.update({
            "head_dim": self.head_dim,
            "head_dim_v": self.head_dim_v,
            "batched": self.batched,
            "cross_attention": self.cross_attention,
            "scale": {"rule": self.scale_rule, "factor": self.scale_factor},
            "mask": self.mask,
        })
        if self.qk_norm is not None:
            meta["qk_norm"] = {"over": self.qk_norm}
        if self.rope is not None:
            style, theta, rotary_dim = self.rope
            meta["rope"] = {"style": style, "theta": theta, "rotary_dim": rotary_dim}
        variants = {"softcap": self.softcap, "alibi": self.alibi or None, "bias": self.bias or None,
                    "window": self.window, "padding": self.padding or None, "sinks": self.sinks or None,
                    "masked_rows": None if self.masked_rows == "zero" else self.masked_rows,
                    "appended": list(self.appended) or None, "batch_first": False if self.seq_first else None}
        meta.update((key, value) for key, value in variants.items() if value is not None)
        meta["dtype"] = self.dtype
        if self.tokens is not None:
            meta.update(self.tokens.as_dict())
        return meta


class Trace(NamedTuple):
    """Every step of one computation.

    ``steps`` maps step names to Steps in pipeline order; ``meta`` says what was computed
    (TraceMeta); ``warnings`` are sentences for the user (e.g. a query
    whose every key is masked); ``mask`` is the problem's, bool (batch | 1, heads | 1, q_len,
    k_len), True = may attend, or None.
    """

    steps: dict[str, Step]
    meta: TraceMeta
    warnings: tuple[str, ...] = ()
    # every step this problem has, computed or not (a trace of chosen steps holds fewer)
    available: tuple[str, ...] = ()
    mask: np.ndarray | None = None

    def masked(self, step: Step) -> np.ndarray | None:
        """Which cells of a step over queries and keys (scores, logits, softmax) are masked, in
        the step's own shape (True = masked); None for another step or a problem with no mask."""
        full_axes = STEP_AXES[step.name]
        if self.mask is None or full_axes[-2:] != ("q_len", "k_len"):
            return None
        # a step over every head (the heads' mean) is masked where every head is
        allowed = self.mask if "heads" in full_axes else self.mask.any(axis=1)
        index = tuple(slice(None) if axis in step.axes else 0 for axis in full_axes)
        return np.broadcast_to(~allowed[index], step.shape)

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
