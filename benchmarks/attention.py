"""Large problems: attncli's output-only path against PyTorch on the same CPU, side by side.

One layer of batch 1, 8 heads of 64 (d_model 512) with W_Q, W_K, W_V and W_O, at seq_len 1024
and 4096, in float32 and float64. attncli runs in-process (attention(problem, ["output"]), the
path `compute --step output` takes); PyTorch runs the projections, F.scaled_dot_product_attention
and the output projection. Each is warmed up once, then timed; the median is reported. Peak
memory is what numpy allocates during attncli's run (tracemalloc; the inputs exist before it),
against the outputs + 64 MiB the issue allows on top of the inputs. Without torch, attncli's figures are printed alone.

Rerun:  python benchmarks/attention.py [--repeat 5] [--lengths 1024 4096]
(with torch: a CPU build, e.g. `pip install torch==2.13.0` on the project's machines)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attncli.pipeline import attention  # noqa: E402
from attncli.problem import problem_from_document  # noqa: E402

HEADS, HEAD_DIM = 8, 64
D_MODEL = HEADS * HEAD_DIM
MIB = 1024 * 1024


def make_problem(seq_len: int, dtype: str):
    rng = np.random.default_rng(seq_len)
    document = {
        "x": rng.normal(size=(1, seq_len, D_MODEL)),
        **{name: rng.normal(size=(D_MODEL, D_MODEL)) / np.sqrt(D_MODEL)
           for name in ("w_query", "w_key", "w_value", "w_out")},
        "heads": HEADS,
    }
    return problem_from_document(document).astype(dtype)


def timed(run, repeat: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_bytes(run) -> int:
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def torch_runner(problem):
    try:
        import torch
        import torch.nn.functional as F  # noqa: N812
    except ImportError:
        return None
    dtype = getattr(torch, str(problem.x.dtype))
    x, w_q, w_k, w_v, w_o = (torch.from_numpy(np.ascontiguousarray(array)).to(dtype) for array in
                             (problem.x, problem.w_query, problem.w_key, problem.w_value, problem.w_out))

    def run():
        with torch.no_grad():
            batch, seq, _ = x.shape
            q, k, v = ((x @ w).view(batch, seq, HEADS, HEAD_DIM).transpose(1, 2) for w in (w_q, w_k, w_v))
            heads_out = F.scaled_dot_product_attention(q, k, v)
            return heads_out.transpose(1, 2).reshape(batch, seq, D_MODEL) @ w_o

    return run, torch.__version__, torch.get_num_threads()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    options = parser.parse_args()
    rows = []
    torch_note = "torch not installed: PyTorch columns empty"
    for seq_len in options.lengths:
        for dtype in ("float32", "float64"):
            problem = make_problem(seq_len, dtype)
            flops = 2 * seq_len * D_MODEL * D_MODEL * 4 + 2 * 2 * seq_len * seq_len * D_MODEL

            def run_attncli(problem=problem):
                return attention(problem, ["output"]).steps["output"].array

            ours = timed(run_attncli, options.repeat)
            itemsize = np.dtype(dtype).itemsize
            outputs = seq_len * D_MODEL * itemsize
            peak = peak_bytes(run_attncli)
            runner = torch_runner(problem)
            theirs = ratio = None
            if runner is not None:
                run_torch, version, threads = runner
                torch_note = f"PyTorch {version}, {threads} threads"
                theirs = timed(run_torch, options.repeat)
                ratio = ours / theirs
                difference = float(np.abs(run_attncli() - run_torch().numpy()).max())
            rows.append((seq_len, dtype, ours, theirs, ratio, flops / ours / 1e9, peak, outputs + 64 * MIB,
                         difference if runner is not None else None))
    print(f"attention, batch 1, {HEADS} heads × {HEAD_DIM}, d_model {D_MODEL}, W_Q/K/V/O, output only; "
          f"median of {options.repeat}; {torch_note}")
    header = (f"{'seq_len':>7} {'dtype':>7} {'attncli s':>10} {'torch s':>9} {'ratio':>6} {'GFLOP/s':>8} "
              f"{'extra MiB':>9} {'allowed':>8} {'max |diff|':>11}")
    print(header)
    for seq_len, dtype, ours, theirs, ratio, gflops, peak, allowed, difference in rows:
        print(f"{seq_len:>7} {dtype:>7} {ours:>10.3f} {theirs if theirs is not None else float('nan'):>9.3f} "
              f"{ratio if ratio is not None else float('nan'):>6.2f} {gflops:>8.1f} {peak / MIB:>9.1f} "
              f"{allowed / MIB:>8.1f} {difference if difference is not None else float('nan'):>11.2e}")
    print("targets: ratio at most 1.5; extra memory (beyond the inputs) at most 'allowed' (outputs + 64 MiB)")
    print("rerun: python benchmarks/attention.py --repeat", options.repeat, "--lengths", *options.lengths)


if __name__ == "__main__":
    main()
