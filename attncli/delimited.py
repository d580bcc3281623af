"""Matrices from delimited text (CSV, TSV), including the long form attncli writes for a step of
more than two axes: a header naming the leading axes, ``row`` and the column indices
(``batch,heads,row,0,1,2``), then one line per row, its indices first. The registry's CSV and TSV
readers (attncli.readers) call ``parse_csv``."""

from __future__ import annotations

import csv
import itertools
import math

import numpy as np

from attncli.errors import ProblemError
from attncli.sources import decode_text


def parse_csv(data: bytes, delimiter: str | None = None, booleans: bool = False, masked: bool = False) -> np.ndarray:
    """A matrix from CSV/TSV text: ``delimiter`` or, when None, tab if the first row has one,
    else comma; but for a comma or None, white space when the first row has neither (numpy's
    ``savetxt``). A first row none of whose cells is a number (and that is not numbers in another
    of those separators) is a header and skipped; blank lines and ``#`` comments are ignored; with
    ``booleans``, true/false count as 1/0 (masks).
    Returns a 2-D float64 array (a single row stays 1×n); a long-form file (attncli's CSV of a
    step with leading axes) gives its array with those axes."""
    text = decode_text(data)
    given, delimiter = delimiter, delimiter or ","
    rows: list[list[float]] = []
    lines: list[int] = []  # the line number of each row
    first_line = 0
    leading = -1  # in a long-form file, how many leading axes its index columns give
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if first_line <= 0:  # a header's or the first row's
            delimiter = _delimiter(line, given)
        cells = _cells(line, delimiter)
        values = [_csv_number(cell, booleans) for cell in cells]
        if not rows and first_line == 0 and None in values:
            leading = _long_form_leading(cells)
            if leading >= 0 or (all(value is None for value in values) and not _numbers_somehow(line, booleans)):
                first_line = -1  # a header row: column names, not numbers; only the first row may be one
                continue
        if None in values:
            column = values.index(None) + 1
            raise ProblemError(f"line {number}, column {column}: {_cell_text(cells[column - 1])} is not a number")
        for column, value in enumerate(values, start=1):
            # a user's numbers (masked) may hold a masked logit (-inf) and a query's NaN row (nan)
            if not math.isfinite(value) and not (masked and (value == -math.inf or math.isnan(value))):
                cell = cells[column - 1].strip()
                raise ProblemError(f"line {number}, column {column}: {cell} is not a finite number")
        if rows and len(values) != len(rows[0]):
            raise ProblemError(
                f"line {number} has {len(values)} values but line {first_line} has {len(rows[0])}"
            )
        if not rows:
            first_line = number
        rows.append(values)  # type: ignore[arg-type]
        lines.append(number)
    if not rows:
        raise ProblemError("holds no numbers" if text.strip() else "is empty")
    table = np.array(rows, dtype=np.float64)
    return table if leading < 0 else _from_long_form(table, leading, lines)


_BOOLEANS = {"true": 1.0, "false": 0.0}
_WHITE_SPACE = " "  # as a delimiter: any run of spaces separates cells


def _delimiter(first: str, given: str | None) -> str:
    """The delimiter of a file whose first row is ``first``: a TSV's tab; else a tab (from
    standard input) or a comma the row has; else white space."""
    if given == "\t" or (given is None and "\t" in first):
        return "\t"
    return (given or ",") if "," in first or "\t" in first else _WHITE_SPACE


def _cells(line: str, delimiter: str) -> list[str]:
    if delimiter == _WHITE_SPACE:
        return next(csv.reader([line.strip()], delimiter=" ", skipinitialspace=True))
    return next(csv.reader([line], delimiter=delimiter))


def _numbers_somehow(line: str, booleans: bool) -> bool:
    """Whether ``line`` is a row of numbers with commas, tabs or spaces between them: never a header."""
    return any(all(_csv_number(cell, booleans) is not None for cell in _cells(line, delimiter))
               for delimiter in (",", "\t", _WHITE_SPACE))


def _csv_number(cell: str, booleans: bool = False) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return _BOOLEANS.get(cell.strip().lower()) if booleans else None


def _cell_text(cell: str) -> str:
    return "an empty cell" if not cell.strip() else repr(cell.strip())


def _long_form_leading(cells: list[str]) -> int:
    """How many leading axes a long-form header names (``batch,heads,row,0,1,2``: 2), or -1 when
    ``cells`` is not one: axis names, then ``row``, then the column indices 0, 1, … in order."""
    names = [cell.strip() for cell in cells]
    if "row" not in names:
        return -1
    at = names.index("row")
    columns = names[at + 1:]
    if not columns or columns != [str(index) for index in range(len(columns))]:
        return -1
    if any(_csv_number(name) is not None for name in names[:at]):
        return -1
    return at


def _from_long_form(table: np.ndarray, leading: int, lines: list[int]) -> np.ndarray:
    """The array a long-form table holds: its first ``leading`` + 1 columns index the rows (each
    row once, in order, as attncli writes them), the rest are the row's values."""
    width = leading + 1
    if table.shape[1] <= width:
        raise ProblemError(f"line {lines[0]} has no values after its {width} index columns")
    indices = table[:, :width]
    wrong = np.argwhere((indices < 0) | (indices != np.floor(indices)))
    if len(wrong):
        row, column = map(int, wrong[0])
        raise ProblemError(f"line {lines[row]}, column {column + 1}: {indices[row, column]:g} is not an index "
                           "(0, 1, 2, …)")
    sizes = tuple(int(size) + 1 for size in indices.max(axis=0))
    expected = itertools.product(*(range(size) for size in sizes))
    for line, row, wanted in zip(lines, indices.astype(int).tolist(), expected, strict=False):
        if tuple(row) != wanted:
            raise ProblemError(f"line {line}: expected the indices {','.join(map(str, wanted))}, got "
                               f"{','.join(map(str, row))} (a long-form file lists each row once, in order)")
    if len(lines) != math.prod(sizes):
        raise ProblemError(f"has {len(lines)} rows but its indices call for {math.prod(sizes)} "
                           f"({'×'.join(map(str, sizes))})")
    return table[:, width:].reshape(*sizes, table.shape[1] - width)
