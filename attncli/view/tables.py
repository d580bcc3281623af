"""Rich tables for a Trace and for the demo walk-through."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
from rich.color import Color, blend_rgb
from rich.color_triplet import ColorTriplet
from rich.columns import Columns
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.style import Style
from rich.table import Table
from rich.text import Text

from attncli.numbers import counted, table_rules
from attncli.precision import REDUCED, UNIT_ROUNDOFF
from attncli.trace import Step, Trace
from attncli.view.console import PipeAwareConsole, measure_width, print_blocks
from attncli.view.labels import labelled, shown_token, table_labels
from attncli.view.numbers import format_number

if TYPE_CHECKING:
    from attncli.demo import MaskGrid, Section

# matplotlib's viridis at 0, 1/9, …, 1: perceptually uniform, dark purple to yellow; weights are
# coloured by interpolating between these stops (a straight blend of the two ends is grey in the middle).
VIRIDIS = tuple(ColorTriplet(int(code[0:2], 16), int(code[2:4], 16), int(code[4:6], 16)) for code in (
    "440154", "482878", "3e4989", "31688e", "26828e", "1f9e89", "35b779", "6ece58", "b5de2b", "fde725"))
# A masked cell of the coloured heatmap: a neutral grey, outside the palette; a NaN cell (a query
# that sees no key, with masked_rows "nan"): a red, outside it too.
HEAT_MASKED = ColorTriplet(62, 62, 62)
HEAT_NAN = ColorTriplet(200, 30, 30)  # red in a 16-colour terminal too
AXIS_WORD = {  # an axis as a table's corner names it
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
# A masked weight is not a tiny one: its cell shows this, and a note under the tables says so.
MASKED = "·"
MASKED_NOTE = f"{MASKED} a masked key (its logit is −∞): weight 0"
# A query that sees no key has NaN weights when masked_rows is "nan": its cells say so.
NAN = "nan"
NAN_NOTE = 'a query that sees no key (masked_rows "nan"): its weights are NaN'
# A step of a large batch with many heads would be hundreds of tables: show this many of them.
MAX_TABLES = 8
# Spaces between small tables shown side by side.
SIDE_BY_SIDE_GAP = 3


def heat_colour(weight: float) -> ColorTriplet:
    """The viridis colour of a weight in [0, 1] (clipped): interpolated between the nearest two stops."""
    position = float(min(max(weight, 0.0), 1.0)) * (len(VIRIDIS) - 1)
    lower = min(int(position), len(VIRIDIS) - 2)
    return blend_rgb(VIRIDIS[lower], VIRIDIS[lower + 1], position - lower)


def _relative_luminance(colour: ColorTriplet) -> float:
    linear = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in colour]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def heat_style(weight: float) -> Style:
    """Background shade for a weight in [0, 1] (viridis, as the heatmap), with the text colour of
    most legible on it: white on the dark end and the middle, black on the light end (past a relative
    luminance of 0.408, as seaborn annotates viridis heatmaps: weights from about 0.7)."""
    background = heat_colour(weight)
    return Style(
        bgcolor=Color.from_triplet(background),
        color="black" if _relative_luminance(background) > 0.408 else "white",
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
    masked: np.ndarray | None = None,
    labels: tuple[tuple[str, ...] | None, tuple[str, ...] | None] = (None, None),
) -> Table:
    integers, noise = table_rules(array, weights=heatmap)
    row_labels, column_labels = labels
    table = Table()
    # tokens beside the indices, in Text: a token's [brackets] are not markup
    table.add_column(corner, justify="right" if row_labels is None else "left", style="dim", no_wrap=True)
    for column in columns:
        header = "…" if column is None else Text(str(column) if column_labels is None else
                                                  f"{column}\n{shown_token(column_labels[column])}")
        table.add_column(header, justify="right", no_wrap=True)
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
            if masked is not None and masked[row, column]:
                cells.append(NAN if np.isnan(value) else MASKED)
                continue
            text = format_number(0.0 if abs(value) < noise else value, precision, integers)
            cells.append(Text(text, style=heat_style(value)) if heatmap and np.isfinite(value) else text)
        table.add_row(Text(labelled(row, row_labels)), *cells)
    return table


def matrix_block(
    console: Console,
    array: np.ndarray,
    title: str,
    corner: str,
    precision: int,
    heatmap: bool = False,
    full: bool = False,
    masked: np.ndarray | None = None,
    labels: tuple[tuple[str, ...] | None, tuple[str, ...] | None] = (None, None),
) -> RenderableType:
    """The title line, then a table of the 2-D ``array`` (rows, columns) labelled by index, and
    by token where ``labels`` (the rows', the columns') gives them.

    Unless ``full``, a large array's middle is elided, and in a terminal the columns are cut
    further until the table fits its width.
    """
    n_rows, n_columns = array.shape
    rows = list(range(n_rows)) if full else visible_indices(n_rows, MAX_ROWS, EDGE_ROWS)
    return _titled(console, title, n_rows, rows, n_columns, full,
                   lambda columns: _table(array, rows, columns, corner, precision, heatmap, masked, labels))


def _titled(console: Console, title: str, n_rows: int, rows: list[int | None], n_columns: int, full: bool,
            build: Callable[[list[int | None]], Table]) -> Group:
    """The title line, then the table ``build`` makes of the columns to show: unless ``full``, a
    large table's middle columns are elided, and in a terminal further until it fits its width;
    then a note when anything was elided."""
    attempts = [(MAX_COLUMNS, EDGE_COLUMNS)] + [(2 * edge + 1, edge) for edge in range(EDGE_COLUMNS - 1, 0, -1)]
    for limit, edge in attempts:
        columns = list(range(n_columns)) if full else visible_indices(n_columns, limit, edge)
        table = build(columns)
        if full or not console.is_terminal or measure_width(console, table) <= console.width:
            break
    else:
        table.padding = (0, 0)  # still too wide: cells without their padding, before the terminal wraps
    parts: list[RenderableType] = [Text(title, style="bold")]  # Text: a formula's [..] is not markup
    parts.append(table)
    if len(rows) < n_rows or len(columns) < n_columns:
        parts.append(Text(ELIDED_NOTE, style="dim"))
    return Group(*parts)


class HeatLegend:
    """A one-line key to the shading: colours where there is colour; with ``shades`` (the heatmap
    view) the shade characters where there is not; nothing for plain tables, whose numbers speak.
    With ``masked``, a line saying how a masked cell looks (grey in the coloured heatmap, else MASKED);
    with ``nan``, how a NaN row looks (red in the coloured heatmap, else ``nan_mark``); with
    ``row_sums`` (the smallest and largest of rows that sum to less than 1), a line saying so."""

    def __init__(self, shades: bool = False, masked: bool = False, nan: bool = False, nan_mark: str = NAN,
                 row_sums: tuple[float, float] | None = None):
        self.shades = shades
        self.masked = masked
        self.nan = nan
        self.nan_mark = nan_mark
        self.row_sums = row_sums

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        colour = console.color_system is not None and not console.no_color
        if not colour:
            if self.shades:
                yield Text("shades: ' ' < 0.2 ≤ ░ < 0.4 ≤ ▒ < 0.6 ≤ ▓ < 0.8 ≤ █", style="dim")
        else:
            legend = Text("weight  ")
            for weight in (0.0, 0.25, 0.5, 0.75, 1.0):
                legend.append(f" {weight:g} ", style=heat_style(weight))
            yield legend
        if self.masked and colour and self.shades:
            yield _swatch(HEAT_MASKED, MASKED_NOTE.removeprefix(MASKED).strip() + " (grey)")
        elif self.masked:
            yield Text(MASKED_NOTE, style="dim")
        if self.nan and colour and self.shades:
            yield _swatch(HEAT_NAN, f"{NAN_NOTE} (red)")
        elif self.nan:
            yield Text(f"{self.nan_mark}{':' if len(self.nan_mark) > 1 else ''} {NAN_NOTE}", style="dim")
        if self.row_sums is not None:
            low, high = (format_number(value, 4) for value in self.row_sums)
            yield Text(f"rows sum to less than 1 (the sink takes the rest): {low} to {high}", style="dim")


def _swatch(colour: ColorTriplet, words: str) -> Text:
    line = Text()
    line.append("   ", style=Style(bgcolor=Color.from_triplet(colour)))
    line.append(" " + words, style="dim")
    return line


def weights_legend(trace: Trace, step: Step, shades: bool = False, nan_mark: str = NAN) -> HeatLegend:
    """The legend under a step's weights: masked cells, NaN rows and rows that sum to less than 1
    (a sink's), as this step has them."""
    masked, nan = masked_cells(trace, step), np.isnan(step.array)
    return HeatLegend(shades=shades, masked=masked is not None and bool((masked & ~nan).any()), nan=bool(nan.any()),
                      nan_mark=nan_mark, row_sums=short_rows(step.array, trace.meta.dtype))


def short_rows(weights: np.ndarray, dtype: str = "") -> tuple[float, float] | None:
    """The smallest and largest sum of the rows of ``weights`` that sum to less than 1 by more than
    rounding (a sink took the rest), leaving out rows of no weight (a query that sees no key) and
    NaN rows; None when there is no such row. Weights rounded to float16 or bfloat16 (``dtype``)
    each carry up to one unit roundoff: their sum, up to one more."""
    sums = np.add.reduce(weights, axis=-1)
    slack = 4 * UNIT_ROUNDOFF[dtype] if dtype in REDUCED else 1e3 * np.finfo(weights.dtype).eps
    short = sums[(sums > 0) & (sums < 1 - slack)]
    return (float(short.min()), float(short.max())) if short.size else None


# the attention weights, shown as a heatmap: each head's, and their mean over the heads
WEIGHT_STEPS = ("softmax", "averaged")


def masked_cells(trace: Trace, step: Step) -> np.ndarray | None:
    """Where the softmax ``step`` is masked (its shape; True = masked), from the problem's mask the
    trace carries; None for another step (a masked logit shows −∞ itself) or no mask."""
    return trace.masked(step) if step.name in WEIGHT_STEPS else None


_POSITION_WORD = {"batch": "batch", "heads": "head", "kv_heads": "kv head", "q_len": "query"}


def table_position(axes: tuple[str, ...], index: tuple[int, ...]) -> str:
    """Which table of a step this is, e.g. ``batch 1, head 3`` or ``kv head 1`` (a key/value head
    of grouped-query attention); empty for a plain matrix."""
    return ", ".join(f"{_POSITION_WORD[axis]} {position}" for axis, position in zip(axes, index, strict=True))


def step_title(step: Step) -> str:
    """A step's title: its formula, after the step's name when the formula does not begin with it
    (``q_rotated: Q = RoPE(Q, …)``, so a reader knows what to ask --step for)."""
    named = step.formula.split(" = ", 1)[0].lower() == step.name
    return step.formula if named else f"{step.name}: {step.formula}"


def step_blocks(
    console: Console, step: Step, precision: int, full: bool = False, masked: np.ndarray | None = None,
    legend: HeatLegend | None = None, trace: Trace | None = None,
) -> Iterator[RenderableType]:
    """One titled table per batch item and head of ``step`` (formula, shape and position), with
    ``masked`` cells (step's shape) shown as such and the ``trace``'s tokens beside the indices;
    past MAX_TABLES of them, unless ``full``, a line saying how many more there are; then the
    ``legend`` (for the weights, or masked cells)."""
    heatmap = step.name in WEIGHT_STEPS
    leading_axes = step.axes[:-2]
    n_rows, n_columns = step.shape[-2:]
    corner = f"{AXIS_WORD.get(step.axes[-2], step.axes[-2])}╲{AXIS_WORD.get(step.axes[-1], step.axes[-1])}"
    positions = list(itertools.product(*(range(size) for size in step.shape[:-2])))
    shown = positions if full else positions[:MAX_TABLES]
    for index in shown:
        where = table_position(leading_axes, index)
        title = f"{step_title(step)}   {n_rows}×{n_columns}" + (f"   ({where})" if where else "")
        yield matrix_block(console, step.array[index], title, corner, precision, heatmap, full,
                           None if masked is None else masked[index],
                           (None, None) if trace is None else table_labels(trace, step, index))
    if len(shown) < len(positions):
        yield Text(
            f"… {len(positions) - len(shown)} more {step.name} tables ({' × '.join(leading_axes)}) not shown: "
            "--full shows them, --format json gives every value",
            style="dim",
        )
    if legend is not None:
        yield legend
    elif heatmap or masked is not None:
        yield HeatLegend(masked=masked is not None and bool(masked.any()))


def print_trace(
    trace: Trace, steps: list[Step], precision: int, full: bool = False, console: Console | None = None
) -> None:
    """Print the chosen steps of a trace as tables (to stdout unless ``console``), softmax as a heatmap;
    a step's tables (one per batch item and head) side by side when two or more fit the width."""
    console = console or PipeAwareConsole()
    for step in steps:
        for block in _step_renderables(console, trace, step, precision, full):
            print_blocks(console, [block])


def _step_renderables(console: Console, trace: Trace | None, step: Step, precision: int,
                      full: bool) -> list[RenderableType]:
    """A step's tables (side by side when two or more fit the width), then its notes and legend;
    masked cells and the weights' legend from ``trace`` (None: a step of no trace, an input)."""
    legend = weights_legend(trace, step) if trace is not None and step.name == "softmax" else None
    masked = None if trace is None else masked_cells(trace, step)
    blocks = list(step_blocks(console, step, precision, full, masked, legend, trace))
    tables = [block for block in blocks if isinstance(block, Group)]
    # one table is not measured: measuring one costs about as much as printing it
    widest = max(measure_width(console, table) for table in tables) if len(tables) > 1 else 0
    if len(tables) > 1 and 2 * widest + SIDE_BY_SIDE_GAP <= console.width:
        tables = [Columns(tables, padding=(0, SIDE_BY_SIDE_GAP))]
    return tables + [block for block in blocks if not isinstance(block, Group)]


def print_demo(sections: list[Section], warning: str, precision: int, console: Console | None = None,
               trace: Trace | None = None, full: bool = False) -> None:
    """Print the walk-through: per section a heading, its explanation, its formula, notes, mask grid
    and tables (a ``trace``'s steps as compute shows them, large ones elided unless ``full``); then
    the warning, if any."""
    console = console or PipeAwareConsole()
    blocks: list[RenderableType] = []
    for section in sections:
        blocks.append(Text(section.heading, style="bold underline"))
        blocks.append(Text(section.explanation))
        if section.formula:
            blocks.append(Text(section.formula, style="cyan"))
        blocks.extend(Text("• " + note.text) for note in section.notes)
        if section.grid is not None:
            blocks.extend(grid_blocks(console, section.grid, full))
        for step in section.steps:
            own = trace is not None and trace.steps.get(step.name) is step  # else an input: no mask
            blocks.extend(_step_renderables(console, trace if own else None, step, precision, full))
        for row in section.rows:
            tables = [
                matrix_block(console, matrix.array, f"{matrix.name}   {matrix.array.shape[0]}×{matrix.array.shape[1]}",
                             f"{matrix.row_label}╲{matrix.column_label}", precision, section.heatmap)
                for matrix in row
            ]
            # small matrices side by side, as many as the width allows
            blocks.append(Columns(tables, padding=(0, SIDE_BY_SIDE_GAP)) if len(tables) > 1 else tables[0])
        if section.heatmap:
            blocks.append(HeatLegend())
        blocks.append(Text(""))
    if warning:
        blocks.append(Text(warning, style="yellow"))
    print_blocks(console, blocks)


def grid_blocks(console: Console, grid: MaskGrid, full: bool = False) -> Iterator[RenderableType]:
    """The mask as a grid of marks, one table per batch item and head it tells apart (past
    MAX_TABLES, unless ``full``, a line saying how many more), then the legend: each mark, what it
    means and how many cells have it."""
    tables, n_rows, n_columns = grid.codes.shape
    shown = range(tables) if full else range(min(tables, MAX_TABLES))
    rows = list(range(n_rows)) if full else visible_indices(n_rows, MAX_ROWS, EDGE_ROWS)
    for index in shown:
        where = grid.titles[index]
        yield _titled(console, f"mask   {n_rows}×{n_columns}" + (f"   ({where})" if where else ""), n_rows, rows,
                      n_columns, full,
                      lambda columns, codes=grid.codes[index]: _grid_table(codes, grid.marks, rows, columns))
    if len(shown) < tables:
        yield Text(f"… {tables - len(shown)} more mask grids not shown: --full shows them", style="dim")
    for mark, words, cells in grid.legend:
        yield Text(f"{mark} {words}: {counted(cells, 'cell')}", style="dim")


def _grid_table(codes: np.ndarray, marks: str, rows: list[int | None], columns: list[int | None]) -> Table:
    table = Table(box=None, padding=(0, 1, 0, 0), show_edge=False)
    table.add_column("query╲key", justify="right", style="dim", no_wrap=True)
    for column in columns:
        table.add_column("…" if column is None else str(column), justify="center", no_wrap=True)
    for row in rows:
        cells = ["…" if row is None or column is None else marks[codes[row, column]] for column in columns]
        table.add_row("…" if row is None else str(row), *cells)
    return table


def trace_text(trace: Trace, steps: list[Step], precision: int, full: bool = False) -> str:
    """The tables as plain text without colour, for a .txt file."""
    buffer = io.StringIO()
    console = PipeAwareConsole(file=buffer, no_color=True, force_terminal=False)
    print_trace(trace, steps, precision, full, console=console)
    return buffer.getvalue()
