"""The attention variants of issue 11 on a long sequence: what each costs on the output-only path.

One Llama-like layer: batch 1, 8 query heads of 64 (d_model 512), 2 key/value heads (grouped-query),
W_O, in float32, at seq_len 4096 (--length). Every run goes through attention(problem, ["output"]),
the path `attncli compute --step output` takes. The reference, measured in the same run, is the
plain causal layer with the same sizes; each variant is reported as a ratio to it (the machines
are shared and noisy: ratios, not seconds, are the figures to compare). The window rows show that a
sliding window makes a long sequence cheaper: only the keys inside the window are touched.
Peak memory is what numpy allocates during the run (tracemalloc; the inputs exist before it).

Rerun:  python benchmarks/variants.py [--length 4096] [--repeat 3]
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

HEADS, KV_HEADS, HEAD_DIM = 8, 2, 64
D_MODEL = HEADS * HEAD_DIM
MIB = 1024 * 1024

VARIANTS = {
    "causal (reference)": {},
    "+ RoPE (neox)": {"rope": "neox"},
    "+ RoPE + QK-norm": {"rope": "neox", "qk_norm": {"q_weight": [1.0] * HEAD_DIM, "k_weight": [1.0] * HEAD_DIM}},
    "+ window 512": {"window": 512},
    "+ window 128": {"window": 128},
    "+ soft-cap 50": {"softcap": 50.0},
    "+ ALiBi": {"alibi": True},
    "+ sinks": {"sinks": [0.0] * HEADS},
}


def make_problem(seq_len: int, keys: dict):
    rng = np.random.default_rng(seq_len)
    document = {
        "x": rng.normal(size=(1, seq_len, D_MODEL)),
        "w_query": rng.normal(size=(D_MODEL, D_MODEL)) / np.sqrt(D_MODEL),
        "w_key": rng.normal(size=(D_MODEL, KV_HEADS * HEAD_DIM)) / np.sqrt(D_MODEL),
        "w_value": rng.normal(size=(D_MODEL, KV_HEADS * HEAD_DIM)) / np.sqrt(D_MODEL),
        "w_out": rng.normal(size=(D_MODEL, D_MODEL)) / np.sqrt(D_MODEL),
        "heads": HEADS, "kv_heads": KV_HEADS, "mask": "causal", **keys,
    }
    return problem_from_document(document).astype("float32")


def measure(problem, repeat: int) -> tuple[float, float]:
    attention(problem, ["output"])  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        attention(problem, ["output"])
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    attention(problem, ["output"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return statistics.median(times), peak / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=4096)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"seq_len {args.length}, {HEADS} heads / {KV_HEADS} kv heads of {HEAD_DIM}, float32, output only")
    print(f"{'variant':<22} {'seconds':>8} {'× ref':>7} {'peak MiB':>9}")
    reference = None
    for name, keys in VARIANTS.items():
        seconds, peak = measure(make_problem(args.length, keys), args.repeat)
        reference = reference or seconds
        print(f"{name:<22} {seconds:8.3f} {seconds / reference:7.2f} {peak:9.1f}")
    print(f"rerun: python benchmarks/variants.py --length {args.length} --repeat {args.repeat}")


if __name__ == "__main__":
    main()
