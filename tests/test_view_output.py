"""What every command prints, piped: the layout of the views' lines (see also test_view.py)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import DATA, SAMPLES
from test_cli import run, write

from attncli.demo import CLASSIC_DOCUMENT, walkthrough
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.shapes import shape_flow
from attncli.sizes import Sizes
from attncli.view import PipeAwareConsole, print_demo, print_shapes, print_trace
from attncli.view.numbers import format_number

CLASSIC = SAMPLES / "classic.json"
CAUSAL = SAMPLES / "multihead_causal.json"


def stdout_of(*args):
    result = run(*args)
    assert result.exit_code in (0, 1), result.output
    return result.stdout


@pytest.mark.parametrize("args", [
    ("demo",),
    ("shapes", "--batch", "2", "--seq-len", "10", "--d-model", "512", "--heads", "8"),
    ("shapes", CAUSAL),
    ("compute", CAUSAL),
    ("compute", CLASSIC),
    ("compute", CAUSAL, "--view", "heatmap"),
    ("explain", CLASSIC, "--query", "1"),
    ("explain", CAUSAL, "--query", "2"),
])
def test_no_line_of_piped_output_ends_in_spaces(args):
    out = stdout_of(*args)
    assert out and [line for line in out.splitlines() if line != line.rstrip()] == []


@pytest.mark.parametrize("right", [True, False])
def test_no_line_of_a_verdict_ends_in_spaces(tmp_path, right):
    numbers = json.loads(stdout_of("compute", CLASSIC, "-s", "output", "-f", "json"))["output"]
    if not right:
        numbers[0][0] += 1.0
    out = stdout_of("check", CLASSIC, "-e", write(tmp_path, "out.json", json.dumps(numbers)))
    assert out and [line for line in out.splitlines() if line != line.rstrip()] == []


def cells_of(out, row):
    out = out[out.index("softmax = "):] if "softmax = " in out else out
    line = next(line for line in out.splitlines() if line.startswith("│") and line.split("│")[1].strip() == row)
    return [cell.strip() for cell in line.split("│")[2:-1]]


@pytest.mark.parametrize("steps", [("-s", "softmax"), ("-s", "logits", "-s", "softmax"), ()])
def test_a_masked_weight_is_not_shown_as_a_zero(steps):
    out = stdout_of("compute", CAUSAL, *steps)
    assert cells_of(out, "0 We")[-4:] == ["1.0000", "·", "·", "·"]  # the sample's query 0, "We"
    assert "0.0000" not in out[out.index("softmax = "):out.index("· a masked")]
    assert "· a masked key (its logit is −∞): weight 0" in out


def test_a_masked_logit_is_minus_infinity_with_a_minus_sign():
    out = stdout_of("compute", CAUSAL, "-s", "logits")
    assert cells_of(out, "0 We")[1:] == ["−∞", "−∞", "−∞"] and "-∞" not in out


def test_a_masked_array_in_tables_and_heatmap(tmp_path):
    document = {"x": [[1.0], [2.0]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[3.0]], "mask": [[1, 0], [1, 1]]}
    path = write(tmp_path, "m.json", json.dumps(document))
    assert cells_of(stdout_of("compute", path, "-s", "softmax"), "0") == ["1.0000", "·"]
    grid = stdout_of("compute", path, "--view", "heatmap").splitlines()
    assert "0 █·" in grid and "· a masked key (its logit is −∞): weight 0" in grid


def test_the_no_colour_heatmap_tells_masked_from_small_weights():
    grid = stdout_of("compute", CAUSAL, "--view", "heatmap").splitlines()
    assert grid[3:7] == ["0 We  █···", "1 saw ▒▒··", "2 a    ▒░·", "3 cat ░░░"]  # the sample's tokens by its rows


def terminal(width, render):
    buffer = io.StringIO()
    render(PipeAwareConsole(file=buffer, force_terminal=True, color_system=None, width=width))
    return buffer.getvalue()


def demo_at(width):
    problem = problem_from_document(CLASSIC_DOCUMENT)
    sections, warning = walkthrough(problem, attention(problem))
    return terminal(width, lambda console: print_demo(sections, warning, 4, console)), attention(problem)


@pytest.mark.parametrize("width", [40, 80])
def test_the_demo_in_a_narrow_terminal_cuts_no_number(width):
    out, trace = demo_at(width)
    assert "…" not in out
    for value in trace.steps["softmax"].array.ravel():
        assert format_number(value, 4) in out
    words = [line for line in out.splitlines() if line[:1] not in "┏┃┡│└"]
    assert max(len(line) for line in words) <= width
    assert max(len(line) for line in out.splitlines()) <= width


def test_the_shapes_table_in_a_narrow_terminal_wraps_its_columns():
    rows = shape_flow(Sizes(seq_len=10, d_model=512, heads=8, batch=2, d_out=512))
    out = terminal(40, lambda console: print_shapes(rows, console))
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 40
    steps = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert [step for step in steps if step] == [row.step for row in rows]
    assert "Q = x·W_Q" in out and "formula" in out


def trace_at(width, path=CAUSAL):
    trace = attention(problem_from_document(json.loads(path.read_text())))
    return terminal(width, lambda console: print_trace(trace, trace.select(None), 4, console=console)), trace


@pytest.mark.parametrize("width", [80, 120])
def test_small_per_head_tables_sit_side_by_side(width):
    out, trace = trace_at(width)
    lines = out.splitlines()
    assert "Q = x·W_Q + b_Q   4×2   (head 0)    Q = x·W_Q + b_Q   4×2   (head 1)" in lines
    assert max(len(line) for line in lines) <= width
    assert len(lines) < 110 if width == 80 else len(lines) < 80
    for step in trace.steps.values():  # every value is still shown
        for value in step.array[np.isfinite(step.array) & (np.abs(step.array) > 1e-3)]:
            assert format_number(value, 4) in out


# --- the attention variants of issue 11, piped ---------------------------------------------------

GOLDEN = {case["name"]: case["document"]
          for case in json.loads((DATA / "modern_golden.json").read_text())["cases"]}
EVERY_VARIANT = ["qwen3_gqa_rope_qknorm", "rope_gptj_partial", "gemma2_softcap_window_gqa", "softcap_then_bias",
                 "bloom_alibi_causal_padding", "bias_4d_neg_inf", "gptoss_sinks_window_gqa_biases",
                 "masked_rows_nan", "mistral_decode_step", "qk_norm_all"]


@pytest.mark.parametrize("name", EVERY_VARIANT)
def test_no_line_of_a_variants_piped_output_ends_in_spaces(tmp_path, name):
    path = write(tmp_path, f"{name}.json", json.dumps(GOLDEN[name]))
    for args in (("compute", path), ("compute", path, "--view", "heatmap"),
                 ("explain", path, "--query", "0", "--key", "0", "--head", "1")):
        out = stdout_of(*args)
        assert out and [line for line in out.splitlines() if line != line.rstrip()] == [], args


@pytest.fixture
def nan_rows(tmp_path):
    """masked_rows "nan": query 1 of batch item 1 sees no key (the golden problem)."""
    return write(tmp_path, "nan.json", json.dumps(GOLDEN["masked_rows_nan"]))


def test_json_writes_a_nan_row_as_nulls_and_stays_strict(nan_rows):
    out = stdout_of("compute", nan_rows, "-f", "json")
    document = json.loads(out, parse_constant=lambda word: pytest.fail(f"not strict JSON: {word}"))
    assert document["softmax"][1][0][1] == [None, None, None]
    assert document["output"][1][1] == [None] * 6
    assert None not in document["output"][1][0] and None not in document["output"][0][1]


def test_csv_and_npz_keep_a_nan_row(nan_rows, tmp_path):
    lines = stdout_of("compute", nan_rows, "-f", "csv", "-s", "softmax").splitlines()
    assert lines[0] == "batch,heads,row,0,1,2" and "1,0,1,nan,nan,nan" in lines and "1,1,1,nan,nan,nan" in lines
    archive = tmp_path / "out.npz"
    assert run("compute", nan_rows, "-f", "npz", "-o", archive).exit_code == 0
    with np.load(archive, allow_pickle=False) as steps:
        assert np.isnan(steps["softmax"][1, :, 1]).all() and not np.isnan(steps["softmax"][0]).any()
        assert np.isnan(steps["output"][1, 1]).all()
