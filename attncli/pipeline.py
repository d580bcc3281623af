"""Run the stages: the whole trace, or the output alone a block of queries at a time.

The stages are defined in stages.py (their arithmetic in arithmetic.py); this module decides
which path a problem takes, checks every step for overflow, and packs the results into a Trace.
No I/O and no printing: problems are reported by raising ProblemError.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from attncli.blocked import blocked_steps, check_finite
from attncli.flow import RIGHT, Flow, Slip
from attncli.problem import Problem
from attncli.sizes import Sizes, layout_key, sizes_of
from attncli.stages import REQUESTED, STAGE, STAGES, STEP_AXES, Stage, running
from attncli.trace import Step, Trace, TraceMeta, in_layout, kept_axes, present_axes

# Stages made only when named: after the others, from what they made
REQUESTED_STAGES = tuple(stage for stage in STAGES if stage.requested)
# Steps that need no full score matrix (none has both a query and a key axis): asked for alone,
# the scores are made block by block.
LIGHT_STEPS = frozenset(name for name, axes in STEP_AXES.items() if not {"q_len", "k_len"} <= set(axes))
# Below this many score cells per problem, blocks and threads cost more than they save.
BLOCKED_MIN_CELLS = 1 << 18
# The scores of one block take about this much memory per worker: large enough that each product
# is efficient, small enough that two workers stay far inside the 64 MiB the blocked path may add.
BLOCK_BYTES = 8 * 1024 * 1024
BLOCK_ROWS: int | None = None  # fixed rows per block (tests); None: from BLOCK_BYTES


def attention(
    problem: Problem,
    steps: list[str] | tuple[str, ...] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 2,
) -> Trace:
    """Run the stages on a validated Problem and return the Trace of ``steps`` (None: all).

    When no step asked for is a score matrix (scores, logits, capped, biased, softmax) and the problem has at
    least BLOCKED_MIN_CELLS scores, they are made a block of queries at a time on ``workers``
    threads (memory O(block × k_len) per worker, not O(batch × heads × q_len × k_len)) and
    ``progress(done, total)`` is called as blocks finish; the numbers agree with the full
    computation to about 1e-15 relative in float64 (the last digit may differ).
    """
    wanted = tuple(steps) if steps else None
    if blocked_path(problem, wanted):
        return _blocked_attention(problem, wanted, progress, workers)
    return full_attention(problem, wanted)


def blocked_path(problem: Problem, steps: list[str] | tuple[str, ...] | None) -> bool:
    """Whether ``attention(problem, steps)`` computes in blocks (and so needs no room for scores)."""
    return bool(steps) and set(steps) <= LIGHT_STEPS and _blocked_pays(problem)


def _blocked_pays(problem: Problem) -> bool:
    # small problems take the full path: the same last digits whichever steps are asked for
    return problem.score_cells >= BLOCKED_MIN_CELLS


def problem_steps(problem: Problem) -> tuple[str, ...]:
    """The steps this problem has, in order: logits only when scaled or masked, concat only with W_O."""
    return tuple(_layout(problem)[0])


def full_trace_bytes(problem: Problem) -> int:
    """About how many bytes computing every step of ``problem`` holds at once: every step's array
    (logits and concat too, which some problems share with their neighbours) and, for the
    temporaries of the softmax, one more score matrix."""
    sizes = sizes_of(problem)
    axis_sizes = sizes.axis_sizes()
    cells = {stage.name: math.prod(axis_sizes[axis] for axis in stage.axes) for stage in STAGES
             if stage.shown and not stage.requested and (stage.present(sizes) or stage.name in ("logits", "concat"))}
    return (sum(cells.values()) + cells["softmax"]) * problem.x.itemsize


def full_attention(problem: Problem, wanted: tuple[str, ...] | None = None, slip: Slip = RIGHT) -> Trace:
    """Run every stage on a validated Problem (with ``slip``: one of check's known slips) and return
    its Trace (of the ``wanted`` steps only, when given: every step is still computed and checked).

    The Trace drops the batch axis when x had none and the heads axis when heads == 1.
    Raises ProblemError when a step overflows its dtype.
    """
    plan, meta, running = _layout(problem)
    flow = Flow(problem, slip)
    # Overflow is checked step by step below and reported by name, so numpy's warnings are noise.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        made, arrays = flow.made, flow.arrays
        for stage in running:
            # Flow.put, written out: this loop runs once per problem of a JSON Lines stream
            name = stage.name
            array = made[name] = arrays[stage.transforms or name] = stage.make(flow)
            if stage.checked and name in plan:
                # a masked score may overflow: it is never used
                check_finite(name, array, problem, flow.allowed if stage.checked == "allowed" else None)
        for stage in REQUESTED_STAGES if wanted else ():
            if stage.name in wanted:
                made[stage.name] = stage.make(flow)
    steps = {name: Step(name, formula, flow.made[name][index], axes) for name, (formula, index, axes) in plan.items()
             if (name in wanted if wanted is not None else name not in REQUESTED)}
    # asked-for steps this problem lacks stay out, so Trace.select can say so
    available = tuple(plan) if wanted is not None else ()
    return Trace(steps=in_layout(steps, problem.seq_first), meta=meta,
                 warnings=problem.notes + _masked_row_warnings(problem), available=available,
                 mask=None if problem.visibility is None else problem.mask)


Plan = dict[str, tuple[str, tuple, tuple[str, ...]]]
# A stream of problems of one layout (JSON Lines) plans its steps once, by sizes.layout_key.
_LAYOUTS: dict[tuple, tuple[Plan, TraceMeta, tuple[Stage, ...]]] = {}


def _layout(problem: Problem) -> tuple[Plan, TraceMeta, tuple[Stage, ...]]:
    """The problem's steps (see _steps_plan), its TraceMeta and the stages it runs, made once per
    layout (but the tokens, the problem's own). A stage that transforms a slot and that the problem
    lacks (a rotation without RoPE) would hand its slot on unchanged: it is not run."""
    key = layout_key(problem)
    layout = _LAYOUTS.get(key)
    if layout is None:
        if len(_LAYOUTS) > 256:
            _LAYOUTS.clear()
        sizes = sizes_of(problem)
        runs = tuple(stage for stage in running(sizes) if not stage.requested)
        layout = _LAYOUTS[key] = (_steps_plan(sizes), TraceMeta.of(problem), runs)
    return layout if problem.tokens is None else (layout[0], layout[1]._replace(tokens=problem.tokens), layout[2])


@functools.lru_cache(maxsize=128)
def _steps_plan(sizes: Sizes) -> dict[str, tuple[str, tuple, tuple[str, ...]]]:
    """For each step a problem of these sizes has, in order: its formula, the index that drops the
    axes the Trace leaves out (size 1: the batch axis when x had none, heads for a single head)
    and the axes it keeps."""
    plan = {}
    for stage in STAGES:
        if stage.shown and stage.present(sizes):
            kept = kept_axes(stage.name, sizes.batched, sizes.heads, sizes.key_heads)
            axes = present_axes(stage.name, sizes.batched, sizes.heads, sizes.key_heads)
            index = tuple(slice(None) if axis in kept else 0 for axis in stage.axes)
            plan[stage.name] = (stage.formula(sizes), index, axes)
    return plan


def block_rows(k_len: int, itemsize: int) -> int:
    """Queries per block on the blocked path: BLOCK_BYTES of scores (BLOCK_ROWS when it is set)."""
    return BLOCK_ROWS or max(16, BLOCK_BYTES // (k_len * itemsize))


def _blocked_attention(
    problem: Problem, wanted: tuple[str, ...], progress: Callable[[int, int], None] | None, workers: int
) -> Trace:
    """The steps asked for, made block by block (blocked.blocked_steps), as a Trace."""
    arrays = blocked_steps(problem, wanted, progress, workers, block_rows(problem.k_len, problem.x.itemsize))
    plan, meta, _ = _layout(problem)
    steps = {name: Step(name, formula, arrays[name][index], axes)
             for name, (formula, index, axes) in plan.items() if name in arrays}
    # no mask: none of the blocked path's steps has a key axis, and a long sequence's mask is never made
    return Trace(steps=in_layout(steps, problem.seq_first), meta=meta,
                 warnings=problem.notes + _masked_row_warnings(problem), available=tuple(plan))


def formula(name: str, problem: Problem) -> str:
    """The formula of step ``name`` for this problem, e.g. ``Q = x·W_Q + b_Q``."""
    return STAGE[name].formula(sizes_of(problem))


def _masked_row_warnings(problem: Problem) -> tuple[str, ...]:
    """One warning naming the queries that see no key: per batch item and head, as ranges
    (``queries 0–511 of batch item 1``); past a few such places, how many more."""
    if problem.visibility is None:
        return ()
    blind = problem.visibility.blind()  # (batch | 1, heads | 1, q_len)
    places = [(batch_index, head_index) for batch_index, head_index in np.argwhere(blind.any(axis=-1))]
    if not places:
        return ()
    shown_places = 4
    names = []
    for batch_index, head_index in places[:shown_places]:
        queries = np.flatnonzero(blind[batch_index, head_index])
        starts = [i for i, query in enumerate(queries) if i == 0 or queries[i - 1] != query - 1]
        ranges = [(queries[start], queries[end - 1])
                  for start, end in zip(starts, [*starts[1:], len(queries)], strict=True)]
        spans = [f"{first}" if first == last else f"{first}–{last}" for first, last in ranges]
        if len(spans) > 6:
            spans = [*spans[:3], "…", *spans[-2:]]
        name = ("query " if len(queries) == 1 else "queries ") + ", ".join(spans)
        if problem.batched:
            name += f" of batch item {batch_index}" if blind.shape[0] > 1 else " of every batch item"
        if problem.heads > 1:
            name += f", head {head_index}" if blind.shape[1] > 1 else ", every head"
        names.append(name)
    more = f" and {len(places) - shown_places} more places" if len(places) > shown_places else ""
    single = len(places) == 1 and blind[places[0]].sum() == 1
    # NaN (masked_rows "nan") unless the head has a sink: the sink then takes the whole row
    sinkless = None if problem.sinks is None else np.isneginf(problem.sinks)
    value = "0" if problem.masked_rows != "nan" or (sinkless is not None and not sinkless.any()) else (
        "NaN" if sinkless is None or sinkless.all() else "NaN (0 in the heads with a sink)")
    tail = f"its weights are {value} and its per-head output is {value}" if single else (
        f"their weights are {value} and their per-head outputs are {value}")
    return (f"every key is masked for {'; '.join(names)}{more}: {tail}",)
