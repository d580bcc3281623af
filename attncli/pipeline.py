"""Run the stages: the whole trace, or the output alone a block of queries at a time.

The arithmetic lives in stages.py; this module decides which path a problem takes, checks every
step for overflow, and packs the results into a Trace. No I/O and no printing: problems are
reported by raising ProblemError.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import numpy as np

from attncli.blas import single_threaded_blas
from attncli.errors import ProblemError
from attncli.problem import Problem
from attncli.sizes import Sizes, sizes_of
from attncli.stages import (
    RIGHT,
    STAGE,
    STAGES,
    STEP_AXES,
    Flow,
    Slip,
    dot_scores,
    exponentials,
    masked,
    output_projection,
    project,
    row_shift,
    weighted_values,
)
from attncli.trace import Step, Trace, TraceMeta, present_axes, present_shape

# Steps that need no full score matrix: asked for alone, the scores are made block by block.
LIGHT_STEPS = frozenset({"q", "k", "v", "concat", "output"})
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

    When no step asked for is a score matrix (scores, logits, softmax) and the problem has at
    least BLOCKED_MIN_CELLS scores, they are made a block of queries at a time on ``workers``
    threads (memory O(block × k_len) per worker, not O(batch × heads × q_len × k_len)) and
    ``progress(done, total)`` is called as blocks finish; the numbers agree with the full
    computation to about 1e-15 relative in float64 (the last digit may differ).
    """
    wanted = tuple(steps) if steps else None
    if wanted is not None and set(wanted) <= LIGHT_STEPS and _blocked_pays(problem):
        return _blocked_attention(problem, wanted, progress, workers)
    return full_attention(problem, wanted)


def blocked_path(problem: Problem, steps: list[str] | tuple[str, ...] | None) -> bool:
    """Whether ``attention(problem, steps)`` computes in blocks (and so needs no room for scores)."""
    return bool(steps) and set(steps) <= LIGHT_STEPS and _blocked_pays(problem)


def _blocked_pays(problem: Problem) -> bool:
    # small problems take the full path: the same last digits whichever steps are asked for
    return problem.x.shape[0] * problem.heads * problem.x.shape[1] * problem.context.shape[1] >= BLOCKED_MIN_CELLS


def problem_steps(problem: Problem) -> tuple[str, ...]:
    """The steps this problem has, in order: logits only when scaled or masked, concat only with W_O."""
    sizes = sizes_of(problem)
    return tuple(stage.name for stage in STAGES if stage.shown and stage.present(sizes))


def full_trace_bytes(problem: Problem) -> int:
    """About how many bytes computing every step of ``problem`` holds at once: every step's array
    (logits and concat too, which some problems share with their neighbours) and, for the
    temporaries of the softmax, one more score matrix."""
    axis_sizes = sizes_of(problem).axis_sizes()
    cells = {name: math.prod(axis_sizes[axis] for axis in axes) for name, axes in STEP_AXES.items()}
    return (sum(cells.values()) + cells["softmax"]) * problem.x.itemsize


def full_attention(problem: Problem, wanted: tuple[str, ...] | None = None, slip: Slip = RIGHT) -> Trace:
    """Run every stage on a validated Problem (with ``slip``: one of check's known slips) and return
    its Trace (of the ``wanted`` steps only, when given: every step is still computed and checked).

    The Trace drops the batch axis when x had none and the heads axis when heads == 1.
    Raises ProblemError when a step overflows its dtype.
    """
    sizes = sizes_of(problem)
    flow = Flow(problem, slip)
    shown = []
    # Overflow is checked step by step below and reported by name, so numpy's warnings are noise.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for stage in STAGES:
            array = flow.arrays[stage.name] = stage.run(flow)
            if stage.shown and stage.present(sizes):
                if stage.checked:
                    # a masked score may overflow: it is never used
                    check_finite(stage.name, array, problem, flow.allowed if stage.checked == "allowed" else None)
                shown.append(stage)
    steps = {stage.name: _step(stage.name, flow.arrays[stage.name], problem, sizes)
             for stage in shown if wanted is None or stage.name in wanted}
    # asked-for steps this problem lacks stay out, so Trace.select can say so
    available = tuple(stage.name for stage in shown) if wanted is not None else ()
    return Trace(steps=steps, meta=TraceMeta.of(problem), warnings=_masked_row_warnings(problem), available=available)


def _blocked_attention(
    problem: Problem, wanted: tuple[str, ...], progress: Callable[[int, int], None] | None, workers: int
) -> Trace:
    """The stages from the scores to the weighted values, a block of queries of one head at a time:
    the projections as heads-first products, the scale folded into W_Q, the softmax in place and
    normalised after the product with V."""
    heads, batch = problem.heads, problem.x.shape[0]
    q_len, k_len = problem.x.shape[1], problem.context.shape[1]
    head_dim_v = problem.head_dim_v
    sizes = sizes_of(problem)
    arrays: dict[str, np.ndarray] = {}
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if "q" in wanted:
            arrays["q"] = _projected_heads("q", problem.x, problem.w_query, problem.b_query, problem)
        keys = _projected_heads("k", problem.context, problem.w_key, problem.b_key, problem)
        values = _projected_heads("v", problem.context, problem.w_value, problem.b_value, problem)
        if "k" in wanted:
            arrays["k"] = keys
        if "v" in wanted:
            arrays["v"] = values
        # numpy's float32 exp2 runs about twice as fast as its exp: with log2(e) folded into Q too,
        # 2^(score·log2 e) is the same e^score
        power = np.exp2 if problem.w_query.dtype == np.float32 else np.exp
        w_query_heads, b_query_heads = _folded_query_weights(problem, power is np.exp2)
        # a column of ones beside V: softmax·[V | 1] gives the weighted values and the row sums in one product
        parts = {"keys": keys, "extended": np.concatenate(
            [values, np.ones(values.shape[:-1] + (1,), dtype=values.dtype)], axis=-1)}
        del keys, values
        concat = np.empty((batch, q_len, heads * head_dim_v), dtype=parts["extended"].dtype)
        causal = problem.mask_rule == "causal"
        block_rows = BLOCK_ROWS or max(16, BLOCK_BYTES // (k_len * parts["extended"].itemsize))
        tasks = [(b, h, start, min(start + block_rows, q_len))
                 for b in range(batch) for h in range(heads) for start in range(0, q_len, block_rows)]

        def run(task: tuple[int, int, int, int]) -> None:
            b, h, start, stop = task
            queries = project(problem.x[b, start:stop], w_query_heads[h],
                              None if b_query_heads is None else b_query_heads[h])
            # query i sees keys 0..i: keys past the block's last query are never needed
            k_stop = min(k_len, stop) if causal else k_len
            allowed = None
            if problem.mask is not None:
                allowed = problem.mask[min(b, problem.mask.shape[0] - 1), min(h, problem.mask.shape[1] - 1),
                                       start:stop, :k_stop]
            logits = masked(dot_scores(queries, parts["keys"][b, h, :k_stop]), allowed, in_place=True)
            shift = row_shift(logits, any_masked=True)
            if not np.isfinite(shift).all():
                # a row's largest logit is NaN or +inf: find the cell, report it as the full path does
                unused = np.zeros_like(logits, dtype=bool) if allowed is None else ~allowed
                where = np.argwhere(~(np.isfinite(logits) | unused))[0]
                _overflow("scores", logits.dtype, (b, h, start + int(where[0]), int(where[1])), problem, sizes)
            exponentials(logits, shift, power, out=logits)
            concat[b, start:stop, h * head_dim_v:(h + 1) * head_dim_v] = weighted_values(
                logits, parts["extended"][b, h, :k_stop], totals_appended=True)

        _run_tasks(run, tasks, workers if len(tasks) > 1 else 1, progress)
        parts.clear()  # K and V are no longer needed: free them before the output projection
        if problem.w_out is not None and "concat" in wanted:
            arrays["concat"] = concat
        output = output_projection(concat, problem)
        check_finite("output", output, problem)
        if "output" in wanted:
            arrays["output"] = output
    steps = {name: _step(name, arrays[name], problem, sizes) for name in STEP_AXES if name in arrays}
    return Trace(steps=steps, meta=TraceMeta.of(problem), warnings=_masked_row_warnings(problem),
                 available=problem_steps(problem))


def _folded_query_weights(problem: Problem, log2: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """W_Q and b_Q per head, (heads, d_model, head_dim) and (heads, head_dim), with the scale (and
    log2(e) when the exponentials are powers of 2) folded in: one multiplication of
    d_model × width, not one per score."""
    w_query, b_query = problem.w_query, problem.b_query
    if problem.scale == "sqrt":
        root = np.sqrt(np.asarray(problem.head_dim, dtype=w_query.dtype))
        w_query, b_query = w_query / root, (None if b_query is None else b_query / root)
    elif problem.scale_factor != 1.0:
        factor = np.asarray(problem.scale_factor, dtype=w_query.dtype)
        w_query, b_query = w_query * factor, (None if b_query is None else b_query * factor)
    if log2:
        log2_e = np.asarray(np.log2(np.e), dtype=w_query.dtype)
        w_query, b_query = w_query * log2_e, (None if b_query is None else b_query * log2_e)
    w_heads = np.ascontiguousarray(w_query.reshape(-1, problem.heads, problem.head_dim).transpose(1, 0, 2))
    return w_heads, None if b_query is None else b_query.reshape(problem.heads, problem.head_dim)


def _projected_heads(name: str, source: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                     problem: Problem) -> np.ndarray:
    """source·weight + bias split into heads, contiguous per head: (batch, heads, seq, dim).

    One product per head with that head's block of columns: the result is laid out head by
    head from the start, with no transposed copy of the whole projection."""
    heads = problem.heads
    weight_heads = np.ascontiguousarray(weight.reshape(weight.shape[0], heads, -1).transpose(1, 0, 2))
    # (batch, 1, seq, d_in)·(heads, d_in, dim)
    heads_first = project(source[:, None], weight_heads, None if bias is None else bias.reshape(heads, 1, -1))
    check_finite(name, heads_first, problem)
    return heads_first


def _run_tasks(run: Callable[[Any], None], tasks: list, workers: int,
               progress: Callable[[int, int], None] | None) -> None:
    """Run every task, on ``workers`` threads when more than one (numpy releases the GIL in its
    products and ufuncs), reporting progress as tasks finish; the first error is raised."""
    total = len(tasks)
    if workers <= 1:
        for done, task in enumerate(tasks, start=1):
            run(task)
            if progress:
                progress(done, total)
        return
    with single_threaded_blas(), ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, task) for task in tasks]
        try:
            for done, future in enumerate(as_completed(futures), start=1):
                future.result()
                if progress:
                    progress(done, total)
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def check_finite(name: str, array: np.ndarray, problem: Problem, allowed: np.ndarray | None = None) -> None:
    """ProblemError naming the first cell of step ``name`` (full axes) that overflowed its dtype;
    cells ``allowed`` marks False (masked) are not used and may overflow."""
    # a finite sum means every value is finite (one reduction, the cheap test run on every step);
    # an infinite one may be a masked −∞ or a sum too large, and gets the cell-by-cell test
    if allowed is None and math.isfinite(np.add.reduce(array, axis=None)):
        return
    finite = np.isfinite(array)
    if allowed is not None:
        finite |= ~allowed
    if not finite.all():
        _overflow(name, array.dtype, tuple(int(i) for i in np.argwhere(~finite)[0]), problem, sizes_of(problem))


def _overflow(name: str, dtype: np.dtype, where: tuple[int, ...], problem: Problem, sizes: Sizes) -> None:
    axes = present_axes(name, problem.batched, problem.heads)
    position = ", ".join(f"{axis} {index}" for axis, index in zip(STEP_AXES[name], where, strict=True) if axis in axes)
    full_shape = tuple(sizes.axis_sizes()[axis] for axis in STEP_AXES[name])
    raise ProblemError(
        f"{name} overflows {dtype} at ({position}): beyond ±{_largest(dtype)}; scale the inputs or weights down",
        {name: present_shape(full_shape, name, problem.batched, problem.heads)},
    )


def _largest(dtype: np.dtype) -> str:
    return f"{np.finfo(dtype).max:.1e}".replace("e+", "e")


def formula(name: str, problem: Problem) -> str:
    """The formula of step ``name`` for this problem, e.g. ``Q = x·W_Q + b_Q``."""
    return STAGE[name].formula(sizes_of(problem))


def _step(name: str, array: np.ndarray, problem: Problem, sizes: Sizes) -> Step:
    return Step(
        name=name,
        formula=STAGE[name].formula(sizes),
        array=array.reshape(present_shape(array.shape, name, problem.batched, problem.heads)),
        axes=present_axes(name, problem.batched, problem.heads),
    )


def _masked_row_warnings(problem: Problem) -> tuple[str, ...]:
    if problem.mask is None:
        return ()
    blind = ~problem.mask.any(axis=-1)  # (batch | 1, heads | 1, q_len)
    places = np.argwhere(blind)
    if not len(places):
        return ()
    names = []
    for batch_index, head_index, query in places[:5]:
        name = f"query {query}"
        if problem.batched:
            name += f" of batch item {batch_index}" if problem.mask.shape[0] > 1 else " of every batch item"
        if problem.heads > 1:
            name += f", head {head_index}" if problem.mask.shape[1] > 1 else ", every head"
        names.append(name)
    more = f" and {len(places) - 5} more" if len(places) > 5 else ""
    return (
        f"every key is masked for {'; '.join(names)}{more}: "
        "its weights are 0 and its per-head output is 0",
    )
