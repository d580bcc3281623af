"""Edge cases found in review: each once a traceback, a wrong verdict or a silent surprise."""

from __future__ import annotations

import json
import shutil

import numpy as np
from conftest import SAMPLES
from test_cli import assert_one_line_error, run, write

from attncli.pipeline import attention
from attncli.problem import problem_from_document

CLASSIC = json.loads((SAMPLES / "classic.json").read_text())
MASKED = {**CLASSIC, "mask": [[0, 0, 1], [1, 1, 1], [1, 0, 1]]}


def own_step(document, step, **overrides):
    return attention(problem_from_document(document, **overrides)).steps[step].array


def test_check_json_with_masked_logits_and_infinities(tmp_path):
    problem = write(tmp_path, "p.json", json.dumps(MASKED))
    logits = own_step(MASKED, "logits")
    shifted = np.where(np.isfinite(logits), logits + 1.0, None).tolist()
    result = run("check", problem, "-e", write(tmp_path, "l.json", json.dumps(shifted)), "-s", "logits", "-f", "json")
    verdict = json.loads(result.stdout)
    assert result.exit_code == 1 and verdict["max_error"] == 1.0
    infinite = np.where(np.isfinite(logits), np.inf, None).tolist()
    infinite_text = json.dumps(infinite).replace("Infinity", "1e999")
    result = run("check", problem, "-e", write(tmp_path, "i.json", infinite_text), "-s", "logits", "-f", "json")
    verdict = json.loads(result.stdout)
    # +∞ where attncli has a number is said as such, not as a difference of ∞; the masked cells agree
    assert result.exit_code == 1 and verdict["max_error"] == 0.0 and verdict["wrong_cells"] == 6
    assert verdict["not_finite"] == {"index": [0, 2], "yours": "inf", "attncli": logits[0, 2], "cells": 6}


def test_nan_in_your_numbers_is_not_a_mask(tmp_path):
    problem = write(tmp_path, "p.json", json.dumps(MASKED))
    logits = own_step(MASKED, "logits")
    with_nan = json.dumps(np.where(np.isfinite(logits), logits, None).tolist()).replace("null", "NaN")
    result = run("check", problem, "-e", write(tmp_path, "n.json", with_nan), "-s", "logits")
    assert result.exit_code == 1, result.output


def test_minus_a_billion_masks_as_well_as_minus_infinity(tmp_path):
    problem = write(tmp_path, "p.json", json.dumps(MASKED))
    logits = own_step(MASKED, "logits")
    filled = np.where(np.isfinite(logits), logits, -1e9).tolist()
    assert run("check", problem, "-e", write(tmp_path, "f.json", json.dumps(filled)), "-s", "logits").exit_code == 0


def test_expected_with_a_huge_integer(tmp_path):
    path = write(tmp_path, "big.json", "[[1" + "0" * 400 + ", 1, 1]]")
    assert_one_line_error(run("check", SAMPLES / "classic.json", "-e", path),
                          f"{path}: output[0][0] is an integer too large for float64 (beyond ±1.8e308)")


def test_infinite_tolerance_is_refused():
    result = run("check", SAMPLES / "classic.json", "-e", SAMPLES / "classic_mistake.json", "--atol", "inf")
    assert_one_line_error(result, "Invalid value for --atol/--rtol: tolerances must be finite numbers of 0 or more "
                                  "(see 'attncli check --help')")


def naive_with_nan_rows(document):
    """What code that reads the mask upside down, and lets an empty row be 0/0, prints."""
    x = np.array(document["x"], float)
    q, k, v = (x @ np.array(document[name]) for name in ("w_query", "w_key", "w_value"))
    allowed = ~np.tri(len(x), dtype=bool)
    logits = np.where(allowed, q @ k.T / np.sqrt(q.shape[1]), -np.inf)
    with np.errstate(invalid="ignore"):
        weights = np.exp(logits - logits.max(1, keepdims=True))
        weights /= weights.sum(1, keepdims=True)
    return weights @ v


def test_an_inverted_causal_mask_is_named_even_with_nan_rows(tmp_path):
    document = {key: value for key, value in CLASSIC.items() if key != "scale"}
    problem = write(tmp_path, "p.json", json.dumps({**document, "mask": "causal"}))
    theirs = json.dumps(naive_with_nan_rows(document).tolist())  # json writes the NaN row as NaN literals
    result = run("check", problem, "-e", write(tmp_path, "t.json", theirs), "-f", "json")
    verdict = json.loads(result.stdout)
    assert result.exit_code == 1 and verdict["mistakes"][0]["name"] == "mask inverted"


def test_unscaled_logits_are_named_on_the_logits_step(tmp_path):
    document = {key: value for key, value in CLASSIC.items() if key != "scale"}
    problem = write(tmp_path, "p.json", json.dumps(document))
    scores = own_step(document, "scores")
    result = run("check", problem, "-e", write(tmp_path, "s.json", json.dumps(scores.tolist())), "-s", "logits",
                 "-f", "json")
    assert json.loads(result.stdout)["mistakes"][0]["name"] == "scores not scaled"


def test_a_problem_folder_ignores_the_steps_written_into_it(tmp_path):
    folder = tmp_path / "problem"
    shutil.copytree(SAMPLES / "classic_csv", folder)
    first = run("compute", folder, "-f", "json", "-s", "output")
    assert run("compute", folder, "-o", f"{folder}/").exit_code == 0
    assert (folder / "softmax.csv").exists()
    assert run("compute", folder, "-f", "json", "-s", "output").stdout == first.stdout


def test_a_matrix_in_problem_json_and_in_a_file_is_given_twice(tmp_path):
    folder = tmp_path / "problem"
    shutil.copytree(SAMPLES / "classic_csv", folder)
    (folder / "problem.json").write_text(json.dumps({"scale": "none", "x": [[1, 2, 3, 4]]}))
    assert_one_line_error(run("compute", folder), f"{folder}: x is given twice in this folder: problem.json and x.csv")


def test_shapes_takes_sizes_or_a_file_not_both():
    assert_one_line_error(run("shapes", SAMPLES / "classic.json", "--heads", "3"),
                          "Invalid value for --heads: a FILE brings its own sizes: give sizes or a FILE, not both "
                          "(see 'attncli shapes --help')")


def test_output_dash_is_stdout(tmp_path):
    result = run("compute", SAMPLES / "classic.json", "-o", "-", "-f", "json", "-s", "output")
    assert json.loads(result.stdout)["output"][0][0] == 1.9366210616669624


def test_picture_paths_are_checked_before_anything_is_shown(tmp_path):
    for path, message in (("", "--export-svg: needs a file name, not a folder"),
                          (f"{tmp_path}/", f"{tmp_path}/: needs a file name, not a folder"),
                          (str(SAMPLES / "classic.json"),
                           f"{SAMPLES / 'classic.json'}: is one of this run's inputs ({SAMPLES / 'classic.json'}); "
                           "attncli never writes over its input")):
        assert_one_line_error(run("compute", SAMPLES / "classic.json", "--export-svg", path), message)


def test_a_trace_too_large_for_memory_is_refused_before_allocating(monkeypatch):
    import attncli.machine as machine

    monkeypatch.setattr(machine, "available_memory", lambda: 100)  # bytes; the classic trace needs 648
    problem = SAMPLES / "classic.json"
    assert_one_line_error(run("compute", problem),
                          f"{problem}: every step of this problem needs about 0.0 GiB, but 0.0 GiB is free: "
                          "ask for --step output (computed in blocks), or give a smaller problem")
    # the output alone is computed in blocks and needs no full trace
    assert run("compute", problem, "--step", "output", "-f", "json").exit_code == 0


def test_random_refuses_a_document_larger_than_memory_before_making_it():
    result = run("random", "--seq-len", "10000000", "--d-model", "512")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith("Error: random: that document needs about 305.2 GiB to make, but ")
    assert result.stderr.endswith(" GiB is free: ask for fewer tokens or a smaller d_model\n")


def test_ctrl_c_exits_130_with_one_line_and_leaves_no_output_file(tmp_path, monkeypatch):
    import attncli.pipeline as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "attention", interrupted)
    result = run("compute", SAMPLES / "classic.json", "-o", tmp_path / "out.npz")
    assert result.exit_code == 130
    assert result.stderr == "Error: interrupted\n"
    assert list(tmp_path.iterdir()) == []
