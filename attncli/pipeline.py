"""Scaled dot-product attention, step by step, in float64 numpy.

The arithmetic is that of PyTorch's ``nn.MultiheadAttention`` and
``F.scaled_dot_product_attention``: project, split the width into contiguous
per-head blocks, scores = Q·Kᵀ, multiply by the scale, mask with −∞, softmax
over the keys, weight the values, concatenate the heads, project out.
No I/O and no printing: problems are reported by raising ProblemError.
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
from attncli.trace import STEP_AXES, Step, Trace, present_axes, present_shape


def split_heads(projected: np.ndarray, heads: int) -> np.ndarray:
    """(batch, seq, heads*dim) -> (batch, heads, seq, dim); head h takes columns h*dim:(h+1)*dim."""
    batch, seq, width = projected.shape
    return projected.reshape(batch, seq, heads, width // heads).transpose(0, 2, 1, 3)


def merge_heads(per_head: np.ndarray) -> np.ndarray:
    """(batch, heads, seq, dim) -> (batch, seq, heads*dim): the inverse of split_heads."""
    batch, heads, seq, dim = per_head.shape
    return per_head.transpose(0, 2, 1, 3).reshape(batch, seq, heads * dim)


def masked_softmax(logits: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    """Softmax over the last axis of ``logits`` (..., q_len, k_len), computed stably.

    ``allowed`` (broadcastable to ``logits``, True = may attend) marks the keys
    a query may see; masked logits are expected to be −∞ already. A row with
    no allowed key gets weights 0, as PyTorch's SDPA gives, rather than NaN.
    """
    # ufuncs called directly: this runs once per problem of a JSON Lines stream, where the
    # method wrappers' overhead is a fair share of the whole
    row_max = np.maximum.reduce(logits, axis=-1, keepdims=True)
    if allowed is not None:
        # a fully masked row has max −∞; shifting by 0 instead keeps exp(−∞) = 0, not NaN
        row_max[np.isneginf(row_max)] = 0.0
    weights = np.exp(np.subtract(logits, row_max))
    totals = np.add.reduce(weights, axis=-1, keepdims=True)
    if allowed is None:
        return np.divide(weights, totals, out=weights)  # every row has a positive total
    np.divide(weights, totals, out=weights, where=totals > 0)
    return weights


def masked_logits(scores: np.ndarray, problem: Problem) -> np.ndarray:
    """scores × the problem's scale, −∞ where its mask blocks: (batch, heads, q_len, k_len)."""
    if problem.scale == "sqrt":
        # one rounding (÷√d) instead of two (×(1/√d)): closer to the exact value
        logits = scores / math.sqrt(problem.head_dim)
    else:
        logits = scores * problem.scale_factor
    return logits if problem.mask is None else np.where(problem.mask, logits, -np.inf)


def weighted_values(weights: np.ndarray, values: np.ndarray) -> np.ndarray:
    """softmax·V per head: (batch, heads, q_len, k_len) · (batch, heads, k_len, head_dim_v).

    Each row is a convex combination of V's rows, so it lies within their range; when rounding
    pushes a sum of values near ±1.8e308 to ±inf, the range's bound is the right answer.
    """
    per_head = weights @ values
    if math.isfinite(np.add.reduce(per_head, axis=None)):
        return per_head
    if not np.isfinite(per_head).all() and np.isfinite(values).all():
        low, high = values.min(axis=-2, keepdims=True), values.max(axis=-2, keepdims=True)
        per_head = np.where(np.isfinite(per_head), per_head, np.clip(per_head, low, high))
    return per_head


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
    """Run the pipeline on a validated Problem and return the Trace of ``steps`` (None: all).

    When no step asked for is a score matrix (scores, logits, softmax) and the problem has at
    least BLOCKED_MIN_CELLS scores, they are made a block of queries at a time on ``workers``
    threads (memory O(block × k_len) per worker, not O(batch × heads × q_len × k_len)) and
    ``progress(done, total)`` is called as blocks finish; the numbers agree with the full
    computation to about 1e-15 relative in float64 (the last digit may differ).
    """
    wanted = tuple(steps) if steps else None
    cells = problem.x.shape[0] * problem.heads * problem.x.shape[1] * problem.context.shape[1]
    # small problems take the full path: the same last digits whichever steps are asked for
    if wanted is not None and set(wanted) <= LIGHT_STEPS and cells >= BLOCKED_MIN_CELLS:
        trace = _blocked_attention(problem, wanted, progress, workers)
    else:
        trace = full_attention(problem, wanted)
    if wanted is None:
        return trace
    kept = {name: step for name, step in trace.steps.items() if name in wanted}
    # asked-for steps this problem lacks stay out, so Trace.select can say so
    return Trace(steps=kept, meta=trace.meta, warnings=trace.warnings, available=problem_steps(problem))


def problem_steps(problem: Problem) -> tuple[str, ...]:
    """The steps this problem has, in order: logits only when scaled or masked, concat only with W_O."""
    return tuple(name for name in STEP_AXES
                 if (name != "logits" or _has_logits(problem)) and (name != "concat" or problem.w_out is not None))


def full_trace_bytes(problem: Problem) -> int:
    """About how many bytes computing every step of ``problem`` holds at once: q, k, v, the three
    score matrices (scores, logits, softmax) plus one more for the temporaries, concat and output."""
    batch, q_len, _ = problem.x.shape
    k_len = problem.context.shape[1]
    width, width_v = problem.w_query.shape[1], problem.w_value.shape[1]
    d_out = problem.w_out.shape[1] if problem.w_out is not None else width_v
    cells = (batch * (q_len * width + k_len * (width + width_v) + q_len * (width_v + d_out))
             + 4 * batch * problem.heads * q_len * k_len)
    return cells * problem.x.itemsize


def full_attention(problem: Problem, wanted: tuple[str, ...] | None = None) -> Trace:
    """Run the whole pipeline on a validated Problem and return its Trace (of the ``wanted`` steps
    only, when given: every step is still computed and checked).

    Internally every array has both a batch and a heads axis:
    q (batch, heads, q_len, head_dim), k (batch, heads, k_len, head_dim),
    v (batch, heads, k_len, head_dim_v), scores/logits/softmax
    (batch, heads, q_len, k_len), concat (batch, q_len, heads*head_dim_v),
    output (batch, q_len, d_out). The Trace drops the batch axis when x had
    none and the heads axis when heads == 1.
    Raises ProblemError when a step overflows float64.
    """
    heads = problem.heads
    arrays: dict[str, np.ndarray] = {}
    # Overflow is checked step by step below and reported by name, so numpy's warnings are noise.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for name, source, weight, bias in (
            ("q", problem.x, problem.w_query, problem.b_query),
            ("k", problem.context, problem.w_key, problem.b_key),
            ("v", problem.context, problem.w_value, problem.b_value),
        ):
            projected = source @ weight
            if bias is not None:
                projected += bias
            arrays[name] = split_heads(projected, heads)
            _check_finite(name, arrays[name], problem)

        allowed = problem.mask
        arrays["scores"] = arrays["q"] @ arrays["k"].swapaxes(-1, -2)
        # a masked score may overflow: it is never used
        _check_finite("scores", arrays["scores"], problem, allowed)

        logits = arrays["scores"]
        if _has_logits(problem):
            logits = masked_logits(logits, problem)
            _check_finite("logits", logits, problem, allowed)
            arrays["logits"] = logits

        arrays["softmax"] = masked_softmax(logits, allowed)
        # finite: each row is clipped into the range of V's rows, which are finite
        concat = merge_heads(weighted_values(arrays["softmax"], arrays["v"]))
        if problem.w_out is not None:
            arrays["concat"] = concat
        arrays["output"] = output_projection(concat, problem)

    steps = {
        name: _step(name, arrays[name], problem)
        for name in STEP_AXES
        if name in arrays and (wanted is None or name in wanted)
    }
    return Trace(steps=steps, meta=_meta(problem), warnings=_masked_row_warnings(problem))


def output_projection(concat: np.ndarray, problem: Problem) -> np.ndarray:
    """concat·W_O + b_O (batch, q_len, d_out), or concat itself without W_O; checked for overflow."""
    output = concat
    if problem.w_out is not None:
        output = concat @ problem.w_out
        if problem.b_out is not None:
            output += problem.b_out
    _check_finite("output", output, problem)
    return output


def _blocked_attention(
    problem: Problem, wanted: tuple[str, ...], progress: Callable[[int, int], None] | None, workers: int
) -> Trace:
    heads, batch = problem.heads, problem.x.shape[0]
    q_len, k_len = problem.x.shape[1], problem.context.shape[1]
    head_dim, head_dim_v = problem.head_dim, problem.head_dim_v
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
        # Q is made block by block from x, with the scale folded into W_Q and b_Q: one multiplication
        # of d_model × width, not one per score
        w_query, b_query = problem.w_query, problem.b_query
        if problem.scale == "sqrt":
            root = np.sqrt(np.asarray(head_dim, dtype=w_query.dtype))
            w_query, b_query = w_query / root, (None if b_query is None else b_query / root)
        elif problem.scale_factor != 1.0:
            factor = np.asarray(problem.scale_factor, dtype=w_query.dtype)
            w_query, b_query = w_query * factor, (None if b_query is None else b_query * factor)
        # numpy's float32 exp2 runs about twice as fast as its exp: with log2(e) folded into Q too,
        # 2^(score·log2 e) is the same e^score
        power = np.exp2 if w_query.dtype == np.float32 else np.exp
        if power is np.exp2:
            log2_e = np.asarray(np.log2(np.e), dtype=w_query.dtype)
            w_query, b_query = w_query * log2_e, (None if b_query is None else b_query * log2_e)
        w_query_heads = np.ascontiguousarray(w_query.reshape(-1, heads, head_dim).transpose(1, 0, 2))
        b_query_heads = None if b_query is None else b_query.reshape(heads, head_dim)
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
            queries = problem.x[b, start:stop] @ w_query_heads[h]
            if b_query_heads is not None:
                queries += b_query_heads[h]
            # query i sees keys 0..i: keys past the block's last query are never needed
            k_stop = min(k_len, stop) if causal else k_len
            scores = queries @ parts["keys"][b, h, :k_stop].T
            if problem.mask is not None:
                allowed = problem.mask[min(b, problem.mask.shape[0] - 1), min(h, problem.mask.shape[1] - 1),
                                       start:stop, :k_stop]
                np.copyto(scores, -np.inf, where=~allowed)
            row_max = scores.max(axis=1, keepdims=True)
            if not np.isfinite(row_max).all():
                broken = np.isnan(row_max) | np.isposinf(row_max)
                if broken.any():
                    raise ProblemError(
                        f"scores overflow {scores.dtype} in query {start + int(np.argmax(broken))} (beyond "
                        f"±{_largest(scores.dtype)}); scale the inputs or weights down",
                        {"scores": (q_len, k_len)},
                    )
                row_max[np.isneginf(row_max)] = 0.0  # a row with every key masked: weights 0, not NaN
            np.subtract(scores, row_max, out=scores)
            power(scores, out=scores)
            extended = parts["extended"][b, h, :k_stop]
            weighted = scores @ extended
            totals = weighted[:, -1:]
            block = np.divide(weighted[:, :-1], totals, out=np.zeros_like(weighted[:, :-1]), where=totals > 0)
            if not np.isfinite(block).all():
                # a convex combination of V's rows lies in their range: rounding past ±max is that bound
                v_block = extended[:, :-1]
                block = np.where(np.isfinite(block), block, np.clip(block, v_block.min(axis=0), v_block.max(axis=0)))
            concat[b, start:stop, h * head_dim_v:(h + 1) * head_dim_v] = block

        _run_tasks(run, tasks, workers if len(tasks) > 1 else 1, progress)
        parts.clear()  # K and V are no longer needed: free them before the output projection
        if problem.w_out is not None and "concat" in wanted:
            arrays["concat"] = concat
        output = output_projection(concat, problem)
        if "output" in wanted:
            arrays["output"] = output
    steps = {name: _step(name, arrays[name], problem) for name in STEP_AXES if name in arrays}
    return Trace(steps=steps, meta=_meta(problem), warnings=_masked_row_warnings(problem))


def _projected_heads(name: str, source: np.ndarray, weight: np.ndarray, bias: np.ndarray | None,
                     problem: Problem) -> np.ndarray:
    """source·weight + bias split into heads, contiguous per head: (batch, heads, seq, dim).

    One product per head with that head's block of columns: the result is laid out head by
    head from the start, with no transposed copy of the whole projection."""
    heads = problem.heads
    weight_heads = np.ascontiguousarray(weight.reshape(weight.shape[0], heads, -1).transpose(1, 0, 2))
    heads_first = np.matmul(source[:, None], weight_heads)  # (batch, 1, seq, d_in)·(heads, d_in, dim)
    if bias is not None:
        heads_first += bias.reshape(heads, 1, -1)
    _check_finite(name, heads_first, problem)
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


def _largest(dtype: np.dtype) -> str:
    return f"{np.finfo(dtype).max:.1e}".replace("e+", "e")


def _check_finite(name: str, array: np.ndarray, problem: Problem, allowed: np.ndarray | None = None) -> None:
    # a finite sum means every value is finite (one reduction, the cheap test run on every step);
    # an infinite one may be a masked −∞ or a sum too large, and gets the cell-by-cell test
    if allowed is None and math.isfinite(np.add.reduce(array, axis=None)):
        return
    finite = np.isfinite(array)
    if allowed is not None:
        finite |= ~allowed
    if not finite.all():
        where = np.argwhere(~finite)[0]
        axes = present_axes(name, problem.batched, problem.heads)
        position = ", ".join(
            f"{axis} {int(index)}" for axis, index in zip(STEP_AXES[name], where, strict=True) if axis in axes
        )
        raise ProblemError(
            f"{name} overflows {array.dtype} at ({position}): beyond ±{_largest(array.dtype)}; "
            "scale the inputs or weights down",
            {name: present_shape(array.shape, name, problem.batched, problem.heads)},
        )


def _step(name: str, array: np.ndarray, problem: Problem) -> Step:
    axes = present_axes(name, problem.batched, problem.heads)
    return Step(
        name=name,
        formula=formula(name, problem),
        array=array.reshape(present_shape(array.shape, name, problem.batched, problem.heads)),
        axes=axes,
    )


def formula(name: str, problem: Problem) -> str:
    """The formula of step ``name`` for this problem, e.g. ``Q = x·W_Q + b_Q``."""
    source = "context" if problem.cross else "x"
    match name:
        case "q":
            return "Q = x·W_Q" + (" + b_Q" if problem.b_query is not None else "")
        case "k":
            return f"K = {source}·W_K" + (" + b_K" if problem.b_key is not None else "")
        case "v":
            return f"V = {source}·W_V" + (" + b_V" if problem.b_value is not None else "")
        case "scores":
            return "scores = Q·Kᵀ"
        case "logits":
            factor = problem.scale_factor
            scaled = "scores" if factor == 1.0 else (
                "scores / √head_dim" if problem.scale == "sqrt" else f"scores × {factor:g}"
            )
            return "logits = " + scaled + (", masked → −∞" if problem.mask is not None else "")
        case "softmax":
            return "softmax = softmax(" + ("logits" if _has_logits(problem) else "scores") + ") over keys"
        case "concat":
            return "concat = [softmax·V for each head]" if problem.heads > 1 else "concat = softmax·V"
        case _:
            if problem.w_out is not None:
                return "output = concat·W_O" + (" + b_O" if problem.b_out is not None else "")
            return "output = [softmax·V for each head]" if problem.heads > 1 else "output = softmax·V"


def _has_logits(problem: Problem) -> bool:
    return problem.scale_factor != 1.0 or problem.mask is not None


# numpy's dtype.name is slow enough to matter once per problem in a stream
_DTYPE_NAMES = {"d": "float64", "f": "float32"}


def _meta(problem: Problem) -> dict:
    return {
        "heads": problem.heads,
        "head_dim": problem.head_dim,
        "head_dim_v": problem.head_dim_v,
        "batched": problem.batched,
        "cross_attention": problem.cross,
        "scale": {
            "rule": problem.scale if isinstance(problem.scale, str) else "number",
            "factor": problem.scale_factor,
        },
        "mask": problem.mask_rule,
        "dtype": _DTYPE_NAMES.get(problem.x.dtype.char) or str(problem.x.dtype),
    }


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
