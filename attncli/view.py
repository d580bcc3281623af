"""Rich tables for a Trace and for the demo walk-through.

Rich is imported here and in the CLI only; nothing else in attncli needs it.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator

import numpy as np
from rich.color import Color, blend_rgb
from rich.color_triplet import ColorTriplet
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.table import Table
from rich.text import Text

from attncli.demo import Section
from attncli.trace import Step, Trace

# Viridis' ends: dark for weight 0, bright for weight 1; readable on dark and light terminals.
_LOW = ColorTriplet(68, 1, 84)
_HIGH = ColorTriplet(253, 231, 37)
_AXIS_WORD = {
    "q_len": "query",
    "k_len": "key",
    "head_dim": "dim",
    "head_dim_v": "dim",
    "heads*head_dim_v": "dim",
    "d_out": "dim",
}


def format_number(value: float, precision: int, integers: bool = False) -> str:
    """``value`` with ``precision`` decimals; −∞ as ``-inf``; in scientific notation
    when fixed decimals would show a nonzero value as 0 or run past 1e9."""
    if np.isneginf(value):
        return "-inf"
    if integers:
        return str(int(value))
    magnitude = abs(value)
    if value != 0 and (magnitude < 0.5 * 10.0**-precision or magnitude >= 1e9):
        return f"{value:.{max(precision - 1, 1)}e}"
    return f"{value:.{precision}f}"


def heat_style(weight: float) -> Style:
    """Background shade for a weight in [0, 1], with text that stays legible on it."""
    background = blend_rgb(_LOW, _HIGH, float(min(max(weight, 0.0), 1.0)))
    luminance = 0.299 * background.red + 0.587 * background.green + 0.114 * background.blue
    return Style(
        bgcolor=Color.from_triplet(background),
        color="black" if luminance > 140 else "white",
    )


# Past these sizes a table shows its first and last rows/columns around a "…", as numpy prints.
MAX_ROWS = 24
MAX_COLUMNS = 16
EDGE_ROWS = 10
EDGE_COLUMNS = 7


def visible_indices(size: int, limit: int, edge: int, full: bool) -> list[int | None]:
    """The indices to show along an axis of ``size``; None stands for the elided middle."""
    if full or size <= limit:
        return list(range(size))
    return [*range(edge), None, *range(size - edge, size)]


def matrix_table(
    array: np.ndarray,
    title: str,
    row_label: str,
    column_label: str,
    precision: int,
    heatmap: bool = False,
    full: bool = False,
) -> Table:
    """A table of a 2-D ``array`` (rows, columns), rows and columns labelled by index;
    the middle of a large array is elided unless ``full``."""
    finite = array[np.isfinite(array)]
    integers = bool(finite.size) and np.array_equal(finite, np.round(finite)) and np.abs(finite).max() < 1e9
    rows = visible_indices(array.shape[0], MAX_ROWS, EDGE_ROWS, full)
    columns = visible_indices(array.shape[1], MAX_COLUMNS, EDGE_COLUMNS, full)
    elided = len(rows) < array.shape[0] or len(columns) < array.shape[1]
    caption = "middle elided: --full shows every value, --format json gives them all" if elided else None
    # as wide as its title at least, so the title never wraps above a narrow table
    table = Table(title=title, title_justify="left", title_style="bold", min_width=len(title),
                  caption=caption, caption_justify="left")
    table.add_column(f"{row_label}╲{column_label}", justify="right", style="dim", no_wrap=True)
    for column in columns:
        table.add_column("…" if column is None else str(column), justify="right", no_wrap=True)
    for row in rows:
        if row is None:
            table.add_row("…", *("…" for _ in columns))
            continue
        cells = []
        for column in columns:
            if column is None:
                cells.append("…")
                continue
            value = float(array[row, column])
            text = format_number(value, precision, integers)
            cells.append(Text(text, style=heat_style(value)) if heatmap and np.isfinite(value) else text)
        table.add_row(str(row), *cells)
    return table


class HeatLegend:
    """A one-line key to the softmax shading; without colour there is no shading to explain."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if console.color_system is None:
            return
        legend = Text("weight  ")
        for weight in (0.0, 0.25, 0.5, 0.75, 1.0):
            legend.append(f" {weight:g} ", style=heat_style(weight))
        yield legend


def step_tables(step: Step, precision: int, heatmap: bool, full: bool = False) -> Iterator[Table]:
    """One table per batch item and head of ``step``, titled with formula, shape and position."""
    leading_axes = step.axes[:-2]
    rows, columns = step.shape[-2:]
    row_word = _AXIS_WORD.get(step.axes[-2], step.axes[-2])
    column_word = _AXIS_WORD.get(step.axes[-1], step.axes[-1])
    for index in itertools.product(*(range(size) for size in step.shape[:-2])):
        where = ", ".join(
            f"{'batch' if axis == 'batch' else 'head'} {position}"
            for axis, position in zip(leading_axes, index, strict=True)
        )
        title = f"{step.formula}   {rows}×{columns}" + (f"   ({where})" if where else "")
        yield matrix_table(step.array[index], title, row_word, column_word, precision, heatmap, full)


def trace_renderables(trace: Trace, steps: list[Step], precision: int, full: bool = False) -> list[RenderableType]:
    """Every table for the chosen steps of a trace, softmax shaded as a heatmap; large ones elided unless full."""
    renderables: list[RenderableType] = []
    for step in steps:
        heatmap = step.name == "softmax"
        renderables.extend(step_tables(step, precision, heatmap, full))
        if heatmap:
            renderables.append(HeatLegend())
    return renderables


def demo_renderables(sections: list[Section], warning: str, precision: int) -> list[RenderableType]:
    """The walk-through: per section a heading, its explanation and its tables; then the warning."""
    renderables: list[RenderableType] = []
    for section in sections:
        renderables.append(Text(section.heading, style="bold underline"))
        renderables.append(Text(section.explanation))
        for matrix in section.matrices:
            rows, columns = matrix.array.shape
            renderables.append(
                matrix_table(
                    matrix.array,
                    f"{matrix.name}   {rows}×{columns}",
                    matrix.row_label,
                    matrix.column_label,
                    precision,
                    section.heatmap,
                )
            )
        if section.heatmap:
            renderables.append(HeatLegend())
        renderables.append(Text(""))
    renderables.append(Text(warning, style="yellow"))
    return renderables


def print_renderables(renderables: list[RenderableType], file=None) -> None:
    """Print to stdout, wide enough that no table is squeezed: a piped console would
    otherwise fall back to 80 columns and cut numbers to ``0.…``."""
    console = Console(file=file or sys.stdout)
    unbounded = console.options.update_width(1_000_000)
    needed = max(
        (Measurement.get(console, unbounded, item).maximum for item in renderables if isinstance(item, Table)),
        default=0,
    )
    if needed > console.width:
        console = Console(file=file or sys.stdout, width=needed)
    for item in renderables:
        console.print(item)
