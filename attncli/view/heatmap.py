"""Compact heatmaps of the softmax weights: one character per weight (two queries per character in colour)."""

from __future__ import annotations

import itertools

import numpy as np
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderResult
from rich.style import Style
from rich.text import Text

from attncli.trace import Trace
from attncli.view.console import PipeAwareConsole
from attncli.view.labels import cell_len, labelled, table_labels
from attncli.view.tables import (
    HEAT_MASKED,
    HEAT_NAN,
    MASKED,
    MAX_TABLES,
    heat_colour,
    masked_cells,
    table_position,
    weights_legend,
)

SHADES = " ░▒▓█"
# A NaN weight (a query that sees no key, with masked_rows "nan"), one character wide.
NAN_MARK = "×"
_MASKED_COLOUR = Color.from_triplet(HEAT_MASKED)
_NAN_COLOUR = Color.from_triplet(HEAT_NAN)
# Past this many tokens, a grid's list of them shows the first and last few around "…".
MAX_LISTED = 32
EDGE_LISTED = 12


def pool_columns(weights: np.ndarray, masked: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (rows, keys) ``weights`` and ``masked`` pooled to ``cells`` columns (as many as there are
    keys at most): each cell the largest weight of a run of consecutive keys (runs differ by at most
    one key), masked when all its keys are; and the first key of each cell."""
    n_columns = weights.shape[1]
    cells = min(cells, n_columns)
    starts = (np.arange(cells) * n_columns) // cells
    if cells == n_columns:
        return weights, masked, starts
    return (np.maximum.reduceat(weights, starts, axis=1), np.logical_and.reduceat(masked, starts, axis=1), starts)


def _ruler(starts: np.ndarray, n_columns: int) -> str:
    """Key indices over the cells: round numbers (every 1, 10, 20, 50, 100, … keys) at the cell holding
    that key, spaced so no two labels touch."""
    cells = len(starts)
    ends = np.append(starts[1:], n_columns)
    for step in (1, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, n_columns):
        keys = range(0, n_columns, step)
        positions = np.searchsorted(ends, list(keys), side="right")
        if step == 1 and cells <= 10:
            break  # a few keys: every index, side by side
        if step > 1 and all(b - a > len(str(key)) for a, b, key in zip(positions, positions[1:], keys, strict=False)):
            break
    ruler = [" "] * cells
    for key, position in zip(keys, positions, strict=True):
        label = str(key)
        ruler[position:position + len(label)] = label
    return "".join(ruler[:cells]).rstrip()


def _row_label(row: int, width: int, labels: tuple[str, ...] | None = None) -> Text:
    """A row's index (and token, left-aligned after it), dim: the label's own style, so the cells
    after it keep their full colour."""
    line = Text()
    label = labelled(row, labels)
    padding = " " * (width - 1 - cell_len(label))
    line.append((padding + label if labels is None else label + padding) + " ", style="dim")
    return line


def label_width(n_rows: int, labels: tuple[str, ...] | None) -> int:
    """The cells the rows' labels take, with the space after them."""
    if labels is None:
        return 1 + len(str(n_rows - 1))
    return 1 + max(cell_len(labelled(row, labels)) for row in range(n_rows))


def token_lines(labels: tuple[tuple[str, ...] | None, tuple[str, ...] | None]) -> list[Text]:
    """The grid's tokens by index (``tokens: 0 The · 1 cat``; the queries' and the keys' apart when
    they differ), the middle of a long list elided; none without tokens."""
    queries, keys = labels
    named = [("tokens", queries)] if queries == keys else [("queries", queries), ("keys", keys)]
    lines = []
    for name, tokens in named:
        if tokens is None:
            continue
        shown = list(range(len(tokens)))
        if len(shown) > MAX_LISTED:
            shown = [*shown[:EDGE_LISTED], None, *shown[-EDGE_LISTED:]]
        lines.append(Text(f"{name}: " + " · ".join("…" if index is None else labelled(index, tokens)
                                                   for index in shown), style="dim"))
    return lines


class HeatGrid:
    """A compact grid of one softmax matrix (q_len, k_len), token indices on both axes. With colour,
    one character per key and two queries per line (▀: the upper query's viridis colour over the
    lower's), masked cells grey, NaN cells red; without, one query per line in shade characters,
    masked cells MASKED, NaN cells NAN_MARK. In a terminal too narrow for every key, each cell
    stands for the largest of a few consecutive keys, pooled only as far as the width needs.
    ``masked`` cells are True. ``labels`` (the queries', the keys') are listed under the grid, and
    without colour the queries' beside their rows."""

    def __init__(self, weights: np.ndarray, title: str, masked: np.ndarray | None = None,
                 labels: tuple[tuple[str, ...] | None, tuple[str, ...] | None] = (None, None)):
        self.weights = weights
        self.title = title
        self.masked = np.zeros(weights.shape, dtype=bool) if masked is None else masked
        self.labels = labels

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        n_rows, n_columns = self.weights.shape
        colour = console.color_system is not None and not console.no_color
        row_labels = None if colour else self.labels[0]
        labels_width = label_width(n_rows, row_labels)
        room = max(options.max_width - labels_width, 10) if console.is_terminal else n_columns
        weights, masked, starts = pool_columns(self.weights, self.masked, room)
        cells = weights.shape[1]
        title = self.title
        if cells < n_columns:
            fewest, most = n_columns // cells, -(-n_columns // cells)
            title += f"   (each cell: the largest of {fewest if fewest == most else f'{fewest}–{most}'} keys)"
        yield Text(title, style="bold")
        rows = "2 queries per line, the even one on top" if colour and n_rows > 1 else "queries"
        yield Text(" " * labels_width + f"keys →   (rows: {rows})", style="dim")
        yield Text(" " * labels_width + _ruler(starts, n_columns), style="dim")
        if not colour:
            for row_index, (row, row_masked) in enumerate(zip(weights, masked, strict=True)):
                line = _row_label(row_index, labels_width, row_labels)
                for weight, hidden in zip(row, row_masked, strict=True):
                    # a masked key, unlike a small weight; a NaN row, unlike both
                    if np.isnan(weight):
                        line.append(NAN_MARK)
                    else:
                        line.append(MASKED if hidden else SHADES[min(int(weight * len(SHADES)), len(SHADES) - 1)],
                                    style="dim" if hidden else None)
                yield line
            yield from token_lines(self.labels)
            return
        colours = [[_NAN_COLOUR if np.isnan(weight) else _MASKED_COLOUR if hidden else
                    Color.from_triplet(heat_colour(float(weight)))
                    for weight, hidden in zip(row, row_masked, strict=True)]
                   for row, row_masked in zip(weights, masked, strict=True)]
        for upper in range(0, n_rows, 2):
            line = _row_label(upper, labels_width)
            lower = colours[upper + 1] if upper + 1 < n_rows else [None] * cells
            for top, bottom in zip(colours[upper], lower, strict=True):
                line.append("▀", style=Style(color=top, bgcolor=bottom))
            yield line
        yield from token_lines(self.labels)


def print_heatmaps(trace: Trace, full: bool = False, console: Console | None = None) -> None:
    """The softmax weights of every batch item and head as compact grids (up to MAX_TABLES unless full)."""
    console = console or PipeAwareConsole()
    step = trace.steps["softmax"]
    masked = masked_cells(trace, step)
    positions = list(itertools.product(*(range(size) for size in step.shape[:-2])))
    shown = positions if full else positions[:MAX_TABLES]
    for index in shown:
        where = table_position(step.axes[:-2], index)
        title = f"softmax   {step.shape[-2]}×{step.shape[-1]}" + (f"   ({where})" if where else "")
        labels = table_labels(trace, step, index)
        grid = HeatGrid(step.array[index], title, None if masked is None else masked[index], labels)
        if not console.is_terminal:  # without colour (piped) the queries' tokens are beside their rows
            rows = label_width(step.shape[-2], None if console.color_system and not console.no_color else labels[0])
            console.width = max(console.width, step.shape[-1] + rows + 1, len(title))
        console.print(grid)
    if len(shown) < len(positions):
        console.print(Text(f"… {len(positions) - len(shown)} more grids not shown: --full shows them", style="dim"))
    console.print(weights_legend(trace, step, shades=True, nan_mark=NAN_MARK))
