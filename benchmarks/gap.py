"""What is left between attncli and PyTorch on the MHA rows of benchmarks/large.py, and where.

For L=4096, 8 heads of 64, d_model 512, output only, in float32 and float64, printed are:

1. the two whole runs, attncli's (`attention(problem, ["output"])`) and PyTorch's (projections,
   F.scaled_dot_product_attention, output projection), medians of the rounds, timed in turn;
2. attncli's time per stage, summed over its worker threads (each Stage.make timed in a run of
   its own), with GFLOP/s per thread for the products, against the wall time of that run;
3. PyTorch's parts timed alone: the four projections and SDPA;
4. the blocked path's two products for one block of queries, with one thread, in numpy's BLAS
   (OpenBLAS) and in PyTorch's (MKL): Q·Kᵀ (rows × head_dim)·(head_dim × L) and weights·[V | 1]
   (rows × L)·(L × head_dim + 1), and the latter without the column of ones.

Rerun:  python benchmarks/gap.py [--repeat 5]   (needs torch: `pip install torch==2.13.0`)
"""

from __future__ import annotations

import argparse
import collections
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attention import timed  # noqa: E402  (beside this script)
from large import Case, make_problem, torch_runner  # noqa: E402

from attncli import pipeline, stages  # noqa: E402
from attncli.blas import single_threaded_blas  # noqa: E402

PRODUCTS = ("q", "k", "v", "scores", "weighted", "output")


def stage_times(problem, repeat: int) -> tuple[dict[str, float], float]:
    """Each stage's time summed over the threads that ran it, and the run's wall time: of the
    run with the median wall time of ``repeat`` runs."""
    totals: dict[str, float] = collections.defaultdict(float)
    lock, make = threading.Lock(), stages.Stage.make

    def timed(stage, flow):
        start = time.perf_counter()
        made = make(stage, flow)
        with lock:
            totals[stage.name] += time.perf_counter() - start
        return made

    runs = []
    stages.Stage.make = timed
    try:
        for _ in range(repeat):
            totals.clear()
            start = time.perf_counter()
            pipeline.attention(problem, ["output"])
            runs.append((time.perf_counter() - start, dict(totals)))
    finally:
        stages.Stage.make = make
    wall, found = sorted(runs, key=lambda run: run[0])[len(runs) // 2]
    return found, wall


def stage_flops(case: Case) -> dict[str, float]:
    seq, width, d_model = case.seq_len, case.heads * case.head_dim, case.d_model
    product = 2 * case.heads * seq * seq * case.head_dim
    return {"q": 2 * seq * d_model * width, "k": 2 * seq * d_model * width, "v": 2 * seq * d_model * width,
            "scores": product, "weighted": product * (case.head_dim + 1) / case.head_dim,
            "output": 2 * seq * width * d_model}


def block_products(case: Case, repeat: int) -> list[tuple[str, float, float | None]]:
    """(product, numpy ms, torch ms) for one block's products, one thread each."""
    try:
        import torch
    except ImportError:
        torch = None
    dtype = np.dtype(case.dtype)
    rows = pipeline.block_rows(case.seq_len, dtype.itemsize)
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((rows, case.head_dim)).astype(dtype)
    keys = rng.standard_normal((case.seq_len, case.head_dim)).astype(dtype)
    weights = rng.random((rows, case.seq_len)).astype(dtype)
    values = rng.standard_normal((case.seq_len, case.head_dim + 1)).astype(dtype)
    shapes = {f"Q·Kᵀ ({rows}×{case.head_dim})·({case.head_dim}×{case.seq_len})": (queries, keys.T),
              f"P·[V|1] ({rows}×{case.seq_len})·({case.seq_len}×{case.head_dim + 1})": (weights, values),
              f"P·V ({rows}×{case.seq_len})·({case.seq_len}×{case.head_dim})": (weights, values[:, :-1])}
    found = []
    for name, (left, right) in shapes.items():
        with single_threaded_blas():
            ours = timed(lambda left=left, right=right: left @ right, repeat * 6)
        theirs = None
        if torch is not None:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            pair = tuple(torch.from_numpy(np.ascontiguousarray(array)) for array in (left, right))
            theirs = timed(lambda pair=pair: pair[0] @ pair[1], repeat * 6)
            torch.set_num_threads(threads)
        found.append((name, ours * 1000, None if theirs is None else theirs * 1000))
    return found


def torch_parts(problem, case: Case, repeat: int) -> dict[str, float] | None:
    try:
        import torch
        import torch.nn.functional as F  # noqa: N812
    except ImportError:
        return None
    dtype = getattr(torch, case.dtype)
    x, w_q = (torch.from_numpy(np.ascontiguousarray(array)).to(dtype) for array in (problem.x, problem.w_query))
    shape = (1, case.heads, case.seq_len, case.head_dim)
    q, k, v = (torch.randn(shape, dtype=dtype) for _ in range(3))
    with torch.no_grad():
        return {"4 projections": 4 * timed(lambda: x @ w_q, repeat),
                "scaled_dot_product_attention": timed(lambda: F.scaled_dot_product_attention(q, k, v), repeat)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    options = parser.parse_args()
    for dtype in ("float32", "float64"):
        case = Case("mha", 4096, dtype, 8, 8, 64, 512)
        problem = make_problem(case)
        runner = torch_runner(problem, case)
        ours = timed(lambda problem=problem: pipeline.attention(problem, ["output"]), options.repeat)
        print(f"{case.label}: attncli {ours:.3f} s", end="")
        if runner:
            theirs = timed(runner[0], options.repeat)
            print(f", PyTorch {theirs:.3f} s, ratio {ours / theirs:.2f} ({runner[1]})")
        else:
            print(" (torch not installed)")
        totals, wall = stage_times(problem, options.repeat)
        flops = stage_flops(case)
        busy = sum(totals.values())
        print(f"  attncli's stages, summed over its threads (the median run, wall {wall:.3f} s, "
              f"{busy:.3f} s of stage work, {busy / wall:.2f} threads busy on average):")
        for name, seconds in sorted(totals.items(), key=lambda pair: -pair[1]):
            if seconds < 0.0005:
                continue
            rate = f"{flops[name] / seconds / 1e9:6.1f} GFLOP/s a thread" if name in flops else ""
            print(f"    {name:10} {seconds:7.3f} s  {seconds / busy:5.1%}  {rate}")
        parts = torch_parts(problem, case, options.repeat)
        if parts:
            print("  PyTorch's parts alone (2 threads): " + ", ".join(f"{name} {seconds:.3f} s"
                                                                      for name, seconds in parts.items()))
        print("  one block's products, one thread (ms): numpy's BLAS against PyTorch's")
        for name, numpy_ms, torch_ms in block_products(case, options.repeat):
            against = f"{torch_ms:6.2f}  ({numpy_ms / torch_ms:.2f}x)" if torch_ms is not None else "  n/a"
            print(f"    {name:34} {numpy_ms:6.2f}  {against}")
    print(f"rerun: python benchmarks/gap.py --repeat {options.repeat}")


if __name__ == "__main__":
    main()
