"""Seeing and checking: shapes, explain, check (with deliberately wrong implementations), heatmaps,
pictures."""

from __future__ import annotations

import io
import json
import math
import re
import xml.etree.ElementTree as ElementTree

import numpy as np
import pytest
from conftest import SAMPLES
from rich.console import Console
from test_cli import assert_one_line_error, run, write

from attncli.generate import random_document
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.view import print_heatmaps

CLASSIC = json.loads((SAMPLES / "classic.json").read_text())


# --- shapes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [
    {"seq_len": 3, "d_model": 4},
    {"seq_len": 5, "d_model": 8, "heads": 2, "batch": 3},
    {"seq_len": 4, "d_model": 6, "heads": 3, "context_len": 7, "out_proj": True},
    {"seq_len": 2, "d_model": 8, "heads": 4, "batch": 1, "causal": True, "out_proj": True, "bias": True},
])
def test_shapes_are_the_traces_real_shapes(sizes):
    document = random_document(seed=3, **sizes)
    trace = attention(problem_from_document(document))
    options = ["--seq-len", sizes["seq_len"], "--d-model", sizes["d_model"], "--heads", sizes.get("heads", 1)]
    if "batch" in sizes:
        options += ["--batch", sizes["batch"]]
    if "context_len" in sizes:
        options += ["--context-len", sizes["context_len"]]
    if sizes.get("out_proj"):
        options += ["--d-out", sizes["d_model"]]
    for args in (["shapes", *options], ["shapes", "-"]):
        stdin = json.dumps(document) if args[-1] == "-" else None
        result = run(*args, "--format", "json", stdin=stdin)
        assert result.exit_code == 0, result.output
        rows = {row["step"]: row for row in json.loads(result.stdout)["steps"]}
        from_options = args[-1] != "-"
        for name, step in trace.steps.items():
            if name == "logits" and from_options and "logits" not in rows:
                continue
            assert rows[name]["shape"] == list(step.shape), (args, name)
            assert rows[name]["axes"] == list(step.axes), (args, name)
        assert rows["x"]["shape"] == list(np.shape(document["x"]))


def test_shapes_table_explains_the_split():
    result = run("shapes", "--batch", "2", "--seq-len", "10", "--d-model", "512", "--heads", "8")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "(2, 8, 10, 64)" in text and "(batch, heads, q_len, head_dim)" in text
    assert "times W_Q (512×512), split into 8 heads × 64" in text
    assert "(2, 8, 10, 10)" in text and "(2, 10, 512)" in text


def test_shapes_says_which_head_counts_would_work():
    assert_one_line_error(run("shapes", "--seq-len", "3", "--d-model", "12", "--heads", "5"),
                          "shapes: d_model 12 does not split into 5 heads (head counts that would: 1, 2, 3, 4, 6, 12)")


# --- explain -------------------------------------------------------------------------------------

NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?"


def explain_lines(*args, stdin=None):
    result = run("explain", *args, stdin=stdin)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def numbers_after(lines, prefix):
    line = next(line for line in lines if line.strip().startswith(prefix))
    return [float(text) for text in re.findall(NUMBER, line.split("=")[-1])]


def test_explain_numbers_are_the_traces():
    document = random_document(seq_len=4, d_model=6, heads=2, causal=True, bias=True, seed=11)
    path_text = json.dumps(document)
    trace = attention(problem_from_document(document))
    lines = explain_lines("-", "--query", "2", "--head", "1", "--precision", "12", stdin=path_text)
    assert lines[0] == "Query 2 (head 1): its query vector and the key vectors"
    np.testing.assert_allclose(numbers_after(lines, "q[2] ="), trace.steps["q"].array[1, 2], atol=1e-11)
    np.testing.assert_allclose(numbers_after(lines, "k[1] ="), trace.steps["k"].array[1, 1], atol=1e-11)
    for key in range(3):
        assert numbers_after(lines, f"q[2]·k[{key}] =") == pytest.approx([trace.steps["scores"].array[1, 2, key]],
                                                                         abs=1e-11)
        assert numbers_after(lines, f"weight[{key}] =") == pytest.approx([trace.steps["softmax"].array[1, 2, key]],
                                                                        abs=1e-11)
    assert "  masked keys (−∞, weight 0): 3" in lines and "  logit[3] = −∞ (masked)" in lines
    per_head = trace.steps["softmax"].array[1, 2] @ trace.steps["v"].array[1]
    np.testing.assert_allclose(numbers_after(lines, "= ["), per_head, atol=1e-11)


def test_explain_the_classic_example_spells_out_the_dot_product():
    lines = explain_lines(SAMPLES / "classic.json", "--query", "0", "--key", "1")
    assert "  q[0]·k[1] = 1×4 + 0×4 + 2×0 = 4" in lines
    assert "  e^(2 - 4) = 0.1353" in lines and "  weight[0] = 0.1353 / 2.1353 = 0.0634" in lines
    assert "  out[0] = 0.0634×[1, 2, 3] + 0.4683×[2, 8, 0] + 0.4683×[2, 6, 3]" in lines
    assert "         = [1.9366, 6.6831, 1.5951]" in lines
    assert len(lines) < 30  # readable without scrolling


def test_explain_elides_long_rows():
    document = random_document(seq_len=20, d_model=16, seed=2)
    lines = explain_lines("-", "--query", "5", stdin=json.dumps(document))
    assert "  …" in lines
    assert len(lines) < 50
    assert all(len(line) < 400 for line in lines)


def test_explain_index_out_of_range():
    assert_one_line_error(run("explain", SAMPLES / "classic.json", "--query", "3"),
                          f"{SAMPLES / 'classic.json'}: --query 3 is out of range: there are 3 queries (0 to 2)")


# --- check, against deliberately wrong implementations ---------------------------------------------

def naive(document, bug=None):
    """Attention as a learner might write it, one loop per head, with one deliberate bug."""
    x = np.array(document["x"], dtype=float)
    heads = document["heads"]
    weights = {name: np.array(document[name], dtype=float) for name in ("w_query", "w_key", "w_value", "w_out")}
    if bug == "weights_not_transposed":
        weights = {name: w.T for name, w in weights.items()}
    biases = {name: np.array(document[name]) for name in ("b_query", "b_key", "b_value", "b_out")}
    if bug and bug.startswith("drop_"):
        biases[bug[5:]] = np.zeros_like(biases[bug[5:]])
    q = x @ weights["w_query"] + biases["b_query"]
    k = x @ weights["w_key"] + biases["b_key"]
    v = x @ weights["w_value"] + biases["b_value"]
    d_model, width = x.shape[1], q.shape[1]
    head_dim = width // heads
    mask = document.get("mask")
    allowed = np.ones((len(x), len(x)), bool) if mask is None else np.array(mask, bool)
    if bug == "mask_inverted":
        allowed = ~allowed
    if bug == "causal_not_asked":
        allowed = np.tril(np.ones((len(x), len(x)), bool))
    outputs = []
    for h in range(heads):
        columns = slice(h, width, heads) if bug == "heads_interleaved" else slice(h * head_dim, (h + 1) * head_dim)
        q_h, k_h, v_h = q[:, columns], k[:, columns], v[:, columns]
        scores = k_h @ q_h.T if bug == "scores_transposed" else q_h @ k_h.T
        scale = {"no_scaling": 1.0, "sqrt_d_model": 1 / math.sqrt(d_model),
                 "scaled_twice": 1 / head_dim}.get(bug, 1 / math.sqrt(head_dim))
        logits = np.where(allowed, scores * scale, -np.inf)
        axis = 0 if bug == "softmax_over_queries" else 1
        exps = np.exp(logits - np.max(logits, axis=axis, keepdims=True))
        attention_weights = exps / exps.sum(axis=axis, keepdims=True)
        outputs.append(attention_weights.T @ v_h if bug == "transposed_weighted_sum" else attention_weights @ v_h)
    concat = np.concatenate(outputs, axis=1)
    if bug == "no_output_projection":
        return concat
    return concat @ weights["w_out"] + biases["b_out"]


@pytest.fixture
def problem_file(tmp_path):
    # d_model 8, 2 heads: √d_model, √head_dim and head_dim all differ, so every scaling slip is its own
    rng = np.random.default_rng(4)
    document = {
        "x": rng.normal(size=(5, 8)).tolist(),
        **{name: (rng.normal(size=(8, 8)) / 2).tolist() for name in ("w_query", "w_key", "w_value", "w_out")},
        **{name: rng.normal(size=8).tolist() for name in ("b_query", "b_key", "b_value", "b_out")},
        "heads": 2,
    }
    masked = {**document, "mask": (rng.random((5, 5)) < 0.6).astype(int).tolist()}
    for row in masked["mask"]:  # every row sees some keys and misses some, whichever way it is read
        row[0], row[1] = 1, 0
    return document, write(tmp_path, "p.json", json.dumps(document)), masked, write(tmp_path, "m.json",
                                                                                     json.dumps(masked))


MISTAKE_NAMES = {
    "transposed_weighted_sum": "weighted values summed over the query axis",
    "softmax_over_queries": "softmax over the wrong axis",
    "no_scaling": "scores not scaled",
    "sqrt_d_model": "scaled by √d_model instead of √head_dim",
    "scaled_twice": "scaled twice",
    "scores_transposed": "Q and K swapped",
    "mask_inverted": "mask inverted",
    "causal_not_asked": "causal mask applied",
    "weights_not_transposed": "weights used as (out, in) without transposing",
    "heads_interleaved": "heads split with the wrong reshape",
    "no_output_projection": "output projection left out",
    "drop_b_query": "b_query left out",
    "drop_b_value": "b_value left out",
    "drop_b_out": "b_out left out",
}


@pytest.mark.parametrize("bug", MISTAKE_NAMES)
def test_check_names_each_common_mistake(problem_file, tmp_path, bug):
    document, path, masked, masked_path = problem_file
    source, source_path = (masked, masked_path) if bug == "mask_inverted" else (document, path)
    theirs = write(tmp_path, "theirs.json", json.dumps({"output": naive(source, bug).tolist()}))
    result = run("check", source_path, "--expected", theirs, "--format", "json")
    assert result.exit_code == 1, result.output
    verdict = json.loads(result.stdout)
    assert verdict["agree"] is False and verdict["wrong_cells"] > 0
    assert verdict["mistakes"][0]["name"] == MISTAKE_NAMES[bug], verdict["mistakes"]
    words = run("check", source_path, "--expected", theirs)
    assert words.exit_code == 1
    assert f"Likely mistake: {MISTAKE_NAMES[bug]}: " in words.stdout and "  Fix: " in words.stdout


def test_check_passes_a_right_answer_and_a_near_miss(problem_file, tmp_path):
    document, path, masked, masked_path = problem_file
    right = naive(document)
    for name, numbers in (("exact.json", right), ("near.json", right + 5e-7)):
        result = run("check", path, "-e", write(tmp_path, name, json.dumps(numbers.tolist())))
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("✓ output agrees with attncli: largest difference")
    off = run("check", path, "-e", write(tmp_path, "off.json", json.dumps((right + 1e-3).tolist())), "-f", "json")
    verdict = json.loads(off.stdout)
    assert off.exit_code == 1 and verdict["mistakes"] == [] and verdict["max_error"] == pytest.approx(1e-3)


def test_check_other_steps_and_formats(tmp_path):
    trace = attention(problem_from_document(CLASSIC))
    weights = trace.steps["softmax"].array
    np.save(tmp_path / "w.npy", weights)
    assert run("check", SAMPLES / "classic.json", "-e", tmp_path / "w.npy", "-s", "softmax").exit_code == 0
    csv = write(tmp_path, "w.csv", "\n".join(",".join(repr(float(v)) for v in row) for row in weights.T))
    result = run("check", SAMPLES / "classic.json", "-e", csv, "-s", "softmax", "-f", "json")
    verdict = json.loads(result.stdout)
    worst = np.unravel_index(np.argmax(np.abs(weights.T - weights)), weights.shape)
    assert result.exit_code == 1 and verdict["worst"]["index"] == [int(i) for i in worst]
    assert verdict["max_error"] == np.abs(weights.T - weights).max()
    # attncli's own JSON output checks against itself, masked logits (null) included
    own = run("compute", SAMPLES / "multihead_causal.json", "-f", "json")
    saved = write(tmp_path, "own.json", own.stdout)
    assert run("check", SAMPLES / "multihead_causal.json", "-e", saved, "-s", "logits").exit_code == 0


def test_check_bad_input_exits_2(tmp_path):
    wrong_shape = write(tmp_path, "shape.json", "[[1, 2], [3, 4]]")
    assert_one_line_error(run("check", SAMPLES / "classic.json", "-e", wrong_shape),
                          f"{wrong_shape}: has shape 2×2 but output is 3×3")
    no_key = write(tmp_path, "key.json", '{"softmax": [[1]]}')
    assert_one_line_error(run("check", SAMPLES / "classic.json", "-e", no_key, "-s", "output"),
                          f"{no_key}: holds no key 'output' (its keys: 'softmax')")
    # without --step, a dump of one step is that step's numbers
    assert_one_line_error(run("check", SAMPLES / "classic.json", "-e", no_key),
                          f"{no_key}: has shape 1×1 but softmax is 3×3")
    assert_one_line_error(run("check", SAMPLES / "classic.json", "-e", tmp_path / "none.json"),
                          f"{tmp_path / 'none.json'}: no such file")
    assert_one_line_error(run("check", SAMPLES / "classic.json", "-e", wrong_shape, "-s", "logits"),
                          f"{SAMPLES / 'classic.json'}: step 'logits': this problem has no such step; "
                          "the steps are q, k, v, scores, softmax, averaged, output")


# --- heatmaps and pictures -------------------------------------------------------------------------

def grid_lines(document, width, colour):
    trace = attention(problem_from_document(document))
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=width,
                      color_system="truecolor" if colour else None)
    print_heatmaps(trace, console=console)
    return buffer.getvalue().splitlines()


def test_heatmap_has_one_cell_per_weight_and_axis_labels():
    document = random_document(seq_len=30, d_model=4, seed=5)
    lines = grid_lines(document, 200, colour=False)
    assert lines[0] == "softmax   30×30"
    assert lines[1].strip() == "keys →   (rows: queries)"
    assert lines[2].split() == ["0", "10", "20"]
    rows = lines[3:33]
    assert [row.split(" ", 1)[0].strip() or row.split()[0] for row in rows][:3] == ["0", "1", "2"]
    assert all(len(row) == 3 + 30 for row in rows)
    assert lines[-1].startswith("shades: ")
    weights = attention(problem_from_document(document)).steps["softmax"].array
    for column in range(30):
        expected = " " if weights[0, column] == 0 else " ░▒▓█"[min(int(weights[0, column] * 5), 4)]
        assert rows[0][3 + column] == expected


def test_heatmap_stays_readable_at_200_and_pools_to_a_narrow_terminal():
    document = random_document(seq_len=200, d_model=4, seed=6)
    wide = grid_lines(document, 220, colour=True)
    assert len(wide) == 1 + 2 + 200 + 1 and "\x1b[" in "".join(wide)
    narrow = grid_lines(document, 80, colour=False)
    assert narrow[0] == "softmax   200×200   (each cell: the largest of 2–3 keys)"
    assert max(len(line) for line in narrow) <= 80


def test_pictures_hold_what_was_shown(tmp_path):
    result = run("demo", "--export-svg", tmp_path / "demo.svg", "--export-html", tmp_path / "demo.html")
    assert result.exit_code == 0
    svg = (tmp_path / "demo.svg").read_text()
    ElementTree.fromstring(svg)  # well-formed
    text = svg.replace("&#160;", " ")
    assert "1.9366" in text and "6.6831" in text and "Beware" in text
    html = (tmp_path / "demo.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html>") and "1.9366" in html
    compute = run("compute", SAMPLES / "classic.json", "-s", "softmax", "--export-svg", tmp_path / "softmax.svg")
    assert compute.exit_code == 0 and "0.4683" in (tmp_path / "softmax.svg").read_text()


def test_no_color_means_no_escape_codes(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.delenv("NO_COLOR")
    coloured = run("compute", SAMPLES / "classic.json", "-s", "softmax")
    assert "\x1b[" in coloured.stdout
    plain = run("compute", SAMPLES / "classic.json", "-s", "softmax", "--no-color")
    assert "\x1b[" not in plain.stdout.replace("\x1b[1m", "").replace("\x1b[0m", "").replace("\x1b[2m", "")
    assert "0.4683" in plain.stdout
