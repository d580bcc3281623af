"""Run the stages: the whole trace, or the output alone a block of queries at a time.

The stages are defined in stages.py (their arithmetic in arithmetic.py); this module decides
which path a problem takes, checks every step for overflow, and packs the results into a Trace.
No I/O and no printing: problems are reported by raising ProblemError.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from attncli.arithmetic import scaled
from attncli.blas import single_threaded_blas
from attncli.errors import ProblemError
from attncli.flow import RIGHT, Block, Flow, Slip, keys_needed, share_values_with_ones
from attncli.precision import LARGEST
from attncli.problem import Problem
from attncli.sizes import Sizes, layout_key, sizes_of
from attncli.stages import REQUESTED, STAGE, STAGES, STEP_AXES, Stage
from attncli.trace import Step, Trace, TraceMeta, in_layout, kept_axes, present_axes, present_shape

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
    return problem.x.shape[0] * problem.heads * problem.x.shape[1] * problem.k_len >= BLOCKED_MIN_CELLS


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
        running = tuple(stage for stage in STAGES if not stage.requested and (
            stage.transforms is None or stage.present(sizes)))
        layout = _LAYOUTS[key] = (_steps_plan(sizes), TraceMeta.of(problem), running)
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


def _blocked_attention(
    problem: Problem, wanted: tuple[str, ...], progress: Callable[[int, int], None] | None, workers: int
) -> Trace:
    """The stages, a block of queries of one head at a time: those of unit "problem" (keys and
    values) once, those of unit "block" per block with the Flow's fast arithmetic, then those of
    unit "heads" on the blocks put together."""
    sizes = sizes_of(problem)
    shared: dict[str, np.ndarray] = {}
    whole = Flow(problem, shared=shared)
    arrays: dict[str, np.ndarray] = {}
    block_stages = [stage for stage in STAGES if stage.unit == "block"]
    assembled = block_stages[-1]  # what each block contributes to: its head's columns of its rows
    # a per-query step asked for (q, q_rotated…) is made whole, with every block stage before it (the
    # rotation reads the norm's Q); none of these has a key axis (LIGHT_STEPS)
    asked = [index for index, stage in enumerate(block_stages) if stage.name in wanted and stage is not assembled]
    made_whole = {stage.name for stage in block_stages[:max(asked) + 1]} if asked else set()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for stage in STAGES:
            if stage.unit == "problem" or stage.name in made_whole:
                # each head's rows contiguous: the blocks read them head by head
                array = whole.put(stage.name, stage.slot, np.ascontiguousarray(stage.make(whole)))
                check_finite(stage.name, array, problem)
                if stage.unit == "problem":
                    shared[stage.slot] = array
                del array
        arrays.update((name, array) for name, array in whole.made.items() if name in wanted)
        whole.arrays.clear()
        whole.made.clear()  # what the blocks need is in shared: drop the rest before they run
        share_values_with_ones(shared)
        # numpy's float32 exp2 runs about twice as fast as its exp: with log2(e) folded into Q too,
        # 2^(score·log2 e) is the same e^score
        power = np.exp2 if problem.x.dtype == np.float32 else np.exp
        # the fast arithmetic (scale folded into Q, totals from V's ones) holds for masks, groups,
        # rotations and norms; what acts on the logits themselves, or NaN rows, takes the plain one
        fast = not (problem.softcap or problem.additive or problem.sinks is not None
                    or problem.masked_rows == "nan" or problem.precision is not None)
        fold = _query_fold(problem, log2=power is np.exp2)
        axis_sizes = sizes.axis_sizes()
        merged = np.empty(tuple(axis_sizes[axis] for axis in assembled.axes), dtype=problem.x.dtype)
        batch, heads, q_len = problem.x.shape[0], problem.heads, problem.x.shape[1]
        k_len = problem.k_len
        block_rows = BLOCK_ROWS or max(16, BLOCK_BYTES // (k_len * problem.x.itemsize))
        blocks = []
        for b in range(batch):
            for h in range(heads):
                for start in range(0, q_len, block_rows):
                    stop = min(start + block_rows, q_len)
                    k_start, k_stop = keys_needed(problem, b, h, start, stop)
                    blocks.append(Block(b, h, heads, start, stop, k_stop, k_start, problem.kv_heads))

        # the largest |key| of each key/value head, for a bound on its scores (see overflow_possible)
        key_peaks = np.abs(shared["k"]).max(axis=(-2, -1))
        fold_factor = float(np.abs(fold(np.ones(1, dtype=problem.x.dtype)))[0])
        largest = float(np.finfo(problem.x.dtype).max)

        def overflow_possible(flow: Flow) -> bool:
            # |q·k| <= head_dim·max|q|·max|k| (Cauchy-Schwarz): far below the largest float, no score
            # or logit of this block overflowed, and the pass over every score that would prove it is saved
            queries, keys, block = flow.arrays["q"], flow.arrays["k"], flow.block
            peak_key = float(key_peaks[block.batch, block.kv_head])
            return keys.shape[-1] * fold_factor * float(np.abs(queries).max()) * peak_key >= largest / 4

        def run(block: Block) -> None:
            # numpy's error state is per thread: the workers set their own
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if not fast:
                    contribution = _plain_block(problem, block, shared)[assembled.name]
                    merged[block.slices(merged.shape, assembled.axes)] = contribution
                    return
                flow = _block_flow(problem, block, shared, fast=True, fold=fold, power=power)
                plain = False
                for stage in block_stages:
                    array = flow.put(stage.name, stage.slot, stage.make(flow))
                    plain = plain or (stage.checked == "all" and not math.isfinite(np.add.reduce(array, axis=None)))
                contribution = flow.made[assembled.name]
                if plain or overflow_possible(flow) or (not math.isfinite(np.add.reduce(contribution, axis=None))
                                                       and np.isnan(contribution).any()):
                    # run the block again plainly: it names the step and cell that overflowed, as the
                    # full path does, or gives the numbers when only the fast arithmetic overflowed
                    contribution = _plain_block(problem, block, shared)[assembled.name]
                merged[block.slices(merged.shape, assembled.axes)] = contribution

        _run_tasks(run, blocks, workers if len(blocks) > 1 else 1, progress)
        shared.clear()  # K and V are no longer needed: free them before the output projection
        after = Flow(problem)
        after.put(assembled.name, assembled.slot, merged)
        if assembled.name in wanted and assembled.present(sizes):
            arrays[assembled.name] = merged
        for stage in STAGES:
            if stage.unit == "heads" and not stage.requested:  # a requested one has the scores: not light
                array = after.put(stage.name, stage.slot, stage.make(after))
                check_finite(stage.name, array, problem)
                if stage.name in wanted:
                    arrays[stage.name] = array
    plan, meta, _ = _layout(problem)
    steps = {name: Step(name, formula, arrays[name][index], axes)
             for name, (formula, index, axes) in plan.items() if name in arrays}
    # no mask: none of the blocked path's steps has a key axis, and a long sequence's mask is never made
    return Trace(steps=in_layout(steps, problem.seq_first), meta=meta,
                 warnings=problem.notes + _masked_row_warnings(problem), available=tuple(plan))


def _block_flow(problem: Problem, block: Block, shared: dict[str, np.ndarray], **arithmetic: Any) -> Flow:
    flow = Flow(problem, block=block, shared=shared, **arithmetic)
    for stage in STAGES:
        if stage.unit == "problem":
            flow.arrays[stage.slot] = block.take(shared[stage.slot], stage.axes)
    return flow


def _plain_block(problem: Problem, block: Block, shared: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run this block's stages with the plain arithmetic (the full path's), checking each step as
    the full path does: a ProblemError names the step and cell that overflowed; else what each made."""
    flow = _block_flow(problem, block, shared)
    sizes = sizes_of(problem)
    for stage in STAGES:
        if stage.unit != "block":
            continue
        array = flow.put(stage.name, stage.slot, stage.make(flow))
        if stage.checked and stage.present(sizes):
            check_finite(stage.name, array, problem, flow.allowed if stage.checked == "allowed" else None, block)
    return flow.made


def _query_fold(problem: Problem, log2: bool) -> Callable[[np.ndarray], np.ndarray]:
    """What the blocked path does to Q instead of scaling every score: the scale (÷√head_dim, or
    × the factor), and × log2(e) when the exponentials are powers of 2."""
    log2_e = np.asarray(np.log2(np.e), dtype=problem.x.dtype)

    def fold(queries: np.ndarray) -> np.ndarray:
        # scaled() is the logits stage's own scaling, here of Q: (q/√d)·k = (q·k)/√d up to rounding
        queries = scaled(queries, problem)
        return queries * log2_e if log2 else queries

    return fold


def _run_tasks(run: Callable[[Any], None], tasks: list, workers: int,
               progress: Callable[[int, int], None] | None) -> None:
    """Run every task, on ``workers`` threads when more than one (numpy releases the GIL in its
    products and ufuncs), reporting progress as tasks finish. On an error the tasks not started
    are cancelled, and the error of the earliest task is raised: the same one whichever thread
    got there first, and for blocks the first cell in the full path's order."""
    total = len(tasks)
    if workers <= 1:
        for done, task in enumerate(tasks, start=1):
            run(task)
            if progress:
                progress(done, total)
        return
    # here, not at the top: the thread pool (and the logging it imports) is for the blocked path only
    from concurrent.futures import ThreadPoolExecutor, as_completed, wait

    with single_threaded_blas(), ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, task) for task in tasks]
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()
                if progress:
                    progress(done, total)
        except ProblemError:
            for future in futures:
                future.cancel()
            # every task before the one that failed had started: wait for them, raise the earliest error
            wait(futures)
            raise next(future.exception() for future in futures
                       if not future.cancelled() and future.exception() is not None) from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def check_finite(name: str, array: np.ndarray, problem: Problem, allowed: np.ndarray | None = None,
                 block: Block | None = None) -> None:
    """ProblemError naming the first cell of step ``name`` (full axes; of ``block`` when given)
    that overflowed its dtype; cells ``allowed`` marks False (masked) are not used and may overflow."""
    # a finite sum means every value is finite (one reduction, the cheap test run on every step);
    # an infinite one may be a masked −∞ or a sum too large, and gets the cell-by-cell test
    if allowed is None and math.isfinite(np.add.reduce(array, axis=None)):
        return
    finite = np.isfinite(array)
    if allowed is not None:
        finite |= ~allowed
    elif problem.masked_rows == "nan" and problem.visibility is not None and STEP_AXES[name][-2:] == ("q_len", "d_out"):
        # a query that sees no key has NaN outputs by the user's choice: not an overflow
        blind = problem.visibility.blind().any(axis=1)[:, :, None]  # (batch | 1, q_len, 1)
        finite |= np.isnan(array) & (blind if block is None else block.take(blind, ("batch", "q_len", "d_out")))
    if finite.all():
        return
    axes = STEP_AXES[name]
    where = np.argwhere(~finite)[0] + np.asarray(block.offset(axes) if block else (0,) * len(axes))
    kept = kept_axes(name, problem.batched, problem.heads, problem.kv_heads)
    shown = iter(present_axes(name, problem.batched, problem.heads, problem.kv_heads))
    position = ", ".join(f"{next(shown)} {int(index)}" for axis, index in zip(axes, where, strict=True) if axis in kept)
    axis_sizes = sizes_of(problem).axis_sizes()
    dtype = problem.precision.name if problem.precision is not None else array.dtype  # float16 is held in float32
    raise ProblemError(
        f"{name} overflows {dtype} at ({position}): beyond ±{_largest(dtype)}; "
        "scale the inputs or weights down",
        {name: present_shape(tuple(axis_sizes[axis] for axis in axes), name, problem.batched, problem.heads,
                             problem.kv_heads)},
    )


def _largest(dtype: np.dtype | str) -> str:
    return f"{LARGEST[dtype] if dtype in LARGEST else np.finfo(dtype).max:.1e}".replace("e+", "e")


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
