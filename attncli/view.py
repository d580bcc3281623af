"""Rich tables for a Trace and for the demo walk-through.

Rich is imported here and in the CLI only; nothing else in attncli needs it.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from rich.color import Color, blend_rgb
from rich.color_triplet import ColorTriplet
from rich.columns import Columns
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.table import Table
from rich.text import Text

from attncli.demo import Section
from attncli.keys import format_number
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
# Past these sizes a table shows its first and last rows/columns around a "…", as numpy prints;
# in a terminal, fewer columns when these would not fit its width.
MAX_ROWS = 24
MAX_COLUMNS = 16
EDGE_ROWS = 10
EDGE_COLUMNS = 7
ELIDED_NOTE = "middle elided: --full shows every value, --format json gives them all"
# A step of a large batch with many heads would be hundreds of tables: show this many of them.
MAX_TABLES = 8


def heat_style(weight: float) -> Style:
    """Background shade for a weight in [0, 1], with text that stays legible on it."""
    background = blend_rgb(_LOW, _HIGH, float(min(max(weight, 0.0), 1.0)))
    luminance = 0.299 * background.red + 0.587 * background.green + 0.114 * background.blue
    return Style(
        bgcolor=Color.from_triplet(background),
        color="black" if luminance > 140 else "white",
    )


def visible_indices(size: int, limit: int, edge: int) -> list[int | None]:
    """The indices to show along an axis of ``size``; None stands for the elided middle."""
    if size <= limit:
        return list(range(size))
    return [*range(edge), None, *range(size - edge, size)]


def _table(
    array: np.ndarray,
    rows: list[int | None],
    columns: list[int | None],
    corner: str,
    precision: int,
    heatmap: bool,
) -> Table:
    finite = array[np.isfinite(array)]
    # a value this far below the table's largest is rounding left-over (0.1 + 0.2 - 0.3), shown as 0
    noise = 1e-12 * float(np.abs(finite).max()) if finite.size else 0.0
    # whole-number matrices (the classic example's inputs) read best without decimals; weights never
    integers = (
        not heatmap
        and bool(finite.size)
        and np.array_equal(finite, np.round(finite))
        and np.abs(finite).max() < 1e9
    )
    table = Table()
    table.add_column(corner, justify="right", style="dim", no_wrap=True)
    for column in columns:
        table.add_column("…" if column is None else str(column), justify="right", no_wrap=True)
    for row in rows:
        if row is None:
            table.add_row("…", *("…" for _ in columns))
            continue
        cells: list[RenderableType] = []
        for column in columns:
            if column is None:
                cells.append("…")
                continue
            value = float(array[row, column])
            text = format_number(0.0 if abs(value) < noise else value, precision, integers)
            cells.append(Text(text, style=heat_style(value)) if heatmap and np.isfinite(value) else text)
        table.add_row(str(row), *cells)
    return table


def matrix_block(
    console: Console,
    array: np.ndarray,
    title: str,
    corner: str,
    precision: int,
    heatmap: bool = False,
    full: bool = False,
) -> RenderableType:
    """The title line, then a table of the 2-D ``array`` (rows, columns) labelled by index.

    Unless ``full``, a large array's middle is elided, and in a terminal the columns are cut
    further until the table fits its width.
    """
    n_rows, n_columns = array.shape
    rows = list(range(n_rows)) if full else visible_indices(n_rows, MAX_ROWS, EDGE_ROWS)
    attempts = [(MAX_COLUMNS, EDGE_COLUMNS)] + [(2 * edge + 1, edge) for edge in range(EDGE_COLUMNS - 1, 0, -1)]
    for limit, edge in attempts:
        columns = list(range(n_columns)) if full else visible_indices(n_columns, limit, edge)
        table = _table(array, rows, columns, corner, precision, heatmap)
        if full or not console.is_terminal or _width(console, table) <= console.width:
            break
    parts: list[RenderableType] = [Text(title, style="bold")]  # Text: a formula's [..] is not markup
    parts.append(table)
    if len(rows) < n_rows or len(columns) < n_columns:
        parts.append(Text(ELIDED_NOTE, style="dim"))
    return Group(*parts)


class HeatLegend:
    """A one-line key to the shading: colours where there is colour; with ``shades`` (the heatmap
    view) the shade characters where there is not; nothing for plain tables, whose numbers speak."""

    def __init__(self, shades: bool = False):
        self.shades = shades

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if console.color_system is None or console.no_color:
            if self.shades:
                yield Text("shades: ' ' < 0.2 ≤ ░ < 0.4 ≤ ▒ < 0.6 ≤ ▓ < 0.8 ≤ █", style="dim")
            return
        legend = Text("weight  ")
        for weight in (0.0, 0.25, 0.5, 0.75, 1.0):
            legend.append(f" {weight:g} ", style=heat_style(weight))
        yield legend


def _position(axes: tuple[str, ...], index: tuple[int, ...]) -> str:
    """Which table of a step this is, e.g. ``batch 1, head 3`` (empty for a plain matrix)."""
    return ", ".join(f"{'batch' if axis == 'batch' else 'head'} {position}"
                     for axis, position in zip(axes, index, strict=True))


def step_blocks(console: Console, step: Step, precision: int, full: bool = False) -> Iterator[RenderableType]:
    """One titled table per batch item and head of ``step`` (formula, shape and position); past
    MAX_TABLES of them, unless ``full``, a line saying how many more there are."""
    heatmap = step.name == "softmax"
    leading_axes = step.axes[:-2]
    n_rows, n_columns = step.shape[-2:]
    corner = f"{_AXIS_WORD.get(step.axes[-2], step.axes[-2])}╲{_AXIS_WORD.get(step.axes[-1], step.axes[-1])}"
    positions = list(itertools.product(*(range(size) for size in step.shape[:-2])))
    shown = positions if full else positions[:MAX_TABLES]
    for index in shown:
        where = _position(leading_axes, index)
        title = f"{step.formula}   {n_rows}×{n_columns}" + (f"   ({where})" if where else "")
        yield matrix_block(console, step.array[index], title, corner, precision, heatmap, full)
    if len(shown) < len(positions):
        yield Text(
            f"… {len(positions) - len(shown)} more {step.name} tables ({' × '.join(leading_axes)}) not shown: "
            "--full shows them, --format json gives every value",
            style="dim",
        )
    if heatmap:
        yield HeatLegend()


def print_trace(
    trace: Trace, steps: list[Step], precision: int, full: bool = False, console: Console | None = None
) -> None:
    """Print the chosen steps of a trace as tables (to stdout unless ``console``), softmax as a heatmap;
    each table is printed as soon as it is made."""
    console = console or PipeAwareConsole()
    for step in steps:
        for block in step_blocks(console, step, precision, full):
            _print(console, [block])


def print_demo(sections: list[Section], warning: str, precision: int, console: Console | None = None) -> None:
    """Print the walk-through: per section a heading, its explanation and its tables; then the warning."""
    console = console or PipeAwareConsole()
    blocks: list[RenderableType] = []
    for section in sections:
        blocks.append(Text(section.heading, style="bold underline"))
        blocks.append(Text(section.explanation))
        for row in section.rows:
            tables = [
                matrix_block(console, matrix.array, f"{matrix.name}   {matrix.array.shape[0]}×{matrix.array.shape[1]}",
                             f"{matrix.row_label}╲{matrix.column_label}", precision, section.heatmap)
                for matrix in row
            ]
            # small matrices side by side, as many as the width allows
            blocks.append(Columns(tables, padding=(0, 3)) if len(tables) > 1 else tables[0])
        if section.heatmap:
            blocks.append(HeatLegend())
        blocks.append(Text(""))
    blocks.append(Text(warning, style="yellow"))
    _print(console, blocks)


class PipeAwareConsole(Console):
    """A Console that lets a closed pipe propagate as BrokenPipeError, for the CLI to end the
    run as it ends every other (Rich itself would exit 1, the code attncli keeps for mismatches)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError


def _width(console: Console, renderable: RenderableType) -> int:
    return Measurement.get(console, console.options.update_width(1_000_000), renderable).maximum


def _print(console: Console, blocks: list[RenderableType]) -> None:
    # Piped, Rich would fall back to 80 columns and squeeze numbers to "0.…": widen to the widest
    # table instead. In a terminal the tables were already cut to its width.
    if not console.is_terminal:
        needed = max((_width(console, block) for block in blocks if isinstance(block, Group)), default=0)
        if needed > console.width:
            console.width = needed
    for block in blocks:
        console.print(block)


def trace_text(trace: Trace, steps: list[Step], precision: int, full: bool = False) -> str:
    """The tables as plain text without colour, for a .txt file."""
    buffer = io.StringIO()
    print_trace(trace, steps, precision, full, console=Console(file=buffer, no_color=True, force_terminal=False))
    return buffer.getvalue()


# --- heatmaps ---------------------------------------------------------------------------------------

SHADES = " ░▒▓█"


class HeatGrid:
    """A compact grid of one softmax matrix (q_len, k_len): one character per weight, coloured
    by value (shade characters where there is no colour), token indices on both axes. In a
    terminal too narrow for every key, each character stands for the largest of a few keys."""

    def __init__(self, weights: np.ndarray, title: str):
        self.weights = weights
        self.title = title

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        weights = self.weights
        n_rows, n_columns = weights.shape
        label_width = len(str(n_rows - 1)) + 1
        room = max(options.max_width - label_width, 10)
        pool = 1 if not console.is_terminal else max(1, math.ceil(n_columns / room))
        if pool > 1:
            padded = np.pad(weights, ((0, 0), (0, (-n_columns) % pool)))
            weights = padded.reshape(n_rows, -1, pool).max(axis=2)
        yield Text(self.title + (f"   (each cell: the largest of {pool} keys)" if pool > 1 else ""), style="bold")
        yield Text(" " * label_width + "keys →   (rows: queries)", style="dim")
        ruler = [" "] * weights.shape[1]
        step = 1 if weights.shape[1] <= 10 else 10
        for column in range(0, weights.shape[1], step):
            label = str(column * pool)
            ruler[column:column + len(label)] = label
        yield Text(" " * label_width + "".join(ruler[:weights.shape[1]]), style="dim")
        colour = console.color_system is not None and not console.no_color
        for row_index, row in enumerate(weights):
            line = Text(f"{row_index:>{label_width - 1}} ", style="dim")
            for weight in row:
                if weight == 0:
                    line.append(" ")  # exactly 0 (a masked key) stays blank, unlike a small weight
                elif colour:
                    line.append("█", style=Style(color=heat_style(float(weight)).bgcolor))
                else:
                    line.append(SHADES[min(int(weight * len(SHADES)), len(SHADES) - 1)])
            yield line


def print_heatmaps(trace: Trace, full: bool = False, console: Console | None = None) -> None:
    """The softmax weights of every batch item and head as compact grids (up to MAX_TABLES unless full)."""
    console = console or PipeAwareConsole()
    step = trace.steps["softmax"]
    positions = list(itertools.product(*(range(size) for size in step.shape[:-2])))
    shown = positions if full else positions[:MAX_TABLES]
    for index in shown:
        where = _position(step.axes[:-2], index)
        title = f"softmax   {step.shape[-2]}×{step.shape[-1]}" + (f"   ({where})" if where else "")
        grid = HeatGrid(step.array[index], title)
        if not console.is_terminal:
            console.width = max(console.width, step.shape[-1] + len(str(step.shape[-2])) + 2, len(title))
        console.print(grid)
    if len(shown) < len(positions):
        console.print(Text(f"… {len(positions) - len(shown)} more grids not shown: --full shows them", style="dim"))
    console.print(HeatLegend(shades=True))


# --- shapes, explanations, verdicts ------------------------------------------------------------------

def print_shapes(rows: list, console: Console | None = None) -> None:
    """The flow of shapes, one row per step: the step; its shape over its named axes; its formula
    over how it got that shape (two lines each, so the table fits an 80-column terminal)."""
    console = console or PipeAwareConsole()
    table = Table(title=Text("How the shapes flow", style="bold"), title_justify="left")
    table.add_column("step", no_wrap=True)
    table.add_column("shape and axes", no_wrap=True)
    table.add_column("formula and how", overflow="fold")
    for row in rows:
        shape = Text("(" + ", ".join(map(str, row.shape)) + ")\n")
        shape.append("(" + ", ".join(row.axes) + ")", style="dim")
        what = Text(row.formula + "\n")
        what.append(row.how, style="dim")
        table.add_row(row.step, shape, what)
    if not console.is_terminal:
        console.width = max(console.width, _width(console, table))
    console.print(table)


def print_sections(sections: list, console: Console | None = None) -> None:
    """Headings and their lines, as plain text (a formula's brackets are not markup)."""
    console = console or PipeAwareConsole()
    for section in sections:
        console.print(Text(section.heading, style="bold"))
        for line in section.lines:
            # one line of arithmetic stays one line: the terminal wraps it if it must
            console.print(Text("  " + line), soft_wrap=True)


def print_verdict(verdict, console: Console | None = None) -> None:
    """One line saying whether the numbers agree; on a mismatch, where, and the likely mistake(s)."""
    console = console or PipeAwareConsole()
    tolerance = f"atol {verdict.atol:g}, rtol {verdict.rtol:g}"
    if verdict.agree:
        console.print(Text(f"✓ {verdict.step} agrees with attncli: largest difference {verdict.max_error:.3g} "
                           f"({tolerance})", style="green"), soft_wrap=True)
        return
    cell = "[" + ", ".join(map(str, verdict.worst)) + "]"
    lines = [Text(
        f"✗ {verdict.step} differs from attncli in {verdict.wrong_cells} of {verdict.cells} cells ({tolerance}); "
        f"largest difference {verdict.max_error:.6g} at {cell}: yours {verdict.yours!r}, attncli "
        f"{verdict.attncli!r}", style="red")]
    if not verdict.mistakes:
        lines.append(Text("No known mistake gives these numbers."))
    for number, mistake in enumerate(verdict.mistakes):
        lead = "Likely mistake" if number == 0 else "Or, giving the same numbers here"
        lines.append(Text(f"{lead}: {mistake.name}: {mistake.means}.", style="bold" if number == 0 else ""))
        lines.append(Text(f"  Fix: {mistake.fix}."))
    for line in lines:
        console.print(line, soft_wrap=True)


def stdout_console(no_color: bool = False) -> Console:
    """The console results are printed on: stdout, colour as the terminal and NO_COLOR allow."""
    return PipeAwareConsole(no_color=no_color or None)


def recording(width: int) -> Console:
    """A console that records in colour at ``width`` columns, for SVG and HTML pictures."""
    return Console(record=True, file=io.StringIO(), force_terminal=True, color_system="truecolor", width=width)


@contextlib.contextmanager
def progress_bar(description: str = "computing") -> Iterator[Callable[[int, int], None] | None]:
    """A progress reporter for ``attention(progress=...)``: a bar on stderr that appears once a run
    has taken a second, only when stderr is a terminal (never on stdout, never in a pipe)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    started = time.monotonic()
    bar: dict[str, Any] = {}

    def report(done: int, total: int) -> None:
        if "progress" not in bar:
            if time.monotonic() - started < 1.0:
                return
            bar["progress"] = Progress(TextColumn(description), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                       TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            bar["progress"].start()
            bar["task"] = bar["progress"].add_task(description, total=total)
        bar["progress"].update(bar["task"], completed=done)

    try:
        yield report
    finally:
        if "progress" in bar:
            bar["progress"].stop()
