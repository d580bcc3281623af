"""The page (``--export-html``): one self-contained HTML file of a problem's trace, to open from disk.

The shape flow, then every step as tables (per batch item and head, elided as the terminal
elides them, the elided region named), scores, logits and weights as viridis heatmaps with their
numbers as text, the tokens on both axes; a head selector; and each shown cell of a step over
queries and keys reveals its arithmetic on hover, click, or Enter/Space: the sections ``explain``
prints for that query and key, and the key's own part (its exponential, weight and weighted value
row). Every number of the arithmetic is computed here, in Python, by ``explain_query`` (the
stages' own functions); the page's script only shows them (no arithmetic in JavaScript).

Pure string building: every token, label and formula is HTML-escaped, the data for the script is
JSON with ``<`` escaped; the CSS and the script are package data (``page.css``, ``page.js``)
inlined, so the page loads nothing.
"""

from __future__ import annotations

import html
import itertools
import json
from importlib import resources
from typing import TYPE_CHECKING

import numpy as np

from attncli.explain import explain_query
from attncli.numbers import format_number, table_rules
from attncli.shapes import ShapeRow, shape_flow
from attncli.sizes import sizes_of
from attncli.stages import STAGE, STEP_AXES
from attncli.trace import Step, Trace
from attncli.view.labels import shown_token, table_labels
from attncli.view.numbers import Section, explanation_sections, key_section
from attncli.view.tables import (
    AXIS_WORD,
    EDGE_COLUMNS,
    EDGE_ROWS,
    MAX_COLUMNS,
    MAX_ROWS,
    MAX_TABLES,
    VIRIDIS,
    WEIGHT_STEPS,
    heat_style,
    masked_cells,
    table_position,
    visible_indices,
)

if TYPE_CHECKING:
    from attncli.problem import Problem

# Steps over queries and keys, per head: coloured, and each cell explained.
EXPLAINED = ("scores", "logits", "capped", "biased", "softmax")
# Steps coloured from their table's smallest to its largest value; the weights from 0 to 1.
SPREAD = EXPLAINED[:-1]
# the terminal's words, and the input tables' (which the terminal's compute does not show)
_AXIS_WORD = {**AXIS_WORD, "context_len": "context", "d_model": "dim", "d_context": "dim"}
_AXIS_WORDS = {"query": "queries", "key": "keys", "dim": "dims", "context": "context rows"}
_DATA_AXES = {"batch": "batch", "heads": "head", "kv_heads": "kv-head"}
MASKED_TEXT = "·"
TOKEN_WIDTH = 16


def asset(name: str) -> str:
    """A file shipped beside this module (the page's CSS or script)."""
    return resources.files("attncli.view").joinpath(name).read_text(encoding="utf-8")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def trace_page(problem: Problem, trace: Trace, steps: list[Step], precision: int = 4, full: bool = False,
               title: str = "attncli") -> str:
    """The page of ``steps`` of ``trace`` (computed from ``problem``): the shape flow, the input x,
    every step's tables (all of them when ``full``) and the arithmetic of each shown cell of the
    steps over queries and keys, numbers with ``precision`` decimals."""
    flow = {row.step: row for row in shape_flow(sizes_of(problem))}
    page = _Page(problem, trace, precision, full)
    inputs = [Step("x", "x (the input)", problem.x if problem.batched else problem.x[0],
                   (("batch",) if problem.batched else ()) + ("q_len", "d_model"))]
    sections = [page.step_section(step, flow.get(step.name)) for step in inputs + steps]
    data = json.dumps({"group": problem.groups, "rows": page.explained()},
                      ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")
    return "".join([
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f"<title>{esc(title)}</title>\n<style>\n{asset('page.css')}</style>\n</head>\n<body>\n",
        f'<header><h1>{esc(title)}</h1>\n<p class="about">{esc(_about(problem, trace))}</p>\n',
        page.selector(), "</header>\n<main>\n", _flow_section(list(flow.values())), _legend(), *sections,
        "</main>\n", _ARITHMETIC, '<pre id="page-errors" role="alert" hidden></pre>\n',
        f'<script type="application/json" id="page-data">{data}</script>\n',
        f"<script>\n{asset('page.js')}</script>\n</body>\n</html>\n",
    ])


_ARITHMETIC = """<aside id="arithmetic" aria-live="polite" aria-labelledby="arithmetic-title">
<h2 id="arithmetic-title">Arithmetic</h2>
<p id="arithmetic-hint">Hover or click a cell of the scores, logits or weights (or focus it with Tab, move with \
the arrow keys, and press Enter or Space) to see how its number was made: what <code>attncli explain</code> \
prints for that query and key.</p>
<div id="arithmetic-body"></div>
</aside>
"""


def _about(problem: Problem, trace: Trace) -> str:
    meta = trace.meta
    parts = [f"{problem.heads} head{'s' if problem.heads > 1 else ''}",
             f"{problem.x.shape[1]} queries", f"{problem.k_len} keys", f"head_dim {meta.head_dim}",
             f"scale {format_number(meta.scale_factor, 4)} ({meta.scale_rule})", f"dtype {meta.dtype}"]
    if problem.batched:
        parts.insert(0, f"batch {problem.x.shape[0]}")
    if meta.kv_heads is not None:
        parts.insert(1, f"{meta.kv_heads} key/value heads")
    if meta.mask is not None:
        parts.append(f"mask {meta.mask}")
    return "Attention, step by step: " + ", ".join(parts) + "."


def _flow_section(rows: list[ShapeRow]) -> str:
    lines = ['<section id="flow"><h2>How the shapes flow</h2>\n<table class="flow">\n<thead><tr>'
             '<th scope="col">step</th><th scope="col">shape (axes)</th><th scope="col">formula</th>'
             '<th scope="col">how</th></tr></thead>\n<tbody>\n']
    for row in rows:
        shape = row.shape_text
        lines.append(f'<tr><th scope="row"><a href="#step-{esc(row.step)}">{esc(row.step)}</a></th>'
                     f'<td>{shape} <span class="axes">({esc(", ".join(row.axes))})</span></td>'
                     f"<td><code>{esc(row.formula)}</code></td><td>{esc(row.how)}</td></tr>\n")
    lines.append("</tbody></table></section>\n")
    return "".join(lines)


def _legend() -> str:
    stops = ", ".join(f"{colour.hex} {100 * n / (len(VIRIDIS) - 1):.0f}%"
                      for n, colour in enumerate(VIRIDIS))
    ticks = "".join(f"<span>{tick:g}</span>" for tick in (0, 0.25, 0.5, 0.75, 1))
    return (f'<section id="legend" aria-label="colour legend"><h2>Colours</h2>\n'
            f'<div class="ramp" role="img" aria-label="viridis: dark purple is low, yellow is high" '
            f'style="background: linear-gradient(to right, {stops})"></div>\n<div class="ticks">{ticks}</div>\n'
            "<p>Weights (softmax) are coloured from 0 (dark purple) to 1 (yellow), by viridis, a palette that "
            "stays ordered for colour-blind readers and in grey; scores and logits from their table's smallest "
            "to its largest value (named under each table). Every cell also shows its number. "
            f'<span class="cell masked">{MASKED_TEXT}</span> or <span class="cell masked">−∞</span> a masked key '
            '(weight 0); <span class="cell nan">nan</span> a query that sees no key (masked_rows "nan").</p>'
            "</section>\n")


class _Page:
    """The tables of one trace, and the cells whose arithmetic they show."""

    def __init__(self, problem: Problem, trace: Trace, precision: int, full: bool):
        self.problem, self.trace, self.precision, self.full = problem, trace, precision, full
        self.cells: dict[tuple[int, int, int], set[int]] = {}  # (batch, head, query) -> keys shown

    def selector(self) -> str:
        """The head selector: one option per batch item and head the weights' tables show."""
        shape = (self.problem.x.shape[0] if self.problem.batched else 1, self.problem.heads)
        positions = list(itertools.product(*map(range, shape)))
        positions = positions if self.full else positions[:MAX_TABLES]
        if len(positions) < 2:
            return ""
        options = "".join(f'<option value="{b},{h}">'
                          f'{esc(", ".join(filter(None, (f"batch {b}" if self.problem.batched else "", f"head {h}"))))}'
                          "</option>" for b, h in positions)
        more = "" if len(positions) == shape[0] * shape[1] else (
            f'<span class="note">(the first {len(positions)} of {shape[0] * shape[1]}: --full shows every one)</span>')
        return (f'<p class="chooser"><label for="head">Show</label> <select id="head">{options}'
                f'<option value="all">every head</option></select> {more}</p>\n')

    def step_section(self, step: Step, row: ShapeRow | None) -> str:
        parts = [f'<section class="step" id="step-{esc(step.name)}"><h2>{esc(step.name)}</h2>\n']
        if step.name in STAGE:
            parts.append(f'<p class="said">{esc(STAGE[step.name].said)}</p>\n')
        if row is not None:
            shape = row.shape_text
            parts.append(f'<p class="formula"><code>{esc(row.formula)}</code>   {shape} '
                         f'<span class="axes">({esc(", ".join(row.axes))})</span>: {esc(row.how)}</p>\n')
        leading = step.axes[:-2]
        positions = list(itertools.product(*(range(size) for size in step.shape[:-2])))
        shown = positions if self.full else positions[:MAX_TABLES]
        masked = masked_cells(self.trace, step) if step.name in STEP_AXES else None
        for index in shown:
            parts.append(self.table(step, index, None if masked is None else masked[index]))
        if len(shown) < len(positions):
            parts.append(f'<p class="note">… {len(positions) - len(shown)} more {esc(step.name)} tables '
                         f"({esc(' × '.join(leading))}) not shown: --full shows them, --format json gives every "
                         "value</p>\n")
        parts.append("</section>\n")
        return "".join(parts)

    def table(self, step: Step, index: tuple[int, ...], masked: np.ndarray | None) -> str:
        array = step.array[index]
        where = dict(zip(step.axes[:-2], index, strict=True))
        n_rows, n_columns = array.shape
        rows = list(range(n_rows)) if self.full else visible_indices(n_rows, MAX_ROWS, EDGE_ROWS)
        columns = list(range(n_columns)) if self.full else visible_indices(n_columns, MAX_COLUMNS, EDGE_COLUMNS)
        row_word, column_word = (_AXIS_WORD.get(axis, axis) for axis in step.axes[-2:])
        row_labels, column_labels = table_labels(self.trace, step, index) if step.name in STEP_AXES else (None, None)
        explained = step.name in EXPLAINED
        batch, head = where.get("batch", 0), where.get("heads", 0)
        finite = array[np.isfinite(array)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        coloured = step.name in WEIGHT_STEPS or step.name in SPREAD
        rules = table_rules(array, weights=step.name in WEIGHT_STEPS)  # as the terminal's tables write them
        integers = rules[0]
        position = table_position(step.axes[:-2], index)
        attributes = "".join(f' data-{_DATA_AXES[axis]}="{value}"' for axis, value in where.items())
        caption = f"{step.formula}   {n_rows}×{n_columns}" + (f"   ({position})" if position else "")
        out = [f'<figure class="matrix"{attributes}><figcaption>{esc(caption)}</figcaption>\n<div class="scroll">'
               f'<table class="{"heat" if coloured else "plain"}" data-step="{esc(step.name)}">\n<thead><tr>'
               f'<th scope="col" class="corner">{esc(row_word)} ╲ {esc(column_word)}</th>']
        for column in columns:
            out.append(self._gap_header(columns, column_word) if column is None else
                       f'<th scope="col">{column}{_token(column_labels, column)}</th>')
        out.append("</tr></thead>\n<tbody>\n")
        for row in rows:
            if row is None:
                gap = _gap(rows, row_word)
                out.append(f'<tr class="gap"><th scope="row" title="{gap}">…</th>'
                           + f'<td class="gap" title="{gap}">…</td>' * len(columns) + "</tr>\n")
                continue
            out.append(f'<tr><th scope="row">{row}{_token(row_labels, row)}</th>')
            for column in columns:
                if column is None:
                    out.append('<td class="gap">…</td>')
                    continue
                value = float(array[row, column])
                cell_is_masked = masked is not None and bool(masked[row, column])
                out.append(self._cell(value, cell_is_masked, coloured and step.name in SPREAD, (low, high),
                                      rules, coloured))
                if explained:
                    self.cells.setdefault((batch, head, row), set()).add(column)
                    out[-1] = out[-1].replace("<td", f'<td tabindex="0" data-e="{batch},{head},{row},{column}"', 1)
            out.append("</tr>\n")
        out.append("</tbody></table></div>\n")
        if step.name in SPREAD and finite.size:
            out.append(f'<p class="note">colour: {esc(format_number(low, self.precision, integers))} (dark purple) '
                       f"to {esc(format_number(high, self.precision, integers))} (yellow), this table's smallest and "
                       "largest</p>\n")
        if len(rows) < n_rows or len(columns) < n_columns:
            elided = " and ".join(filter(None, (_gap(rows, row_word), _gap(columns, column_word))))
            out.append(f'<p class="note elided">{elided} elided: --full shows every value, --format json gives '
                       "them all</p>\n")
        out.append("</figure>\n")
        return "".join(out)

    def _gap_header(self, columns: list[int | None], word: str) -> str:
        return f'<th scope="col" class="gap" title="{_gap(columns, word)}">…</th>'

    def _cell(self, value: float, masked: bool, spread: bool, bounds: tuple[float, float],
              rules: tuple[bool, float], coloured: bool) -> str:
        if np.isnan(value):
            return '<td class="nan">nan</td>'
        if masked or np.isneginf(value):
            return f'<td class="masked">{"−∞" if np.isneginf(value) else MASKED_TEXT}</td>'
        integers, noise = rules
        text = esc(format_number(0.0 if abs(value) < noise else value, self.precision, integers))
        if not coloured:
            return f"<td>{text}</td>"
        low, high = bounds
        shade = value if not spread else (value - low) / (high - low) if high > low else 0.5
        style = heat_style(shade)
        background = style.bgcolor.triplet.hex if style.bgcolor and style.bgcolor.triplet else "#000000"
        return f'<td style="background:{background};color:{style.color.name}">{text}</td>'

    def explained(self) -> dict[str, dict]:
        """The arithmetic of every cell shown, by "batch,head,query": the row's distinct sections
        ``s`` (heading, lines) and, per key ``c``, the indices of its sections in order."""
        rows = {}
        for (batch, head, query), keys in sorted(self.cells.items()):
            sections: dict[Section, int] = {}
            cells = {}
            for key in sorted(keys):
                explained = explain_query(self.problem, self.trace, query, key, head, batch)
                own = [*explanation_sections(explained, self.precision),
                       key_section(explained, key, self.precision)]
                cells[str(key)] = [sections.setdefault(section, len(sections)) for section in own]
            rows[f"{batch},{head},{query}"] = {"s": [[heading, list(lines)] for heading, lines in sections],
                                               "c": cells}
        return rows


def _token(labels: tuple[str, ...] | None, index: int) -> str:
    if labels is None:
        return ""
    token = labels[index]
    return f' <span class="tok" title="{esc(shown_token(token, 200))}">{esc(shown_token(token, TOKEN_WIDTH))}</span>'


def _gap(indices: list[int | None], word: str) -> str:
    """The elided run of ``indices`` named, e.g. ``queries 10 to 501``; empty when none is."""
    if None not in indices:
        return ""
    at = indices.index(None)
    first, last = indices[at - 1] + 1, indices[at + 1] - 1
    return f"{_AXIS_WORDS.get(word, word + 's')} {first} to {last}"
