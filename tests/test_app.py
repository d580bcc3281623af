"""attncli.app, called directly: load a problem, compute it, emit it; JSON Lines and the commands."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest
from conftest import SAMPLES

from attncli import app
from attncli.errors import ProblemError
from attncli.request import CheckRequest, ComputeRequest, Given, RandomRequest, ShapesRequest, Shown, UsageError

CLASSIC = SAMPLES / "classic.json"
CLASSIC_OUTPUT = [[1.9366210616669624, 6.683105308334811, 1.5950684074995565],
                  [1.9999939663351454, 7.963991595132215, 0.053976405312549595],
                  [1.9997046127769653, 7.759892254657784, 0.35838929467511527]]
MASKED = {"x": [[1.0], [2.0]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[1.0]],
          "mask": [[False, False], [True, True]]}


def problem_error(call, *args, **kwargs) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        call(*args, **kwargs)
    return caught.value


# --- load -----------------------------------------------------------------------------------------

def test_load_reads_validates_and_names_the_problem():
    loaded = app.load(Given(str(CLASSIC)))
    assert loaded.source == str(CLASSIC) and set(loaded.inputs) == {str(CLASSIC)}
    np.testing.assert_array_equal(loaded.problem.x, [[[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]]])  # batch of one
    assert (loaded.problem.heads, loaded.problem.scale_factor, loaded.problem.x.dtype) == (1, 1.0, np.float64)


def test_load_applies_the_overrides_and_the_dtype():
    loaded = app.load(Given(str(SAMPLES / "multihead_causal.json"), heads=1, scale="2", causal=True,
                            dtype="float32"))
    assert (loaded.problem.heads, loaded.problem.scale_factor) == (1, 2.0)
    assert loaded.problem.x.dtype == np.float32 and loaded.problem.w_query.dtype == np.float32


def test_load_lists_every_file_read_and_names_the_matrix_file_at_fault(tmp_path):
    folder = SAMPLES / "classic_csv"
    loaded = app.load(Given(matrices={"x": str(folder / "x.csv"), "w_query": str(folder / "w_query.csv"),
                                      "w_key": str(folder / "w_key.csv"), "w_value": str(folder / "w_value.csv")}))
    assert loaded.source == str(folder / "x.csv")
    assert sorted(loaded.inputs) == sorted(str(folder / name) for name in ("x.csv", "w_query.csv", "w_key.csv",
                                                                          "w_value.csv") for _ in (1, 2))
    bad = tmp_path / "w_key.csv"
    bad.write_text("1,2\n3,4\n")
    error = problem_error(app.load, Given(str(CLASSIC), {"w_key": str(bad)}))
    assert error.source == str(bad) and "w_key" in error.message


def test_load_names_a_missing_file():
    error = problem_error(app.load, Given("no/such.json"))
    assert (error.source, error.message) == ("no/such.json", "no such file")


def test_problem_of_a_document():
    problem = app.problem_of(json.loads(CLASSIC.read_text()), Given(scale="sqrt", dtype="float32"))
    assert problem.scale_factor == pytest.approx(1 / np.sqrt(3)) and problem.x.dtype == np.float32


# --- compute --------------------------------------------------------------------------------------

def test_compute_gives_every_step_or_the_ones_asked_for():
    problem = app.load(Given(str(CLASSIC))).problem
    trace = app.compute(problem, None, "classic")
    assert list(trace.steps) == ["q", "k", "v", "scores", "softmax", "output"]
    assert trace.steps["q"].array[0].tolist() == [1.0, 0.0, 2.0]
    assert trace.steps["scores"].array[0].tolist() == [2.0, 4.0, 4.0]
    assert trace.steps["output"].array.tolist() == CLASSIC_OUTPUT
    only = app.compute(problem, ["output"], "classic")
    assert [step.name for step in only.select(["output"])] == ["output"]
    np.testing.assert_allclose(only.steps["output"].array, CLASSIC_OUTPUT, rtol=1e-15)


def test_compute_refuses_a_full_trace_larger_than_free_memory(monkeypatch):
    import attncli.machine as machine

    problem = app.load(Given(str(CLASSIC))).problem
    monkeypatch.setattr(machine, "available_memory", lambda: 100)
    error = problem_error(app.compute, problem, None, "classic")
    assert error.source == "classic"
    assert error.message.startswith("every step of this problem needs about 0.0 GiB, but 0.0 GiB is free")
    # the output steps alone need no full trace
    np.testing.assert_allclose(app.compute(problem, ["output"], "classic").steps["output"].array, CLASSIC_OUTPUT)


def test_compute_turns_a_memory_error_into_one_naming_the_source(monkeypatch):
    import attncli.pipeline as pipeline

    def too_large(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(pipeline, "attention", too_large)
    error = problem_error(app.compute, app.load(Given(str(CLASSIC))).problem, None, "big.json")
    # the message names the field; the CLI shows it as its flag
    assert (error.source, error.render(lambda field: f"--{field}")) == (
        "big.json", "is too large for this machine's memory (try --step output, or a smaller problem)")


def test_compute_writes_warnings_to_stderr(capsys):
    trace = app.compute(app.problem_of(MASKED, Given()), None, "masked.json")
    # query 1 sees both keys: scores 2·1 and 2·2, weights softmax([2, 4]), values 1 and 2
    expected = (1 + 2 * np.e**2) / (1 + np.e**2)
    assert trace.steps["output"].array.tolist() == [[0.0], [pytest.approx(expected, rel=1e-15)]]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("Warning: masked.json: ") and captured.err.count("\n") == 1


# --- emit -----------------------------------------------------------------------------------------

def classic_trace(steps=None):
    return app.compute(app.load(Given(str(CLASSIC))).problem, steps, "classic")


def test_emit_json_to_stdout(capsysbinary):
    trace = classic_trace()
    app.emit(trace, trace.select(["softmax", "output"]), Shown("json"), [])
    document = json.loads(capsysbinary.readouterr().out)
    assert list(document) == ["softmax", "output", "meta"]
    assert document["output"] == CLASSIC_OUTPUT
    assert sum(document["softmax"][0]) == pytest.approx(1.0, rel=1e-15)


def test_emit_csv_of_one_step_to_stdout(capsysbinary):
    trace = classic_trace()
    app.emit(trace, trace.select(["q"]), Shown("csv"), [])
    assert capsysbinary.readouterr().out == b"1.0,0.0,2.0\n2.0,2.0,2.0\n2.0,1.0,3.0\n"


def test_emit_picks_the_format_from_the_file_name(tmp_path):
    trace = classic_trace()
    steps = trace.select(None)
    app.emit(trace, steps, Shown(output=str(tmp_path / "out.npz")), [])
    with np.load(tmp_path / "out.npz", allow_pickle=False) as archive:
        assert archive["output"].tolist() == CLASSIC_OUTPUT
        assert json.loads(str(archive["meta"]))["steps"]["q"]["shape"] == [3, 3]
    app.emit(trace, steps, Shown(output=str(tmp_path / "out.txt"), precision=2), [])
    assert "1.94" in (tmp_path / "out.txt").read_text()
    app.emit(trace, steps, Shown(output=str(tmp_path / "steps") + "/"), [])
    assert sorted(path.name for path in (tmp_path / "steps").iterdir()) == [
        "k.csv", "output.csv", "q.csv", "scores.csv", "softmax.csv", "v.csv"]
    assert (tmp_path / "steps" / "output.csv").read_text().splitlines()[0] == ",".join(map(repr, CLASSIC_OUTPUT[0]))


def test_emit_errors_name_the_output(tmp_path):
    trace = classic_trace()
    error = problem_error(app.emit, trace, trace.select(None), Shown(output=str(tmp_path / "out.xyz")), [])
    assert error.source == str(tmp_path / "out.xyz")
    assert error.message.startswith("has no extension attncli writes (.json, .jsonl, .csv, .npz, .txt)")
    error = problem_error(app.emit, trace, trace.select(None), Shown("csv"), [])
    assert error.source == "--format csv" and error.message.startswith("holds one step")
    error = problem_error(app.emit, trace, trace.select(None), Shown(output=str(CLASSIC)), [str(CLASSIC)])
    assert error.source == str(CLASSIC) and "never writes over its input" in error.message


def test_show_checks_picture_paths_before_showing(tmp_path, capsys):
    shown = []
    error = problem_error(app.show, shown.append, Shown(export_svg=str(tmp_path)), [])
    assert (error.source, error.message) == (str(tmp_path), "needs a file name, not a folder")
    error = problem_error(app.show, shown.append, Shown(export_html=""), [])
    assert error.source == "--export-html"
    assert shown == [] and capsys.readouterr().out == ""


def test_show_saves_the_picture_of_what_it_shows_and_the_page(tmp_path, capsys):
    made = []
    app.show(lambda console: console.print("attention"), Shown(export_svg=str(tmp_path / "a.svg")), [],
             lambda: made.append("page") or b"page")
    assert capsys.readouterr().out == "attention\n" and made == []  # the page is made only when asked for
    assert (tmp_path / "a.svg").read_text().startswith("<svg") and "attention" in (tmp_path / "a.svg").read_text()
    app.show(lambda console: console.print("attention"), Shown(export_html=str(tmp_path / "a.html")), [],
             lambda: b"<!DOCTYPE html>the page")
    assert (tmp_path / "a.html").read_text() == "<!DOCTYPE html>the page"


# --- JSON Lines and the commands ------------------------------------------------------------------

def test_json_lines_go_through_the_same_load_and_report_bad_lines(tmp_path, monkeypatch, capsysbinary):
    classic = json.dumps(json.loads(CLASSIC.read_text()))
    lines = tmp_path / "in.jsonl"
    lines.write_text(f"{classic}\n[1]\n{classic}\n")
    reported = []
    request = ComputeRequest(Given(str(lines), scale="sqrt"), ["output"])
    assert app.run_compute(request, reported.append) is False
    outputs = [json.loads(line) for line in capsysbinary.readouterr().out.splitlines()]
    assert outputs[1] is None and outputs[0] == outputs[2]
    expected = app.compute(app.problem_of(json.loads(classic), Given(scale="sqrt")), ["output"], "")
    assert outputs[0]["output"] == expected.steps["output"].array.tolist()
    assert outputs[0]["meta"]["scale"]["rule"] == "sqrt"
    assert [(error.source, error.message.split(":")[0]) for error in reported] == [(str(lines), "line 2")]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(f"{classic}\n".encode())))
    assert app.run_compute(ComputeRequest(Given("-"), ["output"], lines=True), reported.append) is True
    assert json.loads(capsysbinary.readouterr().out)["output"] == CLASSIC_OUTPUT


def test_dash_as_output_is_stdout(capsysbinary):
    assert app.run_compute(ComputeRequest(Given(str(CLASSIC)), ["output"], Shown("json", "-")), print) is True
    assert json.loads(capsysbinary.readouterr().out)["output"] == CLASSIC_OUTPUT
    # and so the heatmap, which goes to the terminal, may have it
    assert app.run_compute(ComputeRequest(Given(str(CLASSIC)), None, Shown(output="-", view="heatmap")), print)
    assert b"softmax" in capsysbinary.readouterr().out


def test_run_compute_checks_the_options_first(tmp_path):
    with pytest.raises(UsageError):
        app.run_compute(ComputeRequest(Given(str(tmp_path / "missing.json")), ["softmax"], Shown(view="heatmap")),
                        print)


def test_run_check_says_whether_the_numbers_agree(tmp_path, capsysbinary):
    right, wrong = tmp_path / "right.json", tmp_path / "wrong.json"
    right.write_text(json.dumps({"output": CLASSIC_OUTPUT}))
    wrong.write_text(json.dumps({"output": (np.array(CLASSIC_OUTPUT) + 1).tolist()}))
    assert app.run_check(CheckRequest(Given(str(CLASSIC)), str(right), "output", 1e-6, 1e-5), Shown("json")) is True
    assert json.loads(capsysbinary.readouterr().out)["agree"] is True
    assert app.run_check(CheckRequest(Given(str(CLASSIC)), str(wrong), "output", 1e-6, 1e-5), Shown("json")) is False
    error = problem_error(app.run_check, CheckRequest(Given(str(CLASSIC)), str(right), "concat", 0, 0), Shown())
    assert (error.source, error.message) == (
        str(CLASSIC),
        "step 'concat': this problem has no such step; the steps are q, k, v, scores, softmax, averaged, output")


def test_run_shapes_from_sizes_and_from_a_file(capsysbinary):
    app.run_shapes(ShapesRequest(None, {"seq_len": 10, "d_model": 512, "heads": 8}), Shown("json"))
    rows = {row["step"]: row for row in json.loads(capsysbinary.readouterr().out)["steps"]}
    assert rows["scores"]["shape"] == [8, 10, 10] and rows["output"]["shape"] == [10, 512]
    app.run_shapes(ShapesRequest(str(CLASSIC), {}), Shown("json"))
    rows = {row["step"]: row for row in json.loads(capsysbinary.readouterr().out)["steps"]}
    assert rows["scores"]["shape"] == [3, 3]
    error = problem_error(app.run_shapes, ShapesRequest(None, {"seq_len": 4, "d_model": 6, "heads": 4}), Shown())
    assert error.source == "shapes"


def test_run_random_makes_a_valid_document(capsys):
    app.run_random(RandomRequest(3, 4, heads=2, seed=1, causal=True))
    document = json.loads(capsys.readouterr().out)
    problem = app.problem_of(document, Given())
    assert np.asarray(document["x"]).shape == (3, 4) and problem.heads == 2
    assert document["mask"] == "causal"
    error = problem_error(app.run_random, RandomRequest(3, 4, heads=3))
    assert error.source == "random"


def test_load_applies_the_variant_overrides():
    problem = app.load(Given(str(SAMPLES / "llama_style.json"), kv_heads=2, rope="gptj", rope_theta=100.0, window=2,
                             softcap=4.0, alibi=True, causal_lower_right=True)).problem
    assert (problem.kv_heads, problem.rope.style, problem.rope.theta, problem.window, problem.softcap) == (
        2, "gptj", 100.0, 2, 4.0)
    assert problem.alibi.tolist() == [0.25, 0.0625, 0.015625, 0.00390625] and problem.mask_rule == "causal_lower_right"


def test_an_options_bad_value_names_the_option_and_no_file():
    error = problem_error(app.load, Given(str(CLASSIC), window=0))
    assert error.source is None and error.render(lambda field: f"--{field}") == "--window is 0; it must be at least 1"
    # the same value in the file is the file's
    document = {**json.loads(CLASSIC.read_text()), "softcap": -1}
    error = problem_error(app.problem_of, document, Given(window=2))
    assert error.render(lambda field: f"--{field}") == "softcap is -1; it must be a positive finite number"
    # a stream's lines meet the option's value line by line, each named by the option
    error = problem_error(app.problem_of, json.loads(CLASSIC.read_text()), Given(softcap=0.0))
    assert error.render(lambda field: f"--{field}") == "--softcap is 0; it must be a positive finite number"


def test_run_shapes_shows_the_variants_steps_from_sizes(capsysbinary):
    sizes = {"seq_len": 4, "d_model": 8, "heads": 4, "kv_heads": 1, "rope": "gptj", "softcap": 10.0, "alibi": True,
             "window": 2}
    app.run_shapes(ShapesRequest(None, sizes), Shown("json"))
    rows = {row["step"]: row for row in json.loads(capsysbinary.readouterr().out)["steps"]}
    assert rows["k"]["shape"] == [4, 2] and rows["q_rotated"]["formula"].endswith("(pairs, gptj)")
    assert {"k_rotated", "capped", "biased"} <= set(rows) and "q_normed" not in rows
    # a key/value head count equal to the heads is no grouping
    app.run_shapes(ShapesRequest(None, {"seq_len": 4, "d_model": 8, "heads": 2, "kv_heads": 2}), Shown("json"))
    rows = {row["step"]: row for row in json.loads(capsysbinary.readouterr().out)["steps"]}
    assert rows["k"]["axes"] == ["heads", "k_len", "head_dim"]
    error = problem_error(app.run_shapes, ShapesRequest(None, {"seq_len": 4, "d_model": 6, "heads": 2, "rope": "neox"}),
                          Shown())
    assert error.source == "shapes" and str(error).startswith("rope rotates pairs of dims but head_dim is 3, odd")


def test_run_random_makes_every_variant(capsys):
    app.run_random(RandomRequest(4, 8, heads=4, kv_heads=2, rope="neox", window=2, softcap=30.0, alibi=True,
                                 sinks=True, qk_norm=True, padding=True, causal_lower_right=True, seed=2))
    document = json.loads(capsys.readouterr().out)
    problem = app.problem_of(document, Given())
    assert (problem.kv_heads, problem.rope.style, problem.window, problem.softcap, problem.mask_rule) == (
        2, "neox", 2, 30.0, "causal_lower_right")
    assert problem.sinks is not None and problem.qk_norm is not None and problem.padding is not None
    error = problem_error(app.run_random, RandomRequest(4, 8, heads=4, kv_heads=3))
    assert error.source == "random" and error.render(lambda field: f"--{field}").startswith("--kv_heads is 3")
    with pytest.raises(UsageError):
        app.run_random(RandomRequest(4, 8, causal=True, causal_lower_right=True))
