"""Issue 15's large problems: attncli's output-only path against PyTorch, timed in turn in one run.

Rows (batch 1, output only, each with W_Q, W_K, W_V and W_O):

- ``mha``: 8 heads of 64, d_model 512, no mask, seq_len 4096, float32 and float64;
- ``gqa-window``: Llama-like, 32 query heads and 8 key/value heads of 64, d_model 2048, RoPE (neox,
  theta 10000), a causal sliding window of 1024 keys, float32, at seq_len 4096 and 8192: attncli's
  time should grow with seq_len × window (the blocks touch only their window's keys);
- ``gqa``: the same without a window (no mask), seq_len 4096.

PyTorch runs the same projections, RoPE (cos and sin made in float64 and rounded, as attncli does),
F.scaled_dot_product_attention (enable_gqa=True; the window as a boolean mask) and the output
projection. The two are timed in turn, round by round (the machines are shared and noisy): printed
are the medians, the median of the rounds' ratios attncli/torch, GFLOP/s for the useful work (the
projections and 4·head_dim flops per visible query-key pair, the same count for both), the memory
numpy allocates during attncli's run (tracemalloc; the inputs exist before it) against the outputs
+ 64 MiB allowed, and the largest difference of the outputs relative to the largest output.
Without torch, attncli's figures are printed alone.

Rerun:  python benchmarks/large.py [--repeat 5] [--rows mha gqa-window gqa] [--lengths 4096 8192]
(with torch: a CPU build, e.g. `pip install torch==2.13.0` on the project's machines)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from attention import peak_bytes  # noqa: E402  (beside this script)

from attncli.pipeline import attention  # noqa: E402
from attncli.problem import problem_from_document  # noqa: E402

MIB = 1024 * 1024


class Case(NamedTuple):
    name: str
    seq_len: int
    dtype: str
    heads: int
    kv_heads: int
    head_dim: int
    d_model: int
    rope: bool = False
    window: int | None = None

    @property
    def label(self) -> str:
        shape = f"{self.heads}×{self.head_dim}" + (f"/{self.kv_heads}kv" if self.kv_heads != self.heads else "")
        extra = (" RoPE" if self.rope else "") + (f" W={self.window}" if self.window else "")
        return f"{self.name} {shape} d{self.d_model}{extra} L={self.seq_len} {self.dtype}"

    def visible_pairs(self) -> int:
        if self.window is None:
            return self.seq_len * self.seq_len
        rows = np.arange(self.seq_len)
        return int(np.minimum(rows + 1, self.window).sum())

    def flops(self) -> int:
        width, kv_width = self.heads * self.head_dim, self.kv_heads * self.head_dim
        projections = 2 * self.seq_len * self.d_model * (2 * width + 2 * kv_width)
        return projections + 4 * self.heads * self.head_dim * self.visible_pairs()


def cases(rows: list[str], lengths: list[int]) -> list[Case]:
    chosen = []
    if "mha" in rows:
        chosen += [Case("mha", 4096, dtype, 8, 8, 64, 512) for dtype in ("float32", "float64")]
    if "gqa-window" in rows:
        chosen += [Case("gqa-window", length, "float32", 32, 8, 64, 2048, rope=True, window=1024)
                   for length in lengths]
    if "gqa" in rows:
        chosen.append(Case("gqa", 4096, "float32", 32, 8, 64, 2048, rope=True))
    return chosen


def make_problem(case: Case):
    rng = np.random.default_rng(case.seq_len)
    d_model, width, kv_width = case.d_model, case.heads * case.head_dim, case.kv_heads * case.head_dim

    def weight(rows: int, columns: int) -> np.ndarray:
        return (rng.standard_normal((rows, columns), dtype=np.float32) / np.sqrt(rows)).astype(np.float64)

    document = {
        "x": rng.standard_normal((1, case.seq_len, d_model), dtype=np.float32).astype(np.float64),
        "w_query": weight(d_model, width), "w_key": weight(d_model, kv_width),
        "w_value": weight(d_model, kv_width), "w_out": weight(width, d_model),
        "heads": case.heads, **({"kv_heads": case.kv_heads} if case.kv_heads != case.heads else {}),
        **({"rope": "neox"} if case.rope else {}), **({"window": case.window} if case.window else {}),
    }
    return problem_from_document(document).astype(case.dtype)


def torch_runner(problem, case: Case):
    try:
        import torch
        import torch.nn.functional as F  # noqa: N812
    except ImportError:
        return None
    dtype = getattr(torch, case.dtype)
    x, w_q, w_k, w_v, w_o = (torch.from_numpy(np.ascontiguousarray(array)).to(dtype) for array in
                             (problem.x, problem.w_query, problem.w_key, problem.w_value, problem.w_out))
    seq, dim = case.seq_len, case.head_dim
    cos = sin = mask = None
    if case.rope:
        angles = np.arange(seq, dtype=np.float64)[:, None] * problem.rope.inv_freq[None, :]
        cos, sin = (torch.from_numpy(np.concatenate([part, part], -1)).to(dtype)
                    for part in (np.cos(angles), np.sin(angles)))
    if case.window:
        rows, keys = np.arange(seq)[:, None], np.arange(seq)[None, :]
        mask = torch.from_numpy((keys <= rows) & (keys > rows - case.window))

    def rotated(values):
        half = dim // 2
        turned = torch.cat([-values[..., half:], values[..., :half]], dim=-1)
        return values * cos + turned * sin

    def run():
        with torch.no_grad():
            q = (x @ w_q).view(1, seq, case.heads, dim).transpose(1, 2)
            k = (x @ w_k).view(1, seq, case.kv_heads, dim).transpose(1, 2)
            v = (x @ w_v).view(1, seq, case.kv_heads, dim).transpose(1, 2)
            if case.rope:
                q, k = rotated(q), rotated(k)
            heads_out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                       enable_gqa=case.kv_heads != case.heads)
            return heads_out.transpose(1, 2).reshape(1, seq, case.heads * dim) @ w_o

    return run, f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"


def measure(case: Case, repeat: int) -> tuple[dict, str | None]:
    problem = make_problem(case)

    def run_attncli():
        return attention(problem, ["output"]).steps["output"].array

    runner = torch_runner(problem, case)
    runs = {"attncli": run_attncli} | ({"torch": runner[0]} if runner else {})
    outputs = {name: run() for name, run in runs.items()}  # warm-up, and the outputs compared
    difference = None
    if runner:
        ours, theirs = outputs["attncli"], outputs["torch"].numpy()
        difference = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    del outputs
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_number in range(repeat):
        for name in (list(runs) if round_number % 2 == 0 else list(reversed(runs))):
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    outputs_bytes = case.seq_len * case.d_model * np.dtype(case.dtype).itemsize
    row = {"case": case, "attncli": statistics.median(times["attncli"]), "peak": peak_bytes(run_attncli),
           "allowed": outputs_bytes + 64 * MIB, "difference": difference}
    if runner:
        row["torch"] = statistics.median(times["torch"])
        row["ratio"] = statistics.median(ours / theirs for ours, theirs in zip(times["attncli"], times["torch"],
                                                                                strict=True))
    return row, runner[1] if runner else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", nargs="+", default=["mha", "gqa-window", "gqa"], choices=["mha", "gqa-window", "gqa"])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 8192], help="seq_len of the gqa-window rows")
    options = parser.parse_args()
    note = "torch not installed: attncli's figures alone"
    rows = []
    for case in cases(options.rows, options.lengths):
        row, torch_note = measure(case, options.repeat)
        note = torch_note or note
        rows.append(row)
        nan = float("nan")
        print(f"{case.label:<44} attncli {row['attncli']:7.3f} s  torch {row.get('torch', nan):7.3f} s  "
              f"ratio {row.get('ratio', nan):5.2f}  {case.flops() / row['attncli'] / 1e9:6.1f} GFLOP/s  "
              f"(torch {case.flops() / row.get('torch', nan) / 1e9:6.1f})  "
              f"{row['peak'] / MIB:6.1f} MiB of {row['allowed'] / MIB:.0f} allowed  "
              f"rel. diff {row['difference'] if row['difference'] is not None else nan:.1e}", flush=True)
    print(f"batch 1, output only, median of {options.repeat} rounds (attncli and torch in turn); {note}")
    print("ratio: the median of the rounds' attncli/torch; MiB: numpy's allocations during attncli's run beyond "
          "the inputs, allowed: outputs + 64 MiB")
    windows = [row for row in rows if row["case"].name == "gqa-window"]
    if len(windows) > 1:
        first, last = windows[0], windows[-1]
        growth = last["attncli"] / first["attncli"]
        work = last["case"].visible_pairs() / first["case"].visible_pairs()
        square = (last["case"].seq_len / first["case"].seq_len) ** 2
        print(f"window rows: attncli's time grew {growth:.2f}× from L={first['case'].seq_len} to "
              f"L={last['case'].seq_len}; the visible pairs (L×W) {work:.2f}×, L² {square:.2f}×")
    print("rerun: python benchmarks/large.py --repeat", options.repeat, "--rows", *options.rows,
          "--lengths", *options.lengths)


if __name__ == "__main__":
    main()
