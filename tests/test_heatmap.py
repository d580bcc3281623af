"""The heatmap view (issue 10, item 5): as wide as the terminal allows, two queries per line in colour,
a perceptually uniform palette; the shade characters without colour."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from rich.color import Color
from rich.console import Console
from test_learn import random_document

from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.view import print_heatmaps
from attncli.view.heatmap import HeatGrid, pool_columns
from attncli.view.tables import HEAT_MASKED, HEAT_NAN, VIRIDIS, heat_colour, heat_style

ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def rendered(renderable_or_trace, width, colour):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=width, no_color=not colour,
                      color_system="truecolor" if colour else None)
    if isinstance(renderable_or_trace, HeatGrid):
        console.print(renderable_or_trace)
    else:
        print_heatmaps(renderable_or_trace, console=console)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def causal_100():
    document = random_document(seq_len=100, d_model=16, seed=1)
    document["mask"] = "causal"
    return attention(problem_from_document(document))


@pytest.mark.parametrize(("width", "cells", "pooled"), [(40, 37, "2–3"), (80, 77, "1–2"), (120, 100, None)])
@pytest.mark.parametrize("colour", [True, False])
def test_the_grid_is_as_wide_as_the_terminal_allows(causal_100, width, cells, pooled, colour):
    lines = ESCAPE.sub("", rendered(causal_100, width, colour)).splitlines()
    grid = [line for line in lines if re.match(r"^ ?\d+ [▀█▓▒░· ]", line)]
    assert len(grid) == (50 if colour else 100)
    # the row label (3 columns) and the cells: the widest grid that fits (no pooling at 120)
    assert max(len(line) for line in grid) == 3 + cells
    assert all(len(line) <= width for line in lines)
    words = re.sub(r"\s+", " ", " ".join(lines[:3]))
    assert words.startswith("softmax 100×100")
    if pooled:
        assert f"(each cell: the largest of {pooled} keys)" in words
    else:
        assert "each cell" not in words


def test_pooling_takes_the_largest_of_consecutive_keys_and_only_as_far_as_needed():
    weights = np.arange(10.0).reshape(1, 10)
    masked = np.array([[False] * 6 + [True] * 4])
    pooled, pooled_masked, starts = pool_columns(weights, masked, 4)
    assert starts.tolist() == [0, 2, 5, 7]
    assert pooled.tolist() == [[1.0, 4.0, 6.0, 9.0]]
    assert pooled_masked.tolist() == [[False, False, False, True]]
    same, _, _ = pool_columns(weights, masked, 12)
    assert same is weights


def test_colour_puts_two_queries_on_a_line_with_half_blocks():
    weights = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    masked = np.triu(np.ones((3, 3), dtype=bool), 1)
    out = rendered(HeatGrid(weights, "softmax   3×3", masked), 80, colour=True)
    lines = out.splitlines()
    assert ESCAPE.sub("", lines[3]) == "0 ▀▀▀" and ESCAPE.sub("", lines[4]) == "2 ▀▀▀" and len(lines) == 5

    def rgb(colour):
        return f"{colour.red};{colour.green};{colour.blue}"

    one, half, fifth = heat_colour(1.0), heat_colour(0.5), heat_colour(0.2)
    # the upper query's colour in front, the lower's behind; masked cells grey
    assert f"38;2;{rgb(one)};48;2;{rgb(half)}m▀" in lines[3]
    assert f"38;2;{rgb(HEAT_MASKED)};48;2;{rgb(half)}m▀" in lines[3]
    assert f"38;2;{rgb(HEAT_MASKED)};48;2;{rgb(HEAT_MASKED)}m▀" in lines[3]
    assert f"38;2;{rgb(fifth)}m▀" in lines[4]  # the last, odd query: nothing below it


def test_without_colour_one_query_per_line_in_shades_with_masked_dots():
    weights = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.1, 0.3, 0.6]])
    masked = np.triu(np.ones((3, 3), dtype=bool), 1)
    lines = rendered(HeatGrid(weights, "softmax   3×3", masked), 40, colour=False).splitlines()
    assert lines[3:] == ["0 █··", "1 ▒▒·", "2  ░▓"]


def test_the_legend_explains_the_grey_of_masked_cells(causal_100):
    out = rendered(causal_100, 120, colour=True)
    assert f"48;2;{HEAT_MASKED.red};{HEAT_MASKED.green};{HEAT_MASKED.blue}m   " in out
    plain = ESCAPE.sub("", out)
    assert "a masked key (its logit is −∞): weight 0 (grey)" in plain
    assert "2 queries per line, the even one on top" in plain


def test_the_palette_runs_through_the_viridis_stops_not_a_blend_of_its_ends():
    assert [heat_colour(index / 9) for index in range(10)] == list(VIRIDIS)
    # viridis' middle is teal (#21918c), not the grey-mauve halfway between its ends
    middle = heat_colour(0.5)
    assert abs(middle.red - 0x21) <= 2 and abs(middle.green - 0x91) <= 2 and abs(middle.blue - 0x8c) <= 2
    # perceptually ordered: lightness rises all the way
    lightness = [0.2126 * c.red + 0.7152 * c.green + 0.0722 * c.blue for c in map(heat_colour, np.linspace(0, 1, 41))]
    assert all(b > a for a, b in zip(lightness, lightness[1:], strict=False))


@pytest.mark.parametrize(("weight", "text"), [(0.0, "white"), (0.5, "white"), (0.8, "black"), (1.0, "black")])
def test_table_cells_use_the_same_palette_with_legible_text(weight, text):
    style = heat_style(weight)
    assert style.bgcolor == Color.from_triplet(heat_colour(weight))
    assert style.color == Color.parse(text)


# --- the attention variants of issue 11: NaN rows, sinks, −∞ bias cells -----------------------------

def trace_of(document):
    return attention(problem_from_document(document))


NAN_ROW = {"x": [[1.0], [2.0], [0.5]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[3.0]],
           "mask": [[1, 0, 0], [0, 0, 0], [1, 1, 1]], "masked_rows": "nan"}


def test_without_colour_a_nan_row_is_marked_apart_from_masked_keys():
    lines = ESCAPE.sub("", rendered(trace_of(NAN_ROW), 80, colour=False)).splitlines()
    assert lines[3:5] == ["0 █··", "1 ×××"] and lines[5].startswith("2 ") and not set(lines[5][2:]) & set("×·")
    assert "· a masked key (its logit is −∞): weight 0" in lines
    assert '× a query that sees no key (masked_rows "nan"): its weights are NaN' in lines


def test_in_colour_a_nan_row_is_red_and_the_legend_says_so():
    out = rendered(trace_of(NAN_ROW), 80, colour=True)
    first = next(line for line in out.splitlines() if ESCAPE.sub("", line).startswith("0 "))
    red = f"{HEAT_NAN.red};{HEAT_NAN.green};{HEAT_NAN.blue}"
    grey = f"{HEAT_MASKED.red};{HEAT_MASKED.green};{HEAT_MASKED.blue}"
    assert f"38;2;{grey};48;2;{red}m▀" in first  # query 0's masked key over query 1's NaN
    assert f"48;2;{red}m   " in out
    assert 'a query that sees no key (masked_rows "nan"): its weights are NaN (red)' in ESCAPE.sub("", out)


def test_the_row_labels_dimness_does_not_dim_the_cells():
    out = rendered(trace_of(NAN_ROW), 40, colour=True)
    cells = re.findall(r"\x1b\[([0-9;]*)m▀", out)
    assert cells and not any(codes.split(";")[0] == "2" for codes in cells)


def test_with_sinks_the_grid_says_the_rows_sum_to_less_than_1():
    document = random_document(seq_len=4, d_model=4, heads=2, seed=3)
    trace = trace_of({**document, "sinks": [1.0, 2.5]})
    sums = trace.steps["softmax"].array.sum(axis=-1)
    assert sums.max() < 1
    for colour in (True, False):
        plain = ESCAPE.sub("", rendered(trace, 100, colour))
        assert (f"rows sum to less than 1 (the sink takes the rest): {sums.min():.4f} to {sums.max():.4f}"
                in plain.splitlines())
    assert "rows sum to less than 1" not in ESCAPE.sub("", rendered(trace_of(document), 100, False))


def test_minus_infinity_bias_cells_are_masked_in_the_grid():
    document = random_document(seq_len=3, d_model=2, seed=4)
    bias = [[0.0, None, 0.5], [0.0, 0.0, "-inf"], [-1.0, 0.0, 0.0]]
    lines = ESCAPE.sub("", rendered(trace_of({**document, "bias": bias}), 80, colour=False)).splitlines()
    grid = [line[2:] for line in lines[3:6]]
    assert grid[0][1] == "·" and grid[1][2] == "·" and "·" not in grid[2]
    assert "· a masked key (its logit is −∞): weight 0" in lines
