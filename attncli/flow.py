"""What the stages of one run share: the Flow (the problem, the slip to make, the arrays made so
far) and, on the blocked path, the Block of queries a run covers.

A stage reads its inputs through the Flow, so the same stage function runs on the whole problem
or on one block: the Flow hands it the block's rows of x, its head's weights, its part of the
mask, and says whether the scale is already folded into Q and whether the softmax may be left
unnormalised (the blocked path divides after the product with V).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from attncli.arithmetic import project
from attncli.problem import Problem

# Guards what the blocks of one run share as it is first made (the mean squares of QK-norm).
_SHARING = threading.Lock()


class Slip(NamedTuple):
    """How to run the stages: right (the defaults), or with the structural slips that ``check``
    knows (one, or two at once): heads taken as interleaved columns, K·Qᵀ, softmax over the
    queries, softmaxᵀ·V; heads split or merged by a reshape with no transpose; stages left out
    (``skipped``: each passes its slot on, e.g. ("k_rotated",) for RoPE on Q only); queries rotated
    at 0, 1, … instead of their positions; key/value heads tiled; soft-capping "before_scale" or
    "after_mask"; an empty row's weights "uniform" (a finite mask fill); the sink's weight kept."""

    interleaved_heads: bool = False
    scores_transposed: bool = False
    softmax_axis: int = -1
    weights_transposed: bool = False
    split_untransposed: bool = False
    merge_untransposed: bool = False
    skipped: tuple[str, ...] = ()
    rope_from_zero: bool = False
    kv_tiled: bool = False
    softcap_order: str = ""
    empty_rows: str = ""
    sink_kept: bool = False

    def joined(self, other: Slip) -> Slip | None:
        """Both slips at once, or None when they set the same field (they cannot both be made); the
        stages ``skipped`` by each are skipped together."""
        mine, theirs = ({name: value for name, value in slip._asdict().items() if value != getattr(RIGHT, name)}
                        for slip in (self, other))
        skipped = (*mine.pop("skipped", ()), *theirs.pop("skipped", ()))
        if set(mine) & set(theirs) or len(set(skipped)) < len(skipped):
            return None
        return Slip(**mine, **theirs, skipped=skipped)


RIGHT = Slip()


class Block(NamedTuple):
    """A block of the blocked path: queries ``start:stop`` of batch item ``batch`` in head
    ``head`` (of ``heads``; its key/value head is ``head // (heads / kv_heads)``), which need keys
    ``k_start:k_stop`` only."""

    batch: int
    head: int
    heads: int
    start: int
    stop: int
    k_stop: int
    k_start: int = 0
    kv_heads: int = 0  # 0: as many as heads

    @property
    def kv_head(self) -> int:
        return self.head // (self.heads // (self.kv_heads or self.heads))

    def take(self, array: np.ndarray, axes: tuple[str, ...]) -> np.ndarray:
        """This block's part of ``array`` (one named axis per dimension; an axis of size 1 is
        broadcast, as a mask's may be), keeping every axis."""
        return array[self.slices(array.shape, axes)]

    def slices(self, shape: tuple[int, ...], axes: tuple[str, ...]) -> tuple[slice, ...]:
        """The slices of this block in an array of ``shape`` with these named axes."""
        return tuple(self._span(axis, size) for axis, size in zip(axes, shape, strict=True))

    def offset(self, axes: tuple[str, ...]) -> tuple[int, ...]:
        """Where this block starts along each of these axes of the whole problem."""
        starts = {"batch": self.batch, "heads": self.head, "kv_heads": self.kv_head, "q_len": self.start,
                  "k_len": self.k_start}
        return tuple(starts.get(axis, 0) for axis in axes)

    def _span(self, axis: str, size: int) -> slice:
        if size == 1:  # broadcast (a mask's batch or heads axis, one slope for every query…)
            return slice(0, 1)
        match axis:
            case "batch":
                return slice(self.batch, self.batch + 1)
            case "heads":
                return slice(self.head, self.head + 1)
            case "kv_heads":
                return slice(self.kv_head, self.kv_head + 1)
            case "q_len":
                return slice(self.start, self.stop)
            case "k_len":
                return slice(self.k_start, self.k_stop)
            case "heads*head_dim_v":
                width = size // self.heads
                return slice(self.head * width, (self.head + 1) * width)
        return slice(None)


def keys_needed(problem: Problem, batch: int, head: int, start: int, stop: int) -> tuple[int, int]:
    """The keys ``k_start:k_stop`` that queries ``start:stop`` of this batch item and head may see:
    from the first to the last the mask allows any of them (a causal mask needs none past the
    block's last query; a window none before its first query's window). Every key when unmasked."""
    seen = problem.visibility
    return (0, problem.k_len) if seen is None else seen.key_span(batch, head, start, stop)


class Flow:
    """One run of the stages: the ``problem``, the ``slip`` to make, the ``arrays`` later stages
    read (by slot), what each stage ``made`` (by name, for the Trace), and on the blocked path
    the ``block`` it covers, with ``shared`` (what every block of the run reads: the arrays made
    once, the heads' weights, V with a column of ones). ``fast``
    is the blocked path's arithmetic: ``fold`` applied to Q (the scale, and log2 e when ``power``
    is exp2), the softmax in place and normalised after the product with V; its output agrees
    with the plain arithmetic's to rounding (about 1e-15 of its size in float64; a cell near 0
    may differ more relative to itself)."""

    # a plain class: made once per problem of a stream, and per block
    def __init__(self, problem: Problem, slip: Slip = RIGHT, *, block: Block | None = None,
                 shared: dict[str, np.ndarray] | None = None, fast: bool = False,
                 fold: Callable[[np.ndarray], np.ndarray] | None = None, power: Callable = np.exp):
        self.problem, self.slip, self.block, self.fast, self.power = problem, slip, block, fast, power
        self.shared = {} if shared is None else shared
        self.fold = fold or (lambda queries: queries)
        self.arrays: dict[str, np.ndarray] = {}
        self.made: dict[str, np.ndarray] = {}
        # float16, bfloat16: what every stage makes is rounded so (Stage.make)
        self.rounding = None if problem.precision is None else problem.precision.round
        self._peak: tuple[np.ndarray, float] | None = None  # (Q, its largest |q|): query_peak

    def put(self, name: str, slot: str, array: np.ndarray) -> np.ndarray:
        """Keep what stage ``name`` made, for the Trace and, in ``slot``, for the stages after it."""
        self.made[name] = self.arrays[slot] = array
        return array

    @property
    def allowed(self) -> np.ndarray | None:
        """The mask, True = may attend: (batch | 1, heads | 1, q_len, k_len), or this block's part."""
        seen, block = self.problem.visibility, self.block
        if seen is None or block is None:
            return self.problem.mask
        # the block's part only: a long sequence's whole mask is never made on the blocked path
        return seen.part(block.batch, block.head, block.start, block.stop, block.k_start, block.k_stop)

    def take(self, array: np.ndarray, axes: tuple[str, ...]) -> np.ndarray:
        """``array`` (one named axis per dimension), or this block's part of it."""
        return array if self.block is None else self.block.take(array, axes)

    def per_head(self, values: np.ndarray) -> np.ndarray:
        """One value per head (heads,) as (1, heads, 1, 1), or this block's head's (1, 1, 1, 1)."""
        return self.take(values.reshape(1, -1, 1, 1), ("batch", "heads", "q_len", "k_len"))

    def query_positions(self) -> np.ndarray:
        """The positions of the queries of this run (q_len,), or of this block's."""
        positions = self.problem.query_positions
        return positions if self.block is None else positions[self.block.start:self.block.stop]

    def key_positions(self) -> np.ndarray:
        """The positions of the keys (k_len,), or of the keys this block may see."""
        positions = self.problem.key_positions
        return positions if self.block is None else positions[self.block.k_start:self.block.k_stop]

    def rotation_positions(self, letter: str) -> np.ndarray:
        """The positions RoPE turns Q (``letter`` "q") or K by: the queries' or keys' of this run,
        or with the slip ``rope_from_zero`` the queries' counted from 0 (a KV cache's offset forgotten)."""
        if letter != "q":
            return self.key_positions()
        if self.slip.rope_from_zero:
            start, stop = (0, self.problem.x.shape[1]) if self.block is None else (self.block.start, self.block.stop)
            return np.arange(start, stop, dtype=np.int64)
        return self.query_positions()

    def query_mean_square(self) -> np.ndarray | None:
        """For a QK-norm over all heads on a block: each query's mean square over the whole
        projection (batch, 1, q_len, 1), made once for every block; None on the whole problem,
        whose Q has every head at hand."""
        if self.block is None:
            return None
        if "q_mean_square" not in self.shared:
            with _SHARING:
                if "q_mean_square" not in self.shared:
                    problem = self.problem
                    projected = project(problem.x, problem.w_query, problem.b_query)
                    projected = projected if self.rounding is None else self.rounding(projected)
                    self.shared["q_mean_square"] = np.mean(np.square(projected), axis=-1, keepdims=True)[:, None]
        return self.take(self.shared["q_mean_square"], ("batch", "heads", "q_len", "head_dim"))

    def projection(self, source: str, weight: str, bias: str, length: str, heads_axis: str = "heads"
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
        """(source, weight, bias, heads) of a projection: the whole problem's (split into heads or
        kv_heads), or on a block its rows of the source and its head's columns of the weight and
        bias. Only queries are projected per block."""
        problem = self.problem
        arrays = getattr(problem, source), getattr(problem, weight), getattr(problem, bias)
        if self.block is None:
            return (*arrays, problem.heads if heads_axis == "heads" else problem.kv_heads)
        # the head's columns of the weight: a view (BLAS reads it in place, as fast as a copy)
        width = arrays[1].shape[1] // problem.heads
        columns = slice(self.block.head * width, (self.block.head + 1) * width)
        return (self.block.take(arrays[0], ("batch", length, "width")), arrays[1][:, columns],
                None if arrays[2] is None else arrays[2][columns], 1)

    def shift_free(self) -> bool:
        """Whether this block's exponentials may skip subtracting each row's largest logit: when no
        folded score can exceed the limit the blocked path put in ``shared`` ("query_limit", per
        batch item and key/value head: |q·k| <= |q|·|k|), every weight stays a normal number."""
        limits = self.shared.get("query_limit")
        if limits is None or self.block is None:
            return False
        return self.query_peak() <= float(limits[self.block.batch, self.block.kv_head])

    def query_peak(self) -> float:
        """The largest |q| of this run's Q (what its slot holds now), for bounds on the scores;
        made once for each array."""
        queries = self.arrays["q"]
        if self._peak is None or self._peak[0] is not queries:
            self._peak = queries, float(np.sqrt(np.maximum.reduce(np.add.reduce(np.square(queries), axis=-1),
                                                                   axis=None)))
        return self._peak[1]

    def values_with_ones(self) -> np.ndarray:
        """This block's V with a column of ones beside it (batch, kv_heads, k_len, head_dim_v + 1):
        softmax·[V | 1] gives the weighted values and the row sums in one product."""
        return self.block.take(self.shared["v+1"], ("batch", "kv_heads", "k_len", "head_dim_v"))


def share_values_with_ones(shared: dict[str, np.ndarray]) -> None:
    """Put V with a column of ones in ``shared`` (for Flow.values_with_ones), and V itself as a
    view of it: one copy of the values in memory, not two. Call before the blocks run."""
    values = shared.pop("v")
    extended = np.concatenate([values, np.ones(values.shape[:-1] + (1,), dtype=values.dtype)], -1)
    shared["v+1"], shared["v"] = extended, extended[..., :-1]
