"""demo FILE: the narrated walk through a user's own problem, its numbers checked against the trace."""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest
from conftest import DATA, ROOT, SAMPLES
from test_cli import assert_one_line_error, run, write

from attncli.app import load
from attncli.explain import all_axes
from attncli.generate import random_document
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.request import Given
from attncli.shapes import shape_flow
from attncli.sizes import sizes_of
from attncli.view import PipeAwareConsole, format_number, print_demo
from attncli.walkthrough import walk

PROBLEMS = [path for path in sorted(SAMPLES.iterdir())
            if path.name not in ("classic_mistake.json", "llama_hidden.json")]  # an output and a hidden state
GOLDEN = {case["name"]: case["document"] for case in json.loads((DATA / "modern_golden.json").read_text())["cases"]}


def walked(document):
    """The walk's sections as --format json gives them, with the problem and its trace."""
    result = run("demo", "-", "--format", "json", stdin=json.dumps(document))
    assert result.exit_code == 0, result.output
    problem = problem_from_document(document)
    return json.loads(result.stdout)["sections"], problem, attention(problem)


def notes(sections, variant):
    return [note for section in sections for note in section["notes"] if note["variant"] == variant]


def section_of(sections, step):
    return next(section for section in sections if step in section["steps"])


@pytest.mark.parametrize("path", PROBLEMS, ids=lambda path: path.name)
def test_demo_walks_through_every_sample_step_by_step(path):
    result = run("demo", path)
    assert result.exit_code == 0, result.output
    problem = load(Given(str(path))).problem
    trace = attention(problem)
    rows = [row for row in shape_flow(sizes_of(problem)) if row.step in trace.steps]
    headings = ["1. Inputs"] + [f"{number}. {row.step}" for number, row in enumerate(rows, start=2)]
    lines = result.stdout.splitlines()
    assert [line for line in lines if line in headings] == headings
    for row in rows:  # each step's formula and how, from the stages, with its real shape
        assert f"{row.formula}   ({', '.join(map(str, row.shape))})" in result.stdout
    for value in trace.steps["softmax"].array.ravel():
        assert format_number(value, 4) in result.stdout


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_every_modern_golden_problem_is_walked_with_the_traces_numbers(name):
    sections, problem, trace = walked(GOLDEN[name])
    for section in sections[1:]:
        (step,) = section["steps"]
        expected = trace.steps[step].array
        values = np.array(section["steps"][step]["values"], dtype=float)  # null (−∞, NaN) as NaN
        np.testing.assert_array_equal(values, np.where(np.isfinite(expected), expected, np.nan))
        assert section["explanation"] and section["formula"].startswith(trace.steps[step].formula)
    table = run("demo", "-", stdin=json.dumps(GOLDEN[name]))
    assert table.exit_code == 0 and "Traceback" not in table.stderr
    for section in sections:
        for note in section["notes"]:
            assert note["text"] in " ".join(table.stdout.split())


def test_the_rope_angle_is_the_position_times_the_first_frequency():
    sections, problem, trace = walked(GOLDEN["rope_positions_explicit"])
    query, key = notes(sections, "rope")
    assert query["query"] == 1 and query["position"] == 5 == problem.query_positions[1]
    assert query["angle"] == pytest.approx(5 * problem.rope.inv_freq[0])
    first, second = query["dims"]
    assert (first, second) == (0, problem.rope.rotary_dim // 2)  # neox: halves
    assert query["before"] == pytest.approx(all_axes(trace, "q")[0, 0, 1, [first, second]].tolist())
    assert query["after"] == pytest.approx(all_axes(trace, "q_rotated")[0, 0, 1, [first, second]].tolist())
    assert "turns by 5 × inv_freq[0] = 5 × 1.0000 = 5.0000 rad (286.5°)" in query["text"]
    assert key["key"] == 1 and key["angle"] == pytest.approx(5 * problem.rope.inv_freq[0])
    gptj = notes(walked(GOLDEN["rope_gptj_partial"])[0], "rope")[0]
    assert gptj["dims"] == [0, 1] and "dims 4 to 5 are not turned" in gptj["text"]


def test_each_query_head_names_its_key_value_head():
    sections, problem, _ = walked(GOLDEN["gqa_unbatched_causal_out"])
    (grouping,) = notes(sections, "kv_heads")
    assert grouping["kv_head_of_head"] == [0, 0, 1, 1, 2, 2]
    assert grouping["text"] == ("6 query heads share 3 key/value heads (2 each): query heads 0–1 use key/value head "
                                "0; query heads 2–3 use key/value head 1; query heads 4–5 use key/value head 2")
    assert grouping in section_of(sections, "scores")["notes"]


def test_the_mask_grid_shows_causal_window_and_padding_each_by_its_own_mark():
    document = random_document(seq_len=5, d_model=4, batch=2, causal=True, seed=4)
    document |= {"window": 2, "padding": [[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]}
    sections, _, _ = walked(document)
    grid = section_of(sections, "logits")["grid"]
    assert [table["title"] for table in grid["tables"]] == ["batch 0", "batch 1"]
    assert grid["tables"][0]["rows"] == ["●cccc", "●●ccc", "w●●cc", "ww●●c", "www●●"]
    assert grid["tables"][1]["rows"] == ["pcccc", "p●ccc", "p●●cc", "pw●●c", "pww●●"]
    assert {entry["mark"]: entry["cells"] for entry in grid["legend"]} == {"●": 16, "p": 5, "c": 20, "w": 9}
    out = run("demo", "-", stdin=json.dumps(document)).stdout
    assert "        4 p w w ● ●" in out.splitlines()
    assert "p a padded key: 5 cells" in out and "c a key after the query (causal): 20 cells" in out
    assert "w outside the window of 2: the query at position p sees keys at p−1 to p: 9 cells" in out


def test_a_mask_array_and_minus_infinity_in_the_bias_have_their_own_marks():
    grid = section_of(walked(GOLDEN["masked_rows_nan"])[0], "logits")["grid"]
    assert grid["tables"][1]["rows"] == ["●mm", "mmm", "●●●"]
    grid = section_of(walked(GOLDEN["bias_4d_neg_inf"])[0], "biased")["grid"]
    assert [entry["mark"] for entry in grid["legend"]] == ["●", "b"]


def test_the_soft_cap_shows_the_largest_logits_before_and_after():
    sections, problem, trace = walked(GOLDEN["gemma2_softcap_window_gqa"])
    capped = notes(sections, "softcap")
    before = all_axes(trace, "logits")  # masked by the capped step: the largest a query may see
    visible = before[np.isfinite(all_axes(trace, "capped"))]
    assert [note["before"] for note in capped] == pytest.approx(sorted(visible)[::-1][:3])
    for note in capped:
        assert note["after"] == pytest.approx(2.0 * math.tanh(note["before"] / 2.0))
        assert note["after"] == all_axes(trace, "capped")[note["batch"], note["head"], note["query"], note["key"]]
    assert capped[0]["text"].startswith("the largest logits come closer to the cap 2: ")


def test_the_sinks_share_of_each_row_is_one_minus_its_sum():
    sections, problem, trace = walked(GOLDEN["sinks_batched_causal"])
    shares = notes(sections, "sinks")
    weights = all_axes(trace, "softmax")[0]
    for note in shares:
        if "query" in note:
            assert note["sink_share"] == pytest.approx(1 - weights[0, note["query"]].sum())
        elif "head" in note:
            assert note["least"] == pytest.approx(1 - weights[note["head"]].sum(axis=-1).max())
            assert note["most"] == pytest.approx(1 - weights[note["head"]].sum(axis=-1).min())
    row = weights[0, 0].sum()
    assert f"query 0 (head 0, batch 0): weights sum to {row:.4f}; {1 - row:.4f} went to the sink" in shares[0]["text"]


def test_qk_norm_alibi_bias_and_scale_each_get_a_line_with_a_real_number():
    sections, problem, trace = walked(GOLDEN["qk_norm_head_unbatched_eps"])
    query = notes(sections, "qk_norm")[0]
    row = all_axes(trace, "q")[0, 0, 1]
    assert query["mean_square"] == pytest.approx(np.mean(row**2))
    assert query["factor"] == pytest.approx(1 / math.sqrt(query["mean_square"] + 0.01))
    (alibi,) = notes(walked(GOLDEN["alibi_positions"])[0], "alibi")
    assert (alibi["distance"], alibi["term"]) == (9, pytest.approx(-alibi["slope"] * 9))
    sections, problem, _ = walked(GOLDEN["bias_3d"])
    (bias,) = notes(sections, "bias")
    finite = problem.bias[np.isfinite(problem.bias)]
    assert abs(bias["value"]) == pytest.approx(np.abs(finite).max())
    (scale,) = notes(sections, "scale")
    assert scale["logit"] == pytest.approx(scale["score"] * scale["scale"])


def test_a_model_layer_is_walked_too():
    result = run("demo", ROOT / "tests" / "data" / "models" / "llama", "--layer", "1", "--x",
                 SAMPLES / "llama_hidden.json")
    assert result.exit_code == 0, result.output
    assert "5. q_rotated" in result.stdout and "query heads 0–1 use key/value head 0" in result.stdout


def test_a_large_problem_elides_as_compute_does_and_says_what():
    document = random_document(seq_len=30, d_model=8, heads=2, batch=10, causal=True, seed=1)
    out = run("demo", "-", stdin=json.dumps(document)).stdout
    assert "middle elided: --full shows every value, --format json gives them all" in out
    assert "… 12 more softmax tables (batch × heads) not shown" in out
    assert out.count("mask   30×30") == 1 and "more mask grids" not in out  # the causal mask: one grid for all
    # --full shows every value (one batch item: every table of ten takes long to render)
    one_item = random_document(seq_len=30, d_model=8, heads=2, causal=True, seed=1)
    full = run("demo", "-", "--full", stdin=json.dumps(one_item)).stdout
    assert "elided" not in full and "more softmax tables" not in full


def test_a_narrow_terminal_cuts_no_number():
    problem = problem_from_document(json.loads((SAMPLES / "multihead_causal.json").read_text()))
    trace = attention(problem)
    buffer = io.StringIO()
    print_demo(walk(problem, trace), "", 4, PipeAwareConsole(file=buffer, force_terminal=True, color_system=None,
                                                            width=40), trace)
    out = buffer.getvalue()
    # compute's rule: too wide a table keeps its first and last columns around "…", whole, and says so
    assert "middle elided" in out and not re.search(r"\d…|…\d|\.…", out)
    for value in trace.steps["softmax"].array[..., 0].ravel():
        assert format_number(value, 4) in out
    # the explanations, formulas and notes wrap at the width (table titles and compute's notes under tables do not)
    words = [line for line in out.splitlines() if line[:1] not in "┏┃┡│└" and "   " not in line
             and not line.startswith(("middle elided", "· a masked key"))]
    assert max(len(line) for line in words) <= 40


def test_the_classic_example_takes_no_problem_options(tmp_path):
    assert_one_line_error(run("demo", "--causal"), "Invalid value for --causal: applies to a problem of your own: "
                          "give its FILE (the classic example is fixed) (see 'attncli demo --help')")
    missing = tmp_path / "missing.json"
    result = run("demo", missing)
    assert result.exit_code == 2 and result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    bad = write(tmp_path, "bad.json", '{"x": [[1, 2]]}')
    result = run("demo", bad)
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {bad}: ") and result.stderr.count("\n") == 1
