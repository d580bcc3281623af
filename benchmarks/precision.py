"""check --dtype on PyTorch's own float32, float16 and bfloat16 outputs (issue 13): how often it
accepts them, and how often it refuses, and names, the known mistakes made in the same dtype.

The 240 problems of tests/data/precision/ (made by tests/data/make_precision_goldens.py with torch
2.13; no torch needed here): 20 per dtype × implementation (SDPA's math backend, SDPA's fused CPU
kernel, nn.MultiheadAttention, Hugging Face's eager attention). For each, through attncli's own
functions (what `attncli check FILE --expected YOURS --dtype D` runs, without the subprocesses):

- **PyTorch's output** is checked: it should pass (the rate printed is the share that does);
- **each known mistake** that applies (check's own wrong runs, wrong_runs.py: the stages run with a
  slip or on a changed problem) is computed in the same dtype's emulation (its inputs and every
  step rounded to the dtype, as `compute --dtype` computes) and checked: it should fail, and check
  should name that mistake (or one giving the same numbers). A mistake whose float64 numbers are the
  right ones on a problem (softmax over one key is 1 however it is scaled) changes nothing there and
  is left out of the rates; one whose float64 numbers differ from the right ones by less than the
  dtype's rounding spreads them (no tolerance could tell them apart) is counted apart.

An SDPA/HF problem (q, k, v given) is given to attncli as x = Q with W_Q = I, and a context [K | V]
with W_K = [I; 0], W_V = [0; I] (exact in every dtype), so its output is SDPA's, heads joined;
an nn.MultiheadAttention problem with PyTorch's own names (in_proj_weight, out_proj.weight…).

Rerun:  python benchmarks/precision.py [--limit N] [--dtype D] [--implementation I]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attncli import mistakes  # noqa: E402
from attncli.mistakes import check_step  # noqa: E402
from attncli.pipeline import full_attention  # noqa: E402
from attncli.problem import problem_from_document  # noqa: E402
from attncli.tolerance import rounding_spread  # noqa: E402
from attncli.torchnames import weight_names  # noqa: E402
from attncli.wrong_runs import run, wrongs  # noqa: E402

FOLDER = ROOT / "tests" / "data" / "precision"
DTYPES = ("float32", "float16", "bfloat16")
IMPLEMENTATIONS = ("sdpa_math", "sdpa_flash", "nn_mha", "hf_eager")
# a mistake whose float64 output is within this of the right one (relative to its largest value)
# changes nothing on that problem
UNCHANGED = 1e-12


def problems() -> list[dict]:
    return json.loads((FOLDER / "index.json").read_text())["problems"]


@cache
def _archive(name: str):
    return np.load(FOLDER / name, allow_pickle=False)


def decoded(problem: dict) -> dict[str, np.ndarray]:
    """The problem's stored arrays as float64 (bfloat16 is stored as its bits), ``allowed`` as bool."""
    npz, found = _archive(problem["file"]), {}
    for role, key in problem["arrays"].items():
        value = npz[key]
        if value.dtype == np.uint16:  # bfloat16: the high half of a float32
            value = (value.astype(np.uint32) << 16).view(np.float32)
        found[role] = value if value.dtype == np.bool_ else value.astype(np.float64)
    return found


def document(problem: dict, arrays: dict[str, np.ndarray]) -> dict:
    """The problem as an attncli document (see the module's docstring)."""
    mask = {} if "allowed" not in arrays else {"mask": arrays["allowed"].tolist()}
    if problem["implementation"] == "nn_mha":
        return {"x": arrays["x"], "in_proj_weight": arrays["in_proj_weight"], "in_proj_bias": arrays["in_proj_bias"],
                "out_proj.weight": arrays["out_proj_weight"], "out_proj.bias": arrays["out_proj_bias"],
                "heads": problem["heads"], "batch_first": True, **mask}
    q, k, v = arrays["q"], arrays["k"], arrays["v"]
    batch, heads, q_len, dim = q.shape
    width = heads * dim
    joined = [array.transpose(0, 2, 1, 3).reshape(batch, array.shape[2], width) for array in (q, k, v)]
    identity, zeros = np.eye(width), np.zeros((width, width))
    return {"x": joined[0], "context": np.concatenate(joined[1:], axis=-1), "w_query": identity,
            "w_key": np.concatenate([identity, zeros]), "w_value": np.concatenate([zeros, identity]),
            "heads": heads, **mask}


def as_output(problem: dict, array: np.ndarray) -> np.ndarray:
    """PyTorch's output (or the exact one) in attncli's output layout (batch, q_len, width)."""
    if problem["implementation"] == "nn_mha":
        return array
    batch, heads, q_len, dim = array.shape
    return array.transpose(0, 2, 1, 3).reshape(batch, q_len, heads * dim)


@contextlib.contextmanager
def mistakes_kept() -> Iterator[None]:
    """check tries every known mistake on each wrong output: on one problem each mistake's numbers
    are the same every time, so while checking one problem they are kept (check itself checks one
    output per run and keeps nothing)."""
    kept: dict = {}

    def kept_run(problem, wrong, dtype=None):
        key = (id(problem), wrong.mistake, dtype)
        if key not in kept:
            kept[key] = run(problem, wrong, dtype)
        return kept[key]

    mistakes.run = kept_run
    try:
        yield
    finally:
        mistakes.run = run


def checked(problem: dict) -> dict:
    """Check PyTorch's output and each applicable mistake's, for one stored problem."""
    with mistakes_kept():
        return _checked(problem)


def _checked(problem: dict) -> dict:
    arrays, dtype = decoded(problem), problem["dtype"]
    doc = document(problem, arrays)
    names = weight_names(doc)
    exact_problem = problem_from_document(doc)
    trace = full_attention(exact_problem)
    exact = trace.steps["output"].array
    spread = rounding_spread(exact_problem, "output", exact, dtype)
    torch = check_step(exact_problem, trace, "output", as_output(problem, arrays["output"]), weight_names=names,
                       spread=spread)
    results = []
    for wrong in wrongs(exact_problem, names):
        made, made64 = run(exact_problem, wrong, dtype).get("output"), run(exact_problem, wrong).get("output")
        if made is None or made64 is None:
            continue
        change = float(np.abs(made64 - exact).max())
        if change <= UNCHANGED * float(np.abs(exact).max()):
            continue
        verdict = check_step(exact_problem, trace, "output", made, weight_names=names, spread=spread)
        hidden = float(np.sqrt(np.sum(np.square(made64 - exact)))) <= spread.norm
        named = any(found.name == wrong.mistake.name for found in verdict.mistakes)
        results.append({"mistake": wrong.mistake.name, "failed": not verdict.agree, "named": named,
                        "hidden": hidden, "share": verdict.share})
    return {"torch": torch, "mistakes": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, help="only the first N problems of each dtype × implementation")
    parser.add_argument("--dtype", choices=DTYPES)
    parser.add_argument("--implementation", choices=IMPLEMENTATIONS)
    args = parser.parse_args()
    chosen, counts = [], defaultdict(int)
    for problem in problems():
        if args.dtype and problem["dtype"] != args.dtype or args.implementation and (
                problem["implementation"] != args.implementation):
            continue
        key = (problem["dtype"], problem["implementation"])
        if args.limit is None or counts[key] < args.limit:
            counts[key] += 1
            chosen.append(problem)
    started = time.perf_counter()
    rows: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    failures = []
    for problem in chosen:
        result = checked(problem)
        row = rows[(problem["dtype"], problem["implementation"])]
        torch = result["torch"]
        row["passed"].append(torch.agree)
        row["torch_share"].append(torch.share)
        if not torch.agree:
            failures.append(f"  PyTorch's {problem['name']} ({problem['dtype']}, {problem['implementation']}) "
                            f"refused: {torch.share:.2f}× the tolerance")
        for mistake in result["mistakes"]:
            if mistake["hidden"]:
                row["hidden"].append(mistake)
                continue
            row["failed"].append(mistake["failed"])
            row["mistake_share"].append(mistake["share"])
            row["named"].append(mistake["failed"] and mistake["named"])
            if not (mistake["failed"] and mistake["named"]):
                failures.append(f"  {problem['name']} ({problem['dtype']}, {problem['implementation']}) "
                                f"{mistake['mistake']!r}: {'failed' if mistake['failed'] else 'passed'} "
                                f"({mistake['share']:.2f}× the spread), {'' if mistake['named'] else 'not '}named")
    print(f"check --dtype on PyTorch's outputs (tests/data/precision), {len(chosen)} problems, "
          f"{time.perf_counter() - started:.0f} s\n")
    header = ("dtype", "implementation", "problems", "PyTorch passes", "its largest share", "mistakes", "fail",
              "fail and named", "smallest share", "hidden")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    total: dict[str, list] = defaultdict(list)
    for (dtype, implementation), row in sorted(rows.items(), key=lambda item: (DTYPES.index(item[0][0]),
                                                                                 IMPLEMENTATIONS.index(item[0][1]))):
        for name in ("passed", "failed", "named", "hidden"):  # the shares are merged below
            total[name] += row[name]
        print(_row(dtype, implementation, row))
    for dtype in DTYPES:
        merged: dict[str, list] = defaultdict(list)
        for (row_dtype, _), row in rows.items():
            if row_dtype == dtype:
                for name, values in row.items():
                    merged[name] += values
        if merged:
            print(_row(dtype, "all", merged))
    print(_row("all", "all", {**total, **{name: [share for row in rows.values() for share in row[name]]
                                          for name in ("torch_share", "mistake_share")}}))
    if failures:
        print("\nNot as they should be:")
        print("\n".join(failures))
    print("\nRerun: python benchmarks/precision.py" + "".join(
        f" --{name} {value}" for name, value in vars(args).items() if value is not None))


def _rate(values: list) -> str:
    return f"{100 * sum(values) / len(values):.1f}% ({sum(values)}/{len(values)})" if values else "-"


def _row(dtype: str, implementation: str, row: dict) -> str:
    return " | ".join([dtype, implementation, str(len(row["passed"])), _rate(row["passed"]),
                       f"{max(row['torch_share']):.2f}", str(len(row["failed"])), _rate(row["failed"]),
                       _rate(row["named"]), f"{min(row['mistake_share'], default=float('nan')):.1f}",
                       str(len(row["hidden"]))])


if __name__ == "__main__":
    main()
