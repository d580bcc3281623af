"""Words on the console: the shape flow, explanations, check's verdicts (of one step, or of every
step of a dump)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from attncli.view.console import PipeAwareConsole, measure_width
from attncli.view.numbers import explanation_sections

if TYPE_CHECKING:
    from attncli.explain import Explanation


def print_shapes(rows: list, console: Console | None = None) -> None:
    """The flow of shapes, one row per step: the step; its shape over its named axes; its formula
    over how it got that shape (two lines each, so the table fits an 80-column terminal)."""
    console = console or PipeAwareConsole()
    table = Table(title=Text("How the shapes flow", style="bold"), title_justify="left")
    # In a narrow terminal the shapes and formulas wrap between words; no column is dropped.
    table.add_column("step", no_wrap=True, min_width=max((len(row.step) for row in rows), default=4))
    table.add_column("shape and axes", overflow="fold")
    table.add_column("formula and how", overflow="fold")
    for row in rows:
        shape = Text(row.shape_text + "\n")
        shape.append("(" + ", ".join(row.axes) + ")", style="dim")
        what = Text(row.formula + "\n")
        what.append(row.how, style="dim")
        table.add_row(row.step, shape, what)
    if not console.is_terminal:
        console.width = max(console.width, measure_width(console, table))
    else:  # every column at least its longest word; the terminal wraps a wider table
        console.width = max(console.width, Measurement.get(console, console.options, table).minimum)
    console.print(table)


def print_sections(sections: list, console: Console | None = None) -> None:
    """Headings and their lines, as plain text (a formula's brackets are not markup)."""
    console = console or PipeAwareConsole()
    for section in sections:
        console.print(Text(section.heading, style="bold"))
        for line in section.lines:
            # one line of arithmetic stays one line: the terminal wraps it if it must
            console.print(Text("  " + line), soft_wrap=True)


def print_explanation(explained: Explanation, precision: int, console: Console | None = None) -> None:
    """One query's arithmetic, spelled out with ``precision`` decimals."""
    print_sections(explanation_sections(explained, precision), console)


def print_verdict(verdict, console: Console | None = None) -> None:
    """One line saying whether the numbers agree; on a mismatch, where, and the likely mistake(s)."""
    console = console or PipeAwareConsole()
    tolerance = f"atol {verdict.atol:g}, rtol {verdict.rtol:g}"
    layout = _layout_note(verdict.layout)
    if verdict.spread is not None:
        return _print_rounding_verdict(verdict, console, layout)
    if verdict.agree:
        console.print(Text(f"✓ {verdict.step} agrees with attncli: largest difference {verdict.max_error:.3g} "
                           f"({tolerance})", style="green"), soft_wrap=True)
        if layout:
            console.print(Text(f"  Yours {layout}."), soft_wrap=True)
        return
    _print_mismatch(verdict, Text(f"✗ {verdict.step} differs from attncli in {verdict.wrong_cells} of "
                                  f"{verdict.cells} cells ({tolerance}); {_where_it_differs(verdict)}", style="red"),
                    console, layout)


def _print_rounding_verdict(verdict, console: Console, layout: str) -> None:
    """check --dtype: within the dtype's rounding or beyond it, as a share of the tolerance it explains
    (5× a cell's spread, 3× the norm's: attncli.tolerance)."""
    dtype, share = verdict.spread.dtype, verdict.share
    if verdict.agree:
        console.print(Text(f"✓ {verdict.step} agrees with attncli within {dtype} rounding (largest difference "
                           f"{verdict.max_error:.3g}, {verdict.cell_share:.2g} of the tolerance; the "
                           f"difference's norm {verdict.norm_share:.2g} of its own)", style="green"), soft_wrap=True)
        if layout:
            console.print(Text(f"  Yours {layout}."), soft_wrap=True)
        return
    which = "the difference's norm" if verdict.norm_share > verdict.cell_share else "largest difference"
    times = ("infinitely many times" if not math.isfinite(share) else
             f"{share:.2g}×" if share < 100 else f"{share:,.0f}×")
    cells = f"in {verdict.wrong_cells} of {verdict.cells} cells" if verdict.wrong_cells else "as a whole"
    _print_mismatch(verdict, Text(f"✗ {verdict.step} differs from attncli {cells}, beyond what {dtype} rounding "
                                  f"explains ({which} {times} the tolerance); {_where_it_differs(verdict)}",
                                  style="red"), console, layout)


def _print_mismatch(verdict, first: Text, console: Console, layout: str) -> None:
    lines = [first]
    if layout:
        lines.append(Text(f"  Yours {layout}."))
    if not verdict.mistakes:
        lines.append(Text("No known mistake gives these numbers, nor any pair of them tried."))
    for number, mistake in enumerate(verdict.mistakes):
        lead = "Likely mistake" if number == 0 else "Or, giving the same numbers here"
        lead += " (two at once)" if mistake.parts else ""
        lines.append(Text(f"{lead}: {mistake.name}: {mistake.means}.", style="bold" if number == 0 else ""))
        lines.append(Text(f"  Fix: {mistake.fix}."))
    for line in lines:
        console.print(line, soft_wrap=True)


def print_steps_verdict(checked, console: Console | None = None) -> None:
    """One line per step (✓ or ✗, its name, the largest difference, how yours was read), then the
    first step that differs as print_verdict shows one step, its likely mistakes with it."""
    console = console or PipeAwareConsole()
    width = max(len(verdict.step) for verdict in checked.verdicts)
    for verdict in checked.verdicts:
        mark, style = ("✓", "green") if verdict.agree else ("✗", "red")
        layout = _layout_note(verdict.layout)
        line = Text(f"{mark} {verdict.step:<{width}}  largest difference {verdict.max_error:.3g}", style=style)
        if verdict.spread is not None:
            line.append(f", {verdict.share:.2g} of the {verdict.spread.dtype} tolerance", style=style)
        if verdict.not_finite is not None:
            line.append(f", {verdict.not_finite.cells} NaN or ±∞", style=style)
        if layout:
            line.append(f"  ({layout})")
        console.print(line, soft_wrap=True)
    first = next((verdict for verdict in checked.verdicts if verdict.step == checked.first_divergence), None)
    if first is None:
        last = checked.verdicts[-1]
        within = f"within {last.spread.dtype} rounding" if last.spread is not None else \
            f"atol {last.atol:g}, rtol {last.rtol:g}"
        console.print(Text(f"Every step agrees with attncli ({within}).", style="green"), soft_wrap=True)
        return
    before = "the steps before it agree" if first is not checked.verdicts[0] else "the first step given"
    console.print(Text(f"First divergence: {first.step} ({before}): look there.", style="bold"), soft_wrap=True)
    print_verdict(first, console)


def _layout_note(layout) -> str:
    """How yours was read, when that needs saying: another layout than attncli's, or a shape that
    fits several (read as attncli's); an empty string otherwise."""
    if layout is None or (layout.own and not layout.also):
        return ""
    if not layout.own:
        return f"read as {layout.read_as}, attncli's is {layout.attncli}"
    return f"read as attncli's {layout.attncli}; the shape also fits {' and '.join(layout.also)}"


def _cell(index: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, index)) + "]"


def _where_it_differs(verdict) -> str:
    """Where yours is NaN or ±∞ (said as such), and the largest difference of the other cells."""
    largest = f"{verdict.max_error:.6g} at {_cell(verdict.worst)}: yours {verdict.yours!r}, attncli {verdict.attncli!r}"
    broken = verdict.not_finite
    if broken is None:
        return f"largest difference {largest}"
    value = "NaN" if math.isnan(broken.yours) else "+∞" if broken.yours > 0 else "−∞"
    said = f"yours is {value} at {_cell(broken.index)} where attncli has {broken.attncli!r}"
    if broken.cells > 1:
        said += f" ({broken.cells} cells are NaN or ±∞ in yours)"
    if verdict.wrong_cells > broken.cells:
        said += f"; elsewhere the largest difference is {largest}"
    return said
