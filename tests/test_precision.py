"""compute --dtype float16|bfloat16 (inputs and every step's result rounded, products and the softmax
in float32) and check --dtype (the tolerance the dtype's rounding explains on the problem, measured),
on real numbers: an independent emulation written out here, and PyTorch's own outputs
(tests/data/precision, through benchmarks/precision.py's functions)."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLES
from test_cli import assert_one_line_error, run

from attncli import pipeline
from attncli.precision import rounded
from attncli.problem import problem_from_document

sys.path.insert(0, str(ROOT / "benchmarks"))
import precision as bench  # noqa: E402


def bf16_nearest(values: np.ndarray) -> np.ndarray:
    """Round to bfloat16 the slow way: the two neighbours in float64, the nearer (ties: the even one)."""
    bits = values.astype(np.float32).view(np.uint32)
    low = (bits & 0xFFFF0000).view(np.float32).astype(np.float64)
    high = ((bits & 0xFFFF0000) + np.uint32(0x10000)).view(np.float32).astype(np.float64)
    exact = values.astype(np.float32).astype(np.float64)
    even = ((bits >> 16) & 1) == 0
    below, above = np.abs(exact - low), np.abs(high - exact)
    return np.where(below < above, low, np.where(above < below, high, np.where(even, low, high)))


def test_bfloat16_rounds_to_nearest_even():
    rng = np.random.default_rng(5)
    values = (rng.standard_normal(50_000) * np.exp(rng.uniform(-30, 30, 50_000))).astype(np.float32)
    values[:4] = [1 + 2**-8, 1 + 3 * 2**-8, -(1 + 2**-8), 3.4e38]  # ties go to even; past the largest, ∞
    assert np.array_equal(rounded(values[4:], "bfloat16").astype(np.float64), bf16_nearest(values[4:]))
    assert rounded(values[:4], "bfloat16").tolist() == [1.0, 1.015625, -1.0, math.inf]
    special = rounded(np.array([np.inf, -np.inf, np.nan, -0.0]), "bfloat16")
    assert special[0] == np.inf and special[1] == -np.inf and np.isnan(special[2]) and np.signbit(special[3])


def test_float64_is_rounded_once_and_stochastic_rounding_is_unbiased():
    values = np.random.default_rng(6).standard_normal(10_000) * 10.0 ** np.arange(-5, 5).repeat(1000)
    assert np.array_equal(rounded(values, "float16"), values.astype(np.float16).astype(np.float32))
    # from float64 in one rounding, not through float32: 1 + 2^-8 + 2^-30 is above the tie
    assert rounded(np.array([1 + 2**-8 + 2**-30]), "bfloat16")[0] == 1 + 2**-7
    assert rounded(np.array([1 + 2**-8 + 2**-30]).astype(np.float32), "bfloat16")[0] == 1.0
    for dtype, value, ulp in (("bfloat16", 1 + 2**-10, 2**-7), ("float16", 1 + 2**-13, 2**-10)):
        made = rounded(np.full(200_000, value), dtype, np.random.default_rng(1)).astype(np.float64)
        assert set(np.unique(made)) == {1.0, 1.0 + ulp}  # the two neighbours only
        assert made.mean() == pytest.approx(value, abs=ulp / 100)  # up a quarter of the time


def emulated_attention(q_in, k_in, v_in, wq, wk, wv, allowed, cast):
    """Hugging Face's eager attention in a reduced dtype, written out: every product in float32 rounded
    by ``cast``, the scale applied and rounded, the softmax in float32 and rounded."""
    x, context = cast(q_in), cast(k_in)
    q, k, v = (cast(cast(source) @ cast(weight)) for source, weight in ((x, wq), (context, wk), (context, wv)))
    scores = cast(q @ k.T)
    logits = np.where(allowed, cast(scores / np.float32(math.sqrt(q.shape[-1]))), -np.inf)
    weights = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return cast(cast(weights / weights.sum(axis=-1, keepdims=True)) @ v)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_compute_in_a_reduced_dtype_is_the_emulation_written_out(tmp_path, dtype):
    rng = np.random.default_rng(7)
    x, context = rng.standard_normal((5, 8)), rng.standard_normal((6, 8))
    wq, wk, wv = (rng.standard_normal((8, 4)) for _ in range(3))
    allowed = rng.random((5, 6)) < 0.7
    allowed[:, 0] = True
    document = {"x": x.tolist(), "context": context.tolist(), "w_query": wq.tolist(), "w_key": wk.tolist(),
                "w_value": wv.tolist(), "mask": allowed.tolist()}
    path = tmp_path / "problem.json"
    path.write_text(json.dumps(document))
    result = run("compute", path, "--dtype", dtype, "--format", "json")
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["meta"]["dtype"] == dtype

    def cast(array):
        return rounded(np.asarray(array, dtype=np.float32), dtype)

    expected = emulated_attention(x.astype(np.float32), context.astype(np.float32), None, wq, wk, wv, allowed, cast)
    output = np.array(made["output"])
    assert np.array_equal(output, expected)
    # every number shown is one of the dtype's, printed exactly
    for step in ("q", "scores", "logits", "softmax", "output"):
        values = np.array(made[step], dtype=np.float64)
        finite = values[np.isfinite(values)]
        assert np.array_equal(rounded(finite, dtype).astype(np.float64), finite), step
    # and float64 is what it was: far from it
    exact = json.loads(run("compute", path, "--format", "json").stdout)["output"]
    assert 0 < np.abs(output - exact).max() < 0.1


def test_the_blocked_path_rounds_as_the_full_path(monkeypatch):
    document = json.loads((SAMPLES / "classic.json").read_text())
    rng = np.random.default_rng(8)
    document.update(x=rng.standard_normal((40, 4)).tolist(), heads=1, mask="causal")
    problem = problem_from_document(document).astype("bfloat16")
    full = pipeline.attention(problem, ["output"]).steps["output"].array
    monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)
    monkeypatch.setattr(pipeline, "BLOCK_ROWS", 7)
    assert pipeline.blocked_path(problem, ["output"])
    blocked = pipeline.attention(problem, ["output"]).steps["output"].array
    assert blocked.dtype == np.float32 and np.array_equal(rounded(blocked, "bfloat16"), blocked)
    assert np.abs(blocked - full).max() <= 2**-7 * np.abs(full).max()


def test_the_blocked_path_runs_the_stages_the_full_path_runs(monkeypatch):
    # a variant the problem lacks (QK-norm, RoPE, soft-cap, a bias here) is not run, on either
    # path: it would only hand its slot on, rounded to float16 again
    from attncli.stages import Stage

    problem = problem_from_document(json.loads((SAMPLES / "multihead_causal.json").read_text())).astype("float16")
    made, make = [], Stage.make
    monkeypatch.setattr(Stage, "make", lambda stage, flow: made.append(stage.name) or make(stage, flow))
    full = pipeline.full_attention(problem, ("output",)).steps["output"].array
    full_stages = set(made)
    made.clear()
    monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)
    assert pipeline.blocked_path(problem, ["output"])
    blocked = pipeline.attention(problem, ["output"], workers=1).steps["output"].array
    assert set(made) == full_stages == {"q", "k", "v", "scores", "logits", "softmax", "weighted", "concat", "output"}
    assert np.abs(blocked - full).max() <= 2**-10 * np.abs(full).max()


def test_a_reduced_dtype_overflows_as_a_framework_would(tmp_path):
    path = tmp_path / "big.json"
    document = json.loads((SAMPLES / "classic.json").read_text())
    path.write_text(json.dumps({**document, "x": [[300.0, 0, 300.0, 0], [0, 2, 0, 2], [1, 1, 1, 1]]}))
    result = run("compute", path, "--dtype", "float16")
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {path}: scores overflows float16 at ("), \
        result.stderr
    assert "beyond ±6.6e4; scale the inputs or weights down" in result.stderr  # float16's range, not float32's
    assert run("compute", path, "--dtype", "bfloat16").exit_code == 0  # bfloat16 has float32's range
    path.write_text(json.dumps({**document, "x": [[1e5, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]]}))
    assert_one_line_error(run("compute", path, "--dtype", "float16"),
                          f"{path}: x[0][0] is beyond float16's range (±6.6e4); compute in float64")


# --- check --dtype on PyTorch's own numbers --------------------------------------------------------

def small_problems(count: int) -> list[dict]:
    """``count`` of the stored problems, the smallest first, every dtype × implementation among them."""
    chosen = sorted(bench.problems(), key=lambda problem: problem["q_len"] * problem["k_len"] * problem["heads"])
    groups: dict = {}
    for problem in chosen:
        groups.setdefault((problem["dtype"], problem["implementation"]), []).append(problem)
    picked = [problem for index in range(count) for group in groups.values() if index < len(group)
              for problem in [group[index]]]
    return picked[:count]


def test_check_accepts_pytorchs_numbers_and_refuses_and_names_the_mistakes():
    """30 stored problems (every dtype × implementation): PyTorch's output passes check --dtype, and
    each known mistake made in the same dtype fails and is named."""
    problems = small_problems(30)
    assert {(problem["dtype"], problem["implementation"]) for problem in problems} == {
        (dtype, implementation) for dtype in bench.DTYPES for implementation in bench.IMPLEMENTATIONS}
    mistakes = 0
    for problem in problems:
        result = bench.checked(problem)
        assert result["torch"].agree, (problem["name"], result["torch"].share)
        for mistake in result["mistakes"]:
            if not mistake["hidden"]:
                mistakes += 1
                assert mistake["failed"] and mistake["named"], (problem["name"], mistake)
    assert mistakes >= 150


def stored(tmp_path, implementation: str, dtype: str):
    """A small stored problem with 8 keys or more as a problem file, PyTorch's output as a .npy file,
    and the problem's arrays."""
    problem = next(problem for problem in small_problems(120) if problem["k_len"] >= 8 and
                   problem["implementation"] == implementation and problem["dtype"] == dtype)
    arrays = bench.decoded(problem)
    document = {key: value.tolist() if isinstance(value, np.ndarray) else value
                for key, value in bench.document(problem, arrays).items()}
    (tmp_path / "problem.json").write_text(json.dumps(document))
    np.save(tmp_path / "torch.npy", bench.as_output(problem, arrays["output"]))
    return tmp_path / "problem.json", tmp_path / "torch.npy", arrays


def test_check_dtype_on_the_command_line(tmp_path):
    problem, torch, arrays = stored(tmp_path, "hf_eager", "bfloat16")
    result = run("check", problem, "--expected", torch, "--dtype", "bfloat16")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("✓ output agrees with attncli within bfloat16 rounding (largest difference ")
    assert "of the tolerance; the difference's norm " in result.stdout
    data = json.loads(run("check", problem, "--expected", torch, "--dtype", "bfloat16", "--format", "json").stdout)
    tolerance = data["tolerance"]
    assert data["agree"] and tolerance["dtype"] == "bfloat16" and tolerance["runs"] == 8
    assert tolerance["unit_roundoff"] == 2**-8 and 0 < tolerance["cell_share"] <= 1 and tolerance["norm_share"] <= 1
    # the same numbers are far beyond what float32 rounding explains, and fixed tolerances are refused beside --dtype
    result = run("check", problem, "--expected", torch, "--dtype", "float32")
    assert result.exit_code == 1 and "beyond what float32 rounding explains" in result.stdout, result.output
    result = run("check", problem, "--expected", torch, "--dtype", "bfloat16", "--atol", "1e-3")
    assert result.exit_code == 2 and "give it or --atol/--rtol, not both" in result.stderr


def test_check_dtype_names_a_mistake_made_in_bfloat16(tmp_path):
    problem, _, arrays = stored(tmp_path, "sdpa_math", "bfloat16")
    document = json.loads(problem.read_text())
    unscaled = problem_from_document({**document, "scale": "none"}).astype("bfloat16")
    np.save(tmp_path / "yours.npy", pipeline.attention(unscaled).steps["output"].array)
    result = run("check", problem, "--expected", tmp_path / "yours.npy", "--dtype", "bfloat16")
    assert result.exit_code == 1, result.output
    first, second = result.stdout.splitlines()[:2]
    assert "beyond what bfloat16 rounding explains (" in first and "× the tolerance)" in first
    assert second.startswith("Likely mistake: scores not scaled")


def test_every_step_of_a_bfloat16_dump_is_checked_within_its_rounding(tmp_path):
    """compute --dtype bfloat16 -o trace.npz, checked with --dtype bfloat16: every step within its spread;
    with the default tolerances none is, q first; a step scaled twice is the first divergence."""
    problem = SAMPLES / "multihead_causal.json"
    dump = tmp_path / "bf.npz"
    assert run("compute", problem, "--dtype", "bfloat16", "-o", dump).exit_code == 0
    result = run("check", problem, "--expected", dump, "--dtype", "bfloat16", "--format", "json")
    checked = json.loads(result.stdout)
    assert result.exit_code == 0 and checked["first_divergence"] is None
    shares = [max(verdict["tolerance"]["cell_share"], verdict["tolerance"]["norm_share"])
              for verdict in checked["verdicts"]]
    assert len(shares) == 8 and 0 < max(shares) < 1
    assert json.loads(run("check", problem, "--expected", dump, "--format", "json").stdout)["first_divergence"] == "q"
    arrays = dict(np.load(dump))
    arrays["logits"] = arrays["logits"] / np.sqrt(2.0)  # the scale applied again: far beyond bfloat16's rounding
    np.savez(tmp_path / "twice.npz", **arrays)
    result = run("check", problem, "--expected", tmp_path / "twice.npz", "--dtype", "bfloat16")
    assert result.exit_code == 1
    assert "First divergence: logits (the steps before it agree): look there." in result.stdout
    assert "beyond what bfloat16 rounding explains" in result.stdout
