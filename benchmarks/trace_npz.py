"""Every step of a medium problem into an NPZ file: attncli against numpy doing the same, in one run.

The problem: one sequence of 1024 tokens, d_model 512, 8 heads of 64, W_Q, W_K, W_V and W_O, float64,
given as an .npz file (so that reading it costs little: the row is about computing and writing).
attncli runs as a user runs it, `python -m attncli compute problem.npz -o trace.npz`, every step
(q, k, v, scores, logits, softmax, concat, output: about 210 MB). The reference is a plain numpy
script run the same way: it loads the same file, computes the same arrays (projections, Q·Kᵀ, the
scale, a softmax less its row maximum, the weighted values, W_O) and `np.savez`s them. Both are
processes with the same start (Python, numpy); each round runs them in turn (the other way round on
odd rounds), and the medians are reported, with their ratio. Before each run the dirty pages of
the files written so far are flushed (os.sync, not timed): else a run pays for the previous one's
file, as the disk writes it back. attncli's time includes its own fsync of the file it writes
(about 85 ms for 210 MB here: an atomic file is on disk before it takes its name); np.savez does
not sync. The two files' arrays are compared once, and each process's peak resident memory is
printed (the largest of the rounds).
Both load their modules from compiled .pyc files, as after a normal install (PYTHONDONTWRITEBYTECODE
is dropped from their environment, as benchmarks/startup.py drops it).

With --against REF, attncli's code at that git ref (its attncli/, taken with `git archive`) runs in
the same rounds too.

Rerun:  python benchmarks/trace_npz.py [--rounds 7] [--against REF]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from gitref import extract, rounds_and_ref
from startup import ENVIRONMENT, Run, measured

ROOT = Path(__file__).resolve().parent.parent
SEQ_LEN, D_MODEL, HEADS = 1024, 512, 8
TARGET = 1.5
REFERENCE = '''
import sys
import numpy as np

source, target = sys.argv[1:]
with np.load(source) as problem:
    x, w_q, w_k, w_v, w_o, heads = (problem[name] for name in ("x", "w_query", "w_key", "w_value", "w_out", "heads"))
heads = int(heads)
seq_len, width = x.shape[0], w_q.shape[1]
head_dim = width // heads

def split(projection):  # (seq_len, heads*head_dim) -> (heads, seq_len, head_dim)
    return projection.reshape(seq_len, heads, head_dim).transpose(1, 0, 2)

q, k, v = split(x @ w_q), split(x @ w_k), split(x @ w_v)
scores = q @ k.transpose(0, 2, 1)
logits = scores / np.sqrt(head_dim)
weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
softmax = weights / weights.sum(axis=-1, keepdims=True)
concat = (softmax @ v).transpose(1, 0, 2).reshape(seq_len, width)
output = concat @ w_o
np.savez(target, q=q, k=k, v=v, scores=scores, logits=logits, softmax=softmax, concat=concat, output=output)
'''


def make_problem(path: Path) -> None:
    rng = np.random.default_rng(15)
    arrays = {"x": rng.normal(size=(SEQ_LEN, D_MODEL))}
    for name in ("w_query", "w_key", "w_value", "w_out"):
        arrays[name] = rng.normal(size=(D_MODEL, D_MODEL)) / np.sqrt(D_MODEL)
    np.savez(path, **arrays, heads=np.array(HEADS))


def compare(ours: Path, reference: Path) -> float:
    """The largest difference between the two files' arrays, relative to each array's largest value."""
    with np.load(ours) as mine, np.load(reference) as theirs:
        if set(theirs.files) - set(mine.files):
            raise SystemExit(f"attncli's file lacks {sorted(set(theirs.files) - set(mine.files))}")
        return max(float(np.abs(mine[name] - theirs[name]).max() / np.abs(theirs[name]).max()) for name in theirs.files)


def main() -> None:
    options = rounds_and_ref(__doc__.splitlines()[0], 7)
    python = sys.executable
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        problem, script = folder / "problem.npz", folder / "reference.py"
        make_problem(problem)
        script.write_text(REFERENCE)
        trees = {"attncli": ROOT}
        if options.against:
            trees["attncli @ ref"] = extract(options.against, folder / "ref")
        cases = {"numpy: compute + np.savez": ([python, str(script), str(problem), str(folder / "reference.npz")],
                                               ENVIRONMENT)}
        for name, tree in trees.items():
            target = folder / f"{name.replace(' @ ', '_')}.npz"
            cases[name] = ([python, "-P", "-m", "attncli", "compute", str(problem), "-o", str(target)],
                           {**ENVIRONMENT, "PYTHONPATH": str(tree)})
        for command, environment in cases.values():  # warm the file cache and the .pyc files
            measured(command, environment)
        difference = compare(folder / "attncli.npz", folder / "reference.npz")
        runs: dict[str, list[Run]] = {name: [] for name in cases}
        names = list(cases)
        for round_number in range(options.rounds):
            for name in names if round_number % 2 == 0 else names[::-1]:
                os.sync()
                runs[name].append(measured(*cases[name]))
    median = {name: statistics.median(run.seconds for run in values) for name, values in runs.items()}
    peak = {name: max(run.peak_bytes for run in values) / (1024 * 1024) for name, values in runs.items()}
    reference = median["numpy: compute + np.savez"]
    print(f"every step of L={SEQ_LEN}, d_model {D_MODEL}, {HEADS} heads, W_O, float64, into an NPZ file "
          f"(processes, median of {options.rounds} rounds, Python {sys.version.split()[0]})")
    print(f"{'case':28} {'s':>7} {'ratio':>7} {'peak MiB':>9}")
    for name, seconds in median.items():
        print(f"{name:28} {seconds:7.3f} {seconds / reference:6.2f}x {peak[name]:9.1f}")
    print(f"target: attncli at most {TARGET}x numpy; largest relative difference of the arrays: {difference:.1e}")
    rerun = f" --against {options.against}" if options.against else ""
    print(f"rerun: python benchmarks/trace_npz.py --rounds {options.rounds}{rerun}")


if __name__ == "__main__":
    main()
