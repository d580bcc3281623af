"""Large problems: attncli's output-only path against PyTorch on the same CPU, side by side.

One layer of batch 1, 8 heads of 64 (d_model 512) with W_Q, W_K, W_V and W_O, at seq_len 1024
and 4096, in float32 and float64. attncli runs in-process (attention(problem, ["output"]), the
path `compute --step output` takes); PyTorch runs the projections, F.scaled_dot_product_attention
and the output projection. Each is warmed up once, then timed; the median is reported. Peak
memory is what numpy allocates during attncli's run (tracemalloc; the inputs exist before it),
against the outputs + 64 MiB the issue allows on top of the inputs. Without torch, attncli's figures are printed alone.

With --against REF, attncli's figures are measured for this tree and for the code of that git ref
(its attncli/, taken with `git archive` into a temporary folder) side by side: each runs in a
worker process of its own (this script with --worker, importing attncli from the tree named in
ATTNCLI_TREE), and the two are timed in turn, round by round, on the same problem; printed are
the current figure, the ref's, the ratio current/ref and the largest difference of their outputs.
PyTorch is left out of that comparison (run without --against for it).

Rerun:  python benchmarks/attention.py [--repeat 5] [--lengths 1024 4096] [--against REF]
(with torch: a CPU build, e.g. `pip install torch==2.13.0` on the project's machines)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# attncli from this checkout; a --worker process of --against imports the tree ATTNCLI_TREE names
sys.path.insert(0, os.environ.get("ATTNCLI_TREE", str(ROOT)))

from attncli.pipeline import attention  # noqa: E402
from attncli.problem import problem_from_document  # noqa: E402

HEADS, HEAD_DIM = 8, 64
D_MODEL = HEADS * HEAD_DIM
MIB = 1024 * 1024
# OpenBLAS threads spin for about 0.1 s after each call: with --against, one worker waits this long
# before its run, so that the other's spinning threads do not take its cores
SETTLE_SECONDS = 0.2


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


def worker() -> None:
    """Serve the --against side-by-side: one JSON request per stdin line, one JSON answer per stdout line.

    A request names the problem (seq_len, dtype) and what to do with attncli's output-only run on
    it: "warm" (make the problem, run once), "time" (run once, answer the seconds), "peak" (answer
    the peak bytes numpy allocates) or "save" (write the output to "path" as .npy).
    """
    problems = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["seq_len"], request["dtype"])
        if key not in problems:
            problems.clear()  # one problem in memory at a time
            problems[key] = make_problem(*key)
        problem = problems[key]

        def run_attncli(problem=problem):
            return attention(problem, ["output"]).steps["output"].array

        answer = {}
        if request["do"] == "time":
            start = time.perf_counter()
            run_attncli()
            answer["seconds"] = time.perf_counter() - start
        elif request["do"] == "peak":
            answer["peak"] = peak_bytes(run_attncli)
        elif request["do"] == "save":
            np.save(request["path"], run_attncli())
        else:
            run_attncli()
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


class Worker:
    """A worker process (this script with --worker) measuring the attncli of one tree."""

    def __init__(self, tree: Path):
        self.tree = tree
        environment = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
        self.process = subprocess.Popen([sys.executable, "-P", str(Path(__file__).resolve()), "--worker"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**environment, "ATTNCLI_TREE": str(tree)})

    def ask(self, do: str, seq_len: int, dtype: str, **more) -> dict:
        self.process.stdin.write(json.dumps({"do": do, "seq_len": seq_len, "dtype": dtype, **more}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the worker measuring {self.tree} stopped (see its error above)")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def side_by_side(ref: str, repeat: int, lengths: list[int]) -> None:
    """The --against run: this tree's attncli and the ref's, each in a worker, timed in turn round by round."""
    from gitref import extract  # beside this script; the workers (run with -P) do not need it

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        workers = {"current": Worker(ROOT), "ref": Worker(extract(ref, Path(folder) / "ref"))}
        try:
            for seq_len in lengths:
                for dtype in ("float32", "float64"):
                    flops = 2 * seq_len * D_MODEL * D_MODEL * 4 + 2 * 2 * seq_len * seq_len * D_MODEL
                    for side in workers.values():
                        side.ask("warm", seq_len, dtype)
                    times: dict[str, list[float]] = {name: [] for name in workers}
                    for round_number in range(repeat):
                        order = list(workers) if round_number % 2 == 0 else list(reversed(workers))
                        for name in order:
                            time.sleep(SETTLE_SECONDS)
                            times[name].append(workers[name].ask("time", seq_len, dtype)["seconds"])
                    peaks = {name: side.ask("peak", seq_len, dtype)["peak"] for name, side in workers.items()}
                    outputs = {}
                    for name, side in workers.items():
                        path = Path(folder) / f"{name}.npy"
                        side.ask("save", seq_len, dtype, path=str(path))
                        outputs[name] = np.load(path)
                    difference = float(np.abs(outputs["current"] - outputs["ref"]).max())
                    ours, theirs = (statistics.median(times[name]) for name in ("current", "ref"))
                    allowed = seq_len * D_MODEL * np.dtype(dtype).itemsize + 64 * MIB
                    rows.append((seq_len, dtype, ours, theirs, flops, peaks["current"], peaks["ref"], allowed,
                                 difference))
        finally:
            for side in workers.values():
                side.close()
    print(f"attention, batch 1, {HEADS} heads × {HEAD_DIM}, d_model {D_MODEL}, W_Q/K/V/O, output only; "
          f"median of {repeat}; this tree (current) against {ref} (ref), each in a worker process, "
          f"timed in turn round by round")
    print(f"{'seq_len':>7} {'dtype':>7} {'current s':>10} {'ref s':>8} {'cur/ref':>8} {'cur GFLOP/s':>12} "
          f"{'ref GFLOP/s':>12} {'cur MiB':>8} {'ref MiB':>8} {'allowed':>8} {'max |cur-ref|':>14}")
    for seq_len, dtype, ours, theirs, flops, our_peak, their_peak, allowed, difference in rows:
        print(f"{seq_len:>7} {dtype:>7} {ours:>10.3f} {theirs:>8.3f} {ours / theirs:>7.2f}x "
              f"{flops / ours / 1e9:>12.1f} {flops / theirs / 1e9:>12.1f} {our_peak / MIB:>8.1f} "
              f"{their_peak / MIB:>8.1f} {allowed / MIB:>8.1f} {difference:>14.2e}")
    print("MiB: extra memory numpy allocates beyond the inputs; target: at most 'allowed' (outputs + 64 MiB)")
    print("rerun: python benchmarks/attention.py --repeat", repeat, "--lengths", *lengths, "--against", ref)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--against", metavar="REF", help="also measure the code of this git ref, side by side")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker()
        return
    if options.against:
        side_by_side(options.against, options.repeat, options.lengths)
        return
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
