"""Compact heatmaps of the softmax weights: one character per weight."""

from __future__ import annotations

import itertools
import math

import numpy as np
from rich.console import Console, ConsoleOptions, RenderResult
from rich.style import Style
from rich.text import Text

from attncli.trace import Trace
from attncli.view.console import PipeAwareConsole
from attncli.view.tables import MASKED, MAX_TABLES, HeatLegend, heat_style, masked_cells, table_position

SHADES = " ░▒▓█"


class HeatGrid:
    """A compact grid of one softmax matrix (q_len, k_len): one character per weight, coloured
    by value (shade characters where there is no colour), token indices on both axes. In a
    terminal too narrow for every key, each character stands for the largest of a few keys.
    ``masked`` cells (True) show MASKED; a pooled character, when all its keys are masked."""

    def __init__(self, weights: np.ndarray, title: str, masked: np.ndarray | None = None):
        self.weights = weights
        self.title = title
        self.masked = np.zeros(weights.shape, dtype=bool) if masked is None else masked

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        weights, masked = self.weights, self.masked
        n_rows, n_columns = weights.shape
        label_width = len(str(n_rows - 1)) + 1
        room = max(options.max_width - label_width, 10)
        pool = 1 if not console.is_terminal else max(1, math.ceil(n_columns / room))
        if pool > 1:
            padded = np.pad(weights, ((0, 0), (0, (-n_columns) % pool)))
            weights = padded.reshape(n_rows, -1, pool).max(axis=2)
            masked = np.pad(masked, ((0, 0), (0, (-n_columns) % pool)), constant_values=True)
            masked = masked.reshape(n_rows, -1, pool).all(axis=2)
        yield Text(self.title + (f"   (each cell: the largest of {pool} keys)" if pool > 1 else ""), style="bold")
        yield Text(" " * label_width + "keys →   (rows: queries)", style="dim")
        ruler = [" "] * weights.shape[1]
        step = 1 if weights.shape[1] <= 10 else 10
        for column in range(0, weights.shape[1], step):
            label = str(column * pool)
            ruler[column:column + len(label)] = label
        yield Text(" " * label_width + "".join(ruler[:weights.shape[1]]), style="dim")
        colour = console.color_system is not None and not console.no_color
        for row_index, (row, row_masked) in enumerate(zip(weights, masked, strict=True)):
            line = Text(f"{row_index:>{label_width - 1}} ", style="dim")
            for weight, hidden in zip(row, row_masked, strict=True):
                if hidden:
                    line.append(MASKED, style="dim")  # a masked key, unlike a small weight
                elif colour:
                    line.append("█", style=Style(color=heat_style(float(weight)).bgcolor))
                else:
                    line.append(SHADES[min(int(weight * len(SHADES)), len(SHADES) - 1)])
            yield line


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
        grid = HeatGrid(step.array[index], title, None if masked is None else masked[index])
        if not console.is_terminal:
            console.width = max(console.width, step.shape[-1] + len(str(step.shape[-2])) + 2, len(title))
        console.print(grid)
    if len(shown) < len(positions):
        console.print(Text(f"… {len(positions) - len(shown)} more grids not shown: --full shows them", style="dim"))
    console.print(HeatLegend(shades=True, masked=masked is not None and bool(masked.any())))
