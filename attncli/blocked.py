"""The blocked path: the steps with no key axis (the output above all) of a large problem, a block
of queries of one head at a time on worker threads, and the output projection band by band; and
``check_finite``, the overflow check both paths make on every step.

The blocks run band by band (every head of a band of queries, then the next band) so that each
band's output is made as soon as its heads are done and its heads' results are dropped: memory
stays a few bands and score blocks per worker beyond the outputs, K and V. No I/O, no printing.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from attncli.arithmetic import scaled
from attncli.blas import single_threaded_blas
from attncli.errors import ProblemError
from attncli.flow import Block, Flow, keys_needed, share_values_with_ones
from attncli.precision import largest_text
from attncli.problem import Problem
from attncli.sizes import sizes_of
from attncli.stages import STAGES, STEP_AXES, Stage, running
from attncli.trace import kept_axes, present_axes, present_shape

# The largest exponent (of 2) a block may reach with no row's maximum subtracted: its weights are
# then at most 2^limit and at least 2^−limit, normal numbers whose sums over the keys stay finite.
SHIFT_FREE_EXPONENT = {np.dtype(np.float32): 64.0, np.dtype(np.float64): 256.0}


def blocked_steps(problem: Problem, wanted: tuple[str, ...], progress: Callable[[int, int], None] | None,
                  workers: int, block_rows: int) -> dict[str, np.ndarray]:
    """The stages, a block of ``block_rows`` queries of one head at a time: those of unit "problem"
    (keys and values) once, those of unit "block" per block with the Flow's fast arithmetic, then
    those of unit "heads" per band of queries once every head of the band is done. Returns the
    ``wanted`` steps made, by name, with every axis."""
    sizes = sizes_of(problem)
    shared: dict[str, np.ndarray] = {}
    whole = Flow(problem, shared=shared)
    arrays: dict[str, np.ndarray] = {}
    runs = running(sizes)
    block_stages = [stage for stage in runs if stage.unit == "block"]
    heads_stages = [stage for stage in runs if stage.unit == "heads" and not stage.requested]
    assembled = block_stages[-1]  # what each block contributes to: its head's columns of its rows
    # a per-query step asked for (q, q_rotated…) is made whole, with every block stage before it (the
    # rotation reads the norm's Q); none of these has a key axis (LIGHT_STEPS)
    asked = [index for index, stage in enumerate(block_stages) if stage.name in wanted and stage is not assembled]
    made_whole = {stage.name for stage in block_stages[:max(asked) + 1]} if asked else set()
    upfront = [stage for stage in runs if stage.unit == "problem" or stage.name in made_whole]

    def make_whole(stage: Stage) -> None:
        made = stage.make(whole)
        # each head's rows contiguous: the blocks read them head by head (V gets so beside its
        # column of ones, in finish_slot: one copy of the values, not two)
        array = whole.put(stage.name, stage.slot, made if stage.slot == "v" else np.ascontiguousarray(made))
        check_finite(stage.name, array, problem)
        if stage.unit == "problem":
            shared[stage.slot] = array

    def finish_slot(slot: str) -> None:
        # on the thread that made the slot's last stage: the other slot's chain runs meanwhile
        if slot == "v":
            share_values_with_ones(shared)
        elif slot == "k":  # the largest |key| of each key/value head, for bounds on its scores
            shared["key_norms"] = np.sqrt(np.maximum.reduce(np.square(shared["k"]).sum(axis=-1), axis=-1))

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        _make_upfront(make_whole, finish_slot, upfront, workers if not made_whole else 1)
        arrays.update((stage.name, whole.made[stage.name]) for stage in upfront if stage.name in wanted)
        whole.arrays.clear()
        whole.made.clear()  # what the blocks need is in shared: drop the rest before they run
        # the fast arithmetic (scale folded into Q, totals from V's ones) holds for masks, groups,
        # rotations and norms; what acts on the logits themselves, or NaN rows, takes the plain one
        fast = not (problem.softcap or problem.additive or problem.sinks is not None
                    or problem.masked_rows == "nan" or problem.precision is not None)
        fold = _query_fold(problem)
        fold_factor = float(np.abs(fold(np.ones(1, dtype=problem.x.dtype)))[0])
        key_norms = shared.pop("key_norms")  # for bounds on the scores: |q·k| <= |q|·|k|
        with np.errstate(divide="ignore"):
            shared["query_limit"] = SHIFT_FREE_EXPONENT[problem.x.dtype] / (fold_factor * key_norms)
        largest = float(np.finfo(problem.x.dtype).max)
        batch, heads, q_len = problem.x.shape[0], problem.heads, problem.x.shape[1]
        bands = [(b, start, min(start + block_rows, q_len)) for b in range(batch)
                 for start in range(0, q_len, block_rows)]
        blocks = [Block(b, h, heads, start, stop, *reversed(keys_needed(problem, b, h, start, stop)), problem.kv_heads)
                  for b, start, stop in bands for h in range(heads)]
        axis_sizes = sizes.axis_sizes()
        shape = tuple(axis_sizes[axis] for axis in assembled.axes)
        # the heads' results joined: whole when asked for, else one band at a time
        merged = np.empty(shape, dtype=problem.x.dtype) if assembled.name in wanted else None
        band_of = {(b, start): index for index, (b, start, _) in enumerate(bands)}
        joined: dict[int, np.ndarray] = {}
        remaining = dict.fromkeys(range(len(bands)), heads)
        made: dict[str, np.ndarray] = {}
        band_errors: dict[int, ProblemError] = {}
        lock = threading.Lock()

        def band_array(index: int) -> np.ndarray:
            b, start, stop = bands[index]
            with lock:
                if index not in joined:
                    joined[index] = merged[b:b + 1, start:stop] if merged is not None else np.empty(
                        (1, stop - start, *shape[2:]), dtype=problem.x.dtype)
                return joined[index]

        def finish_band(index: int) -> None:
            # the stages that mix heads, on this band's rows: kept in the whole step's array
            b, start, stop = bands[index]
            after = Flow(problem)
            after.put(assembled.name, assembled.slot, joined.pop(index))
            for stage in heads_stages:
                array = after.put(stage.name, stage.slot, stage.make(after))
                if index not in band_errors:
                    try:
                        check_finite(stage.name, array, problem, block=Block(b, 0, heads, start, stop, 0))
                    except ProblemError as error:  # raised after the blocks: theirs come first
                        band_errors[index] = error
                with lock:
                    if stage.name not in made:
                        made[stage.name] = np.empty((batch, q_len, *array.shape[2:]), dtype=array.dtype)
                made[stage.name][b:b + 1, start:stop] = array

        def overflow_possible(flow: Flow) -> bool:
            # |q·k| <= |q|·|k| (Cauchy-Schwarz): far below the largest float, no score or logit of
            # this block overflowed, and the pass over every score that would prove it is saved
            block = flow.block
            return fold_factor * flow.query_peak() * float(key_norms[block.batch, block.kv_head]) >= largest / 4

        def run(block: Block) -> None:
            # numpy's error state is per thread: the workers set their own
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                if fast:
                    flow = _block_flow(problem, block, shared, fast=True, fold=fold, power=np.exp2)
                    plain = False
                    for stage in block_stages:
                        array = flow.put(stage.name, stage.slot, stage.make(flow))
                        plain = plain or (stage.checked == "all" and not math.isfinite(np.add.reduce(array, axis=None)))
                    contribution = flow.made[assembled.name]
                if not fast or plain or overflow_possible(flow) or (
                        not math.isfinite(np.add.reduce(contribution, axis=None)) and np.isnan(contribution).any()):
                    # run the block plainly: it names the step and cell that overflowed, as the full
                    # path does, or gives the numbers when only the fast arithmetic overflowed
                    contribution = _plain_block(problem, block, shared)[assembled.name]
                index = band_of[block.batch, block.start]
                local = block._replace(start=0, stop=block.stop - block.start)
                array = band_array(index)
                array[local.slices(array.shape, assembled.axes)] = contribution
                with lock:
                    remaining[index] -= 1
                    last = remaining[index] == 0
                if last:
                    finish_band(index)

        _run_tasks(run, blocks, workers if len(blocks) > 1 else 1, progress,
                   order=lambda block: (block.batch, block.head, block.start))
        shared.clear()
        if band_errors:
            raise band_errors[min(band_errors)]
    if merged is not None and assembled.present(sizes):
        arrays[assembled.name] = merged
    arrays.update((name, array) for name, array in made.items() if name in wanted)
    return arrays


def _make_upfront(make: Callable[[Stage], None], finish: Callable[[str], None], stages: list[Stage],
                  workers: int) -> None:
    """Make ``stages`` (those made once, before the blocks) in order, and ``finish(slot)`` once a
    slot's chain of stages (K and what transforms it; V) is made; with two workers or more, each
    chain on its own thread with one BLAS thread: OpenBLAS's own threads would spin on after a
    product and slow the blocks that follow (by about a tenth in float32). On an overflow, the error
    of the stage first in order is raised."""
    chains: dict[str, list[Stage]] = {}
    for stage in stages:
        chains.setdefault(stage.slot, []).append(stage)
    if workers <= 1 or len(chains) < 2:
        for stage in stages:
            make(stage)
        for slot in chains:
            finish(slot)
        return
    errors: dict[int, ProblemError] = {}

    def run(chain: list[Stage]) -> None:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for stage in chain:
                try:
                    make(stage)
                except ProblemError as error:
                    errors[stages.index(stage)] = error
                    return
            finish(chain[0].slot)

    _run_tasks(run, list(chains.values()), workers, None, order=lambda chain: stages.index(chain[0]))
    if errors:
        raise errors[min(errors)]


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
    for stage in running(sizes):
        if stage.unit != "block":
            continue
        array = flow.put(stage.name, stage.slot, stage.make(flow))
        if stage.checked and stage.present(sizes):
            check_finite(stage.name, array, problem, flow.allowed if stage.checked == "allowed" else None, block)
    return flow.made


def _query_fold(problem: Problem) -> Callable[[np.ndarray], np.ndarray]:
    """What the blocked path does to Q instead of scaling every score: the scale (÷√head_dim, or
    × the factor), and × log2(e), for its exponentials are powers of 2: numpy's exp2 runs faster
    than its exp (with AVX-512 about twice in float32), and 2^(score·log2 e) is e^score."""
    log2_e = np.asarray(np.log2(np.e), dtype=problem.x.dtype)

    def fold(queries: np.ndarray) -> np.ndarray:
        # scaled() is the logits stage's own scaling, here of Q: (q/√d)·k = (q·k)/√d up to rounding
        queries = scaled(queries, problem)
        return queries * log2_e

    return fold


def _run_tasks(run: Callable[[Any], None], tasks: list, workers: int,
               progress: Callable[[int, int], None] | None, order: Callable[[Any], Any]) -> None:
    """Run every task, on ``workers`` threads when more than one (numpy releases the GIL in its
    products and ufuncs), reporting progress as tasks finish. On an error the tasks not started
    are cancelled, and the error of the earliest task by ``order`` is raised (those not run that
    come before it are run first): the same one whichever thread got there first, and for blocks
    the first cell in the full path's order."""
    total = len(tasks)
    if workers <= 1:
        for done, task in enumerate(tasks, start=1):
            try:
                run(task)
            except ProblemError as error:
                _raise_earliest(run, [(order(task), error)], [other for other in tasks[done:]], order)
            if progress:
                progress(done, total)
        return
    # here, not at the top: the thread pool (and the logging it imports) is for large problems only
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
            wait(futures)
            failed = [(order(task), future.exception()) for task, future in zip(tasks, futures, strict=True)
                      if not future.cancelled() and future.exception() is not None]
            _raise_earliest(run, failed, [task for task, future in zip(tasks, futures, strict=True)
                                          if future.cancelled()], order)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _raise_earliest(run: Callable[[Any], None], failed: list[tuple[Any, BaseException]], not_run: list,
                    order: Callable[[Any], Any]) -> None:
    """Raise the earliest of the ``failed`` tasks' errors by ``order``, or that of a task ``not_run``
    before it, which is run now (in order) to see."""
    first, error = min(failed, key=lambda pair: pair[0])
    for task in sorted((task for task in not_run if order(task) < first), key=order):
        try:
            run(task)
        except ProblemError as earlier:
            raise earlier from None
    if not isinstance(error, ProblemError):
        raise error
    raise error from None


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
        f"{name} overflows {dtype} at ({position}): beyond ±{largest_text(dtype)}; "
        "scale the inputs or weights down",
        {name: present_shape(tuple(axis_sizes[axis] for axis in axes), name, problem.batched, problem.heads,
                             problem.kv_heads)},
    )
