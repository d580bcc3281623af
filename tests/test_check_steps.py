"""check of several steps at once (a dump named after the steps) and the layouts a user's arrays
may be in (layouts.py): everything attncli writes reads back as --expected, and the first step
that differs is named with its mistakes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SAMPLES
from test_cli import assert_one_line_error, run, write

from attncli.dumps import read_dump
from attncli.errors import ProblemError
from attncli.generate import random_document
from attncli.layouts import layout_name, layouts, read_layout
from attncli.pipeline import attention
from attncli.problem import problem_from_document

CAUSAL = SAMPLES / "multihead_causal.json"  # 2 heads, 4 tokens, causal: logits hold −∞ (null in JSON)
CAUSAL_TRACE = attention(problem_from_document(json.loads(CAUSAL.read_text())))
STEPS = ["q", "k", "v", "scores", "logits", "softmax", "concat", "output"]
# batched, 3 heads of 2 over 4 tokens: no two of batch, heads, seq and head_dim are equal
BATCHED = random_document(seq_len=4, d_model=6, heads=3, batch=2, out_proj=True, seed=5)
BATCHED_TRACE = attention(problem_from_document(BATCHED))
Q_AXES = ("batch", "heads", "q_len", "head_dim")


# --- layouts --------------------------------------------------------------------------------------

def test_the_layouts_are_derived_from_the_steps_axes():
    names = {step: [layout_name(groups, axes) for groups in layouts(axes)] for step, axes in (
        ("q", Q_AXES), ("output", ("batch", "q_len", "d_out")), ("unbatched q", ("heads", "q_len", "head_dim")),
        ("unbatched output", ("q_len", "d_out")))}
    assert names == {
        "q": ["(batch, heads, q_len, head_dim)", "(batch, q_len, heads, head_dim)", "(batch, q_len, heads·head_dim)",
              "(batch·heads, q_len, head_dim)", "(q_len, batch, heads, head_dim)", "(q_len, batch, heads·head_dim)"],
        "output": ["(batch, q_len, d_out)", "(q_len, batch, d_out)"],
        "unbatched q": ["(heads, q_len, head_dim)", "(q_len, heads, head_dim)", "(q_len, heads·head_dim)"],
        "unbatched output": ["(q_len, d_out)"]}


@pytest.mark.parametrize(("arrange", "read_as"), [
    (lambda q: q, "(batch, heads, q_len, head_dim)"),
    (lambda q: q.transpose(0, 2, 1, 3), "(batch, q_len, heads, head_dim)"),
    (lambda q: q.transpose(0, 2, 1, 3).reshape(2, 4, 6), "(batch, q_len, heads·head_dim)"),
    (lambda q: q.reshape(6, 4, 2), "(batch·heads, q_len, head_dim)"),  # PyTorch's
    (lambda q: q.transpose(2, 0, 1, 3).reshape(4, 2, 6), "(q_len, batch, heads·head_dim)"),
])
def test_a_users_q_in_each_layout_reads_back_as_attnclis(arrange, read_as):
    q = BATCHED_TRACE.steps["q"].array  # (2, 3, 4, 2)
    reading = read_layout(arrange(q), q.shape, Q_AXES, "q")
    np.testing.assert_array_equal(reading.array, q)
    assert reading.layout.read_as == read_as and reading.layout.attncli == "(batch, heads, q_len, head_dim)"
    assert reading.layout.also == ()


def test_an_output_given_sequence_first_reads_back():
    output = BATCHED_TRACE.steps["output"].array  # (2, 4, 6)
    reading = read_layout(output.swapaxes(0, 1), output.shape, ("batch", "q_len", "d_out"), "output")
    np.testing.assert_array_equal(reading.array, output)
    assert reading.layout.read_as == "(q_len, batch, d_out)"


def test_an_ambiguous_shape_is_read_in_attnclis_layout_and_the_other_is_named():
    q = np.arange(2 * 3 * 3 * 4.0).reshape(2, 3, 3, 4)  # heads == q_len
    reading = read_layout(q, q.shape, Q_AXES, "q")
    np.testing.assert_array_equal(reading.array, q)
    assert reading.layout.own and reading.layout.also == ("(batch, q_len, heads, head_dim)",)
    # a batch of 1 set aside: (1·heads, q_len, head_dim) places every number as attncli's does, so not ambiguous
    single = q[:1]
    assert read_layout(single[0], single.shape, Q_AXES, "q").layout.also == ("(batch, q_len, heads, head_dim)",)


def test_a_shape_no_layout_fits_names_them_all():
    with pytest.raises(ProblemError) as caught:
        read_layout(np.zeros((7, 7)), (2, 3, 4, 2), Q_AXES, "q")
    assert caught.value.message == (
        "has shape 7×7 but q is 2×3×4×2 (batch, heads, q_len, head_dim); nor does it fit another layout: "
        "2×4×3×2 (batch, q_len, heads, head_dim), 2×4×6 (batch, q_len, heads·head_dim), "
        "6×4×2 (batch·heads, q_len, head_dim), 4×2×3×2 (q_len, batch, heads, head_dim), "
        "4×2×6 (q_len, batch, heads·head_dim)")


# --- everything attncli writes reads back ------------------------------------------------------------

def checked(*args):
    result = run("check", *args, "-f", "json")
    assert result.stderr == "", result.stderr
    return result.exit_code, json.loads(result.stdout)


def perturbed_json(path, step, index, by):
    document = json.loads(path.read_text())
    cell = document[step]
    for at in index[:-1]:
        cell = cell[at]
    cell[index[-1]] += by
    path.write_text(json.dumps(document))


def test_compute_json_reads_back_every_step_and_a_changed_one_is_the_first_divergence(tmp_path):
    saved = write(tmp_path, "all.json", run("compute", CAUSAL, "-f", "json").stdout)
    code, verdict = checked(CAUSAL, "-e", saved)
    assert (code, verdict["agree"], verdict["first_divergence"]) == (0, True, None)
    assert [step["step"] for step in verdict["verdicts"]] == STEPS
    assert all(step["agree"] and step["max_error"] == 0.0 for step in verdict["verdicts"])
    perturbed_json(saved, "softmax", (1, 2, 0), 0.01)
    code, verdict = checked(CAUSAL, "-e", saved)
    assert (code, verdict["agree"], verdict["first_divergence"]) == (1, False, "softmax")
    by_step = {step["step"]: step for step in verdict["verdicts"]}
    assert by_step["softmax"]["worst"]["index"] == [1, 2, 0] and by_step["softmax"]["wrong_cells"] == 1
    assert by_step["softmax"]["max_error"] == pytest.approx(0.01)
    assert [step["agree"] for step in verdict["verdicts"]] == [True] * 5 + [False, True, True]


def test_compute_npz_reads_back_and_a_changed_step_is_named(tmp_path):
    assert run("compute", CAUSAL, "-o", tmp_path / "trace.npz").exit_code == 0
    assert checked(CAUSAL, "-e", tmp_path / "trace.npz")[0] == 0
    with np.load(tmp_path / "trace.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["k"][0, 3, 1] -= 0.5
    np.savez(tmp_path / "changed.npz", **arrays)
    code, verdict = checked(CAUSAL, "-e", tmp_path / "changed.npz")
    assert (code, verdict["first_divergence"]) == (1, "k")
    k = verdict["verdicts"][1]
    assert (k["step"], k["worst"]["index"], k["max_error"]) == ("k", [0, 3, 1], pytest.approx(0.5))


def test_a_folder_of_step_csvs_reads_back_and_a_changed_file_is_named(tmp_path):
    folder = tmp_path / "steps"
    assert run("compute", CAUSAL, "-o", f"{folder}/").exit_code == 0
    assert checked(CAUSAL, "-e", folder)[0] == 0
    output = CAUSAL_TRACE.steps["output"].array.copy()
    output[2, 3] += 1e-3
    (folder / "output.csv").write_text("\n".join(",".join(map(repr, row)) for row in output.tolist()) + "\n")
    code, verdict = checked(CAUSAL, "-e", folder)
    assert (code, verdict["first_divergence"]) == (1, "output")
    assert verdict["verdicts"][-1]["worst"]["index"] == [2, 3]
    assert verdict["verdicts"][-1]["max_error"] == pytest.approx(1e-3)


@pytest.mark.parametrize(("step", "cell"), [("output", (1, 2)), ("softmax", (1, 3, 0))])  # matrix, long form
def test_a_single_steps_csv_reads_back_and_a_change_is_found(tmp_path, step, cell):
    text = run("compute", CAUSAL, "-s", step, "-f", "csv").stdout
    assert text.startswith("heads,row,0,1,2,3\n") == (step == "softmax")
    saved = write(tmp_path, f"{step}.csv", text)
    options = [] if step == "output" else ["-s", step]  # output is the default step of one array
    code, verdict = checked(CAUSAL, "-e", saved, *options)
    assert (code, verdict["step"], verdict["max_error"]) == (0, step, 0.0)
    array = CAUSAL_TRACE.steps[step].array.copy()
    array[cell] += 0.25
    changed = [",".join(map(repr, row)) for row in array.reshape(-1, array.shape[-1]).tolist()]
    if step == "softmax":
        changed = [text.splitlines()[0]] + [f"{head},{row},{line}" for (head, row), line in
                                            zip(np.ndindex(array.shape[:2]), changed, strict=True)]
    saved.write_text("\n".join(changed) + "\n")
    code, verdict = checked(CAUSAL, "-e", saved, *options)
    assert (code, verdict["worst"]["index"], verdict["max_error"]) == (1, list(cell), pytest.approx(0.25))


# --- a user's own dump ------------------------------------------------------------------------------

def users_dump(tmp_path):
    """What a user's code saved for BATCHED, each array in its own layout, with its logits unscaled."""
    steps = {name: step.array for name, step in BATCHED_TRACE.steps.items()}
    logits = steps["scores"]  # the slip: not divided by √head_dim
    exps = np.exp(logits - logits.max(axis=-1, keepdims=True))
    np.savez(tmp_path / "mine.npz", q=steps["q"].transpose(0, 2, 1, 3), k=steps["k"].reshape(6, 4, 2),
             v=steps["v"].transpose(0, 2, 1, 3).reshape(2, 4, 6), scores=steps["scores"], logits=logits,
             softmax=exps / exps.sum(axis=-1, keepdims=True), output=steps["output"].swapaxes(0, 1))
    return write(tmp_path, "p.json", json.dumps(BATCHED)), tmp_path / "mine.npz"


def test_a_users_dump_in_its_own_layouts_names_the_first_divergence_and_its_mistake(tmp_path):
    problem, dump = users_dump(tmp_path)
    code, verdict = checked(problem, "-e", dump)
    assert (code, verdict["first_divergence"]) == (1, "logits")
    by_step = {step["step"]: step for step in verdict["verdicts"]}
    assert [by_step[name]["layout"]["read_as"] for name in ("q", "k", "v", "scores", "output")] == [
        "(batch, q_len, heads, head_dim)", "(batch·heads, k_len, head_dim)", "(batch, k_len, heads·head_dim_v)",
        "(batch, heads, q_len, k_len)", "(q_len, batch, d_out)"]
    assert by_step["q"]["layout"]["attncli"] == "(batch, heads, q_len, head_dim)"
    assert [by_step[name]["agree"] for name in by_step] == [True, True, True, True, False, False, True]
    scores = BATCHED_TRACE.steps["scores"].array
    assert by_step["logits"]["max_error"] == pytest.approx(np.abs(scores - scores / math.sqrt(2)).max())
    assert by_step["logits"]["mistakes"][0]["name"] == "scores not scaled"
    assert by_step["softmax"]["mistakes"] == []  # only the first divergence is searched


def test_the_text_view_gives_a_line_per_step_then_the_first_divergence(tmp_path):
    problem, dump = users_dump(tmp_path)
    result = run("check", problem, "-e", dump)
    lines = result.stdout.splitlines()
    assert result.exit_code == 1 and result.stderr == ""
    assert lines[0] == "✓ q        largest difference 0  (read as (batch, q_len, heads, head_dim), attncli's is " \
                       "(batch, heads, q_len, head_dim))"
    assert lines[3] == "✓ scores   largest difference 0"
    assert lines[4].startswith("✗ logits   largest difference 1.")
    assert lines[7] == "First divergence: logits (the steps before it agree): look there."
    assert lines[8].startswith("✗ logits differs from attncli in 96 of 96 cells")
    assert lines[9].startswith("Likely mistake: scores not scaled: ")
    agreeing = run("check", CAUSAL, "-e", write(tmp_path, "all.json", run("compute", CAUSAL, "-f", "json").stdout))
    assert agreeing.stdout.splitlines()[-1] == "Every step agrees with attncli (atol 1e-06, rtol 1e-05)."


def test_step_checks_only_that_step_of_a_dump(tmp_path):
    problem, dump = users_dump(tmp_path)
    code, verdict = checked(problem, "-e", dump, "-s", "q")
    assert (code, verdict["step"], verdict["agree"]) == (0, "q", True)
    assert verdict["layout"]["read_as"] == "(batch, q_len, heads, head_dim)"
    words = run("check", problem, "-e", dump, "-s", "q").stdout.splitlines()
    assert words[1] == "  Yours read as (batch, q_len, heads, head_dim), attncli's is (batch, heads, q_len, head_dim)."


def test_the_heads_mean_in_a_dump_is_computed_and_checked(tmp_path):
    softmax = CAUSAL_TRACE.steps["softmax"].array
    saved = write(tmp_path, "w.json", json.dumps({"softmax": softmax.tolist(), "averaged": softmax.mean(0).tolist()}))
    code, verdict = checked(CAUSAL, "-e", saved)
    assert (code, [step["step"] for step in verdict["verdicts"]]) == (0, ["softmax", "averaged"])


# --- bad dumps ---------------------------------------------------------------------------------------

ALL_STEPS = ("q, k, v, q_normed, k_normed, q_rotated, k_rotated, scores, logits, capped, biased, softmax, averaged, "
             "concat, output")


def test_keys_that_are_not_steps_are_one_line_naming_them(tmp_path):
    np.savez(tmp_path / "mine.npz", q=np.zeros(2), attn=np.zeros(2))
    assert_one_line_error(run("check", CAUSAL, "-e", tmp_path / "mine.npz"),
                          f"{tmp_path / 'mine.npz'}: holds a key that is not a step: 'attn'; the steps are "
                          f"{ALL_STEPS}; did you mean 'softmax'?")
    both = write(tmp_path, "both.json", '{"q": [1], "hidden": [1], "attn_out": [2], "meta": {}}')
    assert_one_line_error(run("check", CAUSAL, "-e", both),
                          f"{both}: holds keys that are not steps: 'hidden', 'attn_out'; the steps are {ALL_STEPS}")


def test_a_dumped_step_the_problem_lacks_is_one_line(tmp_path):
    steps = {name: CAUSAL_TRACE.steps[name].array.tolist() for name in ("q", "k")}
    saved = write(tmp_path, "d.json", json.dumps({**steps, "capped": [[1.0]]}))
    assert_one_line_error(run("check", CAUSAL, "-e", saved),
                          f"{saved}: holds step 'capped', which this problem does not have; its steps are "
                          "q, k, v, scores, logits, softmax, averaged, concat, output")


def test_an_npz_on_standard_input_is_a_dump(tmp_path):
    import io

    buffer = io.BytesIO()
    np.savez(buffer, output=np.eye(2), meta=np.array("{}"))
    assert read_dump("-", io.BytesIO(buffer.getvalue()))["output"].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_an_ambiguous_q_is_checked_in_attnclis_layout_and_says_so(tmp_path):
    document = random_document(seq_len=2, d_model=4, heads=2, seed=8)  # heads == q_len == 2
    q = attention(problem_from_document(document)).steps["q"].array  # (heads, q_len, head_dim)
    problem = write(tmp_path, "p.json", json.dumps(document))
    for name, array, agrees in (("own.json", q, True), ("swapped.json", q.transpose(1, 0, 2), False)):
        saved = write(tmp_path, name, json.dumps({"q": array.tolist()}))
        code, verdict = checked(problem, "-e", saved)
        assert (code, verdict["agree"]) == (0 if agrees else 1, agrees)
        assert verdict["layout"] == {"read_as": "(heads, q_len, head_dim)", "attncli": "(heads, q_len, head_dim)",
                                     "also_fits": ["(q_len, heads, head_dim)"]}
    words = run("check", problem, "-e", tmp_path / "own.json").stdout.splitlines()
    assert words[1] == ("  Yours read as attncli's (heads, q_len, head_dim); the shape also fits "
                        "(q_len, heads, head_dim).")
