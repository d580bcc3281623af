"""The view (attncli/view/): how numbers are written, one query's arithmetic as lines of text, tables that
fit a terminal, titles that survive Rich markup."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import DATA
from rich.console import Console

from attncli.explain import explain_query
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.view import print_trace
from attncli.view.numbers import explanation_sections, format_number


@pytest.mark.parametrize(
    ("value", "precision", "integers", "shown"),
    [
        (1.93662106, 4, False, "1.9366"),
        (6.033664854558337e-06, 4, False, "6.034e-06"),  # 0.0000 would hide a nonzero weight
        (0.06337893833303762, 0, False, "0"),  # coarse precision asked for: no scientific notation
        (0.00004, 4, False, "4.000e-05"),
        (0.00005, 4, False, "0.0001"),
        (0.0, 4, False, "0.0000"),
        (-2.5e9, 2, False, "-2.5e+09"),
        (16.0, 4, True, "16"),
        (-np.inf, 4, False, "−∞"),
        (-np.inf, 4, True, "−∞"),
        (-3.0, 4, True, "-3"),
        (-4e-05, 4, False, "-4.000e-05"),
        (0.004, 2, False, "4.0e-03"),  # hidden at 2 decimals: one fewer digit in scientific notation
        (0.005, 2, False, "0.01"),
        (0.001, 1, False, "0.0"),  # a precision under 2 never turns scientific for small values
        (999999999.0, 2, False, "999999999.00"),
        (1e9, 4, False, "1.000e+09"),
        (1e9, 0, False, "1.0e+09"),
        (-1e12, 3, False, "-1.00e+12"),
    ],
)
def test_format_number(value, precision, integers, shown):
    assert format_number(value, precision, integers) == shown


def terminal_output(document, width, **kwargs):
    trace = attention(problem_from_document(document))
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None, width=width)
    print_trace(trace, trace.select(kwargs.pop("steps", None)), 4, console=console, **kwargs)
    return buffer.getvalue()


def test_tables_in_a_narrow_terminal_drop_middle_columns_to_fit():
    rng = np.random.default_rng(8)
    document = {"x": rng.normal(size=(12, 3)).tolist(), **{
        name: rng.normal(size=(3, 3)).tolist() for name in ("w_query", "w_key", "w_value")}}
    out = terminal_output(document, 60, steps=["softmax"])
    table_lines = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert max(len(line) for line in table_lines) <= 60
    header = next(line for line in table_lines if line.startswith("┃"))
    cells = [cell.strip() for cell in header.split("┃")[2:-1]]
    assert "…" in cells and cells[0] == "0" and cells[-1] == "11"
    assert "middle elided" in out
    wide = terminal_output(document, 200, steps=["softmax"])
    assert "…" not in wide


def test_a_formula_in_brackets_is_not_eaten_as_markup():
    document = {"x": [[1.0, 2.0]], "w_query": [[1.0, 0.0], [0.0, 1.0]], "w_key": [[1.0, 0.0], [0.0, 1.0]],
                "w_value": [[1.0, 0.0], [0.0, 1.0]], "heads": 2, "w_out": [[1.0], [1.0]]}
    out = terminal_output(document, 100, steps=["concat"])
    assert out.splitlines()[0] == "concat = [softmax·V for each head]   1×2"


def test_many_tables_of_one_step_are_cut_unless_full():
    rng = np.random.default_rng(9)
    document = {"x": rng.normal(size=(3, 2, 4)).tolist(), "heads": 4, **{
        name: rng.normal(size=(4, 4)).tolist() for name in ("w_query", "w_key", "w_value")}}
    out = terminal_output(document, 120, steps=["softmax"])
    titles = [line for line in out.splitlines() if line.startswith("softmax")]
    assert len(titles) == 8 and titles[-1].endswith("(batch 1, head 3)")
    assert "… 4 more softmax tables (batch × heads) not shown: --full shows them" in out
    full = terminal_output(document, 120, steps=["softmax"], full=True)
    assert len([line for line in full.splitlines() if line.startswith("softmax")]) == 12


def sections_of(document, query, precision=4):
    problem = problem_from_document(document)
    return [(section.heading, section.lines)
            for section in explanation_sections(explain_query(problem, attention(problem), query), precision)]


def test_explanation_sections_of_a_small_problem():
    document = {"x": [[1.0], [2.0]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[3.0]], "scale": 0.5,
                "mask": [[1, 0], [1, 1]]}
    assert sections_of(document, 1, precision=2) == [
        ("Query 1: its query vector and the key vectors", ("q[1] = [2]", "k[0] = [1]", "k[1] = [2]")),
        ("Scores: the dot product of the query with each key", ("q[1]·k[0] = 2×1 = 2", "q[1]·k[1] = 2×2 = 4")),
        ("Scale and mask", ("scale = the given scale = 0.50", "logit[0] = 2 × 0.50 = 1", "logit[1] = 4 × 0.50 = 2")),
        ("Softmax over the keys", ("subtract the largest logit, 2, so no exponential overflows",
                                   "e^(1 - 2) = 0.37", "e^(2 - 2) = 1", "sum = 0.37 + 1 = 1.37",
                                   "weight[0] = 0.37 / 1.37 = 0.27", "weight[1] = 1 / 1.37 = 0.73")),
        ("Output: the weighted sum of the value rows", ("out[1] = 0.27×[3] + 0.73×[6]", "       = [5.19]")),
    ]


def test_an_explanation_of_a_query_that_sees_no_key_stops_at_the_softmax():
    document = {"x": [[1.0], [2.0]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[3.0]],
                "mask": [[1, 0], [0, 0]]}
    sections = sections_of(document, 1)
    assert sections[-2] == ("Scale and mask", ("no scaling", "masked keys (−∞, weight 0): 0, 1",
                                               "logit[0] = −∞ (masked)", "logit[1] = −∞ (masked)"))
    assert sections[-1] == ("Softmax", ("every key is masked: every weight is 0 and this output row is 0",))


@pytest.mark.parametrize("width", [80, 120])
def test_full_in_a_terminal_shows_every_value_however_wide(width):
    rng = np.random.default_rng(2)
    document = {"x": rng.normal(size=(30, 20)).tolist(), **{
        name: (0.2 * rng.normal(size=(20, 20))).tolist() for name in ("w_query", "w_key", "w_value")}}
    trace = attention(problem_from_document(document))
    out = terminal_output(document, width, steps=["softmax"], full=True)
    rows = {line.split("│")[1].strip(): line.split("│")[2:-1] for line in out.splitlines() if line.startswith("│")}
    weights = trace.steps["softmax"].array
    for row in range(30):
        assert [cell.strip() for cell in rows[str(row)]] == [format_number(value, 4) for value in weights[row]]
    assert "…" not in out


# --- the attention variants of issue 11 in the tables ----------------------------------------------

GOLDEN = {case["name"]: case["document"]
          for case in json.loads((DATA / "modern_golden.json").read_text())["cases"]}


def titles(out):
    return [line for line in out.splitlines() if line[:1] not in "┏┃┡│└" and "   " in line]


def test_key_and_value_heads_of_grouped_query_attention_are_labelled_kv_heads():
    shown = titles(terminal_output(GOLDEN["qwen3_gqa_rope_qknorm"], 80))  # one table a line
    assert "K = x·W_K   5×4   (kv head 1)" in shown and "V = x·W_V   5×4   (kv head 0)" in shown
    assert "Q = x·W_Q   5×4   (head 3)" in shown and "scores = Q·Kᵀ   5×5   (head 3)" in shown
    assert not any("(head 2)" in title for title in shown if title.startswith(("K =", "V =", "k_")))
    # as many key/value heads as heads: they are the heads
    ungrouped = titles(terminal_output(GOLDEN["rope_neox_unbatched"], 80))
    assert "K = x·W_K   5×4   (head 1)" in ungrouped and not any("kv head" in title for title in ungrouped)


def test_a_step_whose_formula_does_not_name_it_is_titled_with_its_name():
    shown = titles(terminal_output(GOLDEN["qwen3_gqa_rope_qknorm"], 80))
    assert "q_normed: Q = RMSNorm(Q) over each head   5×4   (head 0)" in shown
    assert "k_normed: K = RMSNorm(K) over each head   5×4   (kv head 1)" in shown
    assert "q_rotated: Q = RoPE(Q, query positions) (halves, neox)   5×4   (head 2)" in shown
    assert "k_rotated: K = RoPE(K, key positions) (halves, neox)   5×4   (kv head 0)" in shown
    assert "Q = x·W_Q   5×4   (head 0)" in shown  # q, k, v, scores… are named by their formula


@pytest.mark.parametrize(("name", "step", "formula"), [
    ("gemma2_softcap_window_gqa", "capped", "capped = 2·tanh(logits / 2), masked → −∞"),
    ("softcap_then_bias", "biased", "biased = capped + bias, masked → −∞"),
    ("bias_2d_neg_inf", "biased", "biased = logits + bias, masked → −∞"),
    ("bloom_alibi_causal_padding", "biased", "biased = logits + ALiBi, masked → −∞"),
])
def test_capped_and_biased_steps_show_their_masked_cells_as_minus_infinity(name, step, formula):
    problem = problem_from_document(GOLDEN[name])
    trace = attention(problem)
    out = terminal_output(GOLDEN[name], 100, steps=[step])  # one table a line
    assert out.splitlines()[0].startswith(f"{formula}   ")
    masked = trace.masked(trace.steps[step])
    assert masked is not None and masked.any()
    tables = out.split(formula)[1:]
    first = next(iter(np.ndindex(masked.shape[:-2])))
    rows = [line.split("│")[2:-1] for line in tables[0].splitlines() if line.startswith("│")]
    for (query, key), hidden in np.ndenumerate(masked[first]):
        cell = rows[query][key].strip()
        assert (cell == "−∞") == hidden, (query, key, cell)


def nan_row_document(**changes):
    """Two queries; the second sees no key and masked_rows is "nan"."""
    return {"x": [[1.0], [2.0]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[3.0]],
            "mask": [[1, 1], [0, 0]], "masked_rows": "nan", **changes}


def test_a_nan_row_shows_nan_and_says_why():
    out = terminal_output(nan_row_document(), 80, steps=["softmax", "output"])
    softmax = out[:out.index("output")]
    assert [cells for cells in (line.split("│")[2:-1] for line in softmax.splitlines() if line.startswith("│"))] == [
        [" 0.2689 ", " 0.7311 "], ["    nan ", "    nan "]]
    assert 'nan: a query that sees no key (masked_rows "nan"): its weights are NaN' in out.splitlines()
    # its only masked cells are the NaN row's: no line about masked keys shown as ·
    assert "· a masked key" not in out
    output_rows = [line.split("│")[2].strip() for line in out[out.index("output"):].splitlines()
                   if line.startswith("│")]
    assert output_rows == ["5.1932", "nan"]


def test_rows_that_a_sink_leaves_short_of_1_are_said_with_their_sums():
    document = GOLDEN["sinks_unbatched"]
    sums = attention(problem_from_document(document)).steps["softmax"].array.sum(axis=-1)
    out = terminal_output(document, 200, steps=["softmax"])
    assert (f"rows sum to less than 1 (the sink takes the rest): {format_number(sums.min(), 4)} to "
            f"{format_number(sums.max(), 4)}") in out.splitlines()
    assert "rows sum to less than 1" not in terminal_output(GOLDEN["gqa_batched"], 200, steps=["softmax"])
