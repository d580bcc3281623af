"""Numbers as a document gives them: nested lists (or numeric arrays) checked for their shape and
made into finite float64 arrays, with the words a message uses for a cell, a shape and a count.

Shared by the readers, the PyTorch-name translation and the validator; it imports none of them.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from attncli.errors import ProblemError
from attncli.wording import describe

# The largest float64; an integer beyond it cannot become one.
_FLOAT64_MAX = 1.7976931348623157e308


def counted(number: int, noun: str) -> str:
    """``3 rows``, ``1 row``."""
    return f"{number} {noun}" + ("" if number == 1 else "s")


def table_rules(array: np.ndarray, weights: bool) -> tuple[bool, float]:
    """How a table (the terminal's, the page's) writes ``array``'s numbers: whether as whole
    numbers, without decimals (the classic example's inputs read best so; ``weights`` never), and
    the size below which a value is rounding left-over (0.1 + 0.2 - 0.3), written 0."""
    finite = array[np.isfinite(array)]
    if not finite.size:
        return False, 0.0
    largest = float(np.abs(finite).max())
    return not weights and bool(np.array_equal(finite, np.round(finite))) and largest < 1e9, 1e-12 * largest


def format_number(value: float, precision: int, integers: bool = False) -> str:
    """``value`` with ``precision`` decimals (as a whole number when ``integers``); a masked −∞
    as ``−∞`` (U+2212, as in the formulas); in scientific notation when ``precision`` decimals
    (2 or more) would show a nonzero value as 0, or for magnitudes of 1e9 and beyond."""
    if math.isinf(value) and value < 0:
        return "−∞"
    if integers:
        return str(int(value))
    magnitude = abs(value)
    hidden = value != 0 and precision >= 2 and magnitude < 0.5 * 10.0**-precision
    if hidden or magnitude >= 1e9:
        return f"{value:.{max(precision - 1, 1)}e}"
    return f"{value:.{precision}f}"


def index_text(path: list[int]) -> str:
    """A cell's place after its matrix's name: ``[0][2]``."""
    return "".join(f"[{i}]" for i in path)


def shape_text(shape: tuple[int, ...]) -> str:
    """``2×3``, or ``a single number`` for no axes."""
    return "×".join(map(str, shape)) if shape else "a single number"


def nested_shape(name: str, value: Any, path: list[int], allowed: tuple[type, ...]) -> tuple[int, ...]:
    """Shape of a nested list (or numpy array, as NPY/CSV readers give) whose leaves are of the
    allowed types; raise on anything else."""
    if isinstance(value, np.ndarray):
        kinds = "biuf" if bool in allowed else "iuf"
        if value.dtype.kind not in kinds:
            raise ProblemError(f"{name}{index_text(path)} holds values of type {value.dtype}, expected numbers",
                               key=name)
        return value.shape
    if len(path) > 4:
        # no matrix has more than 4 axes: stop before a deeply nested document exhausts the stack
        raise ProblemError(f"{name} is nested more than 4 deep; a matrix has at most 4 axes", key=name)
    if not isinstance(value, list):
        # subclasses count (numpy's float64 is a float), except bool posing as an int
        if isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool)):
            return ()
        raise ProblemError(f"{name}{index_text(path)} is {describe(value)}, expected a number", key=name)
    if not value:
        return (0,)
    # A row of plain numbers, or a matrix of such rows, is the common case: check it in one
    # pass, not one call per cell or row. Anything else takes the slow path that says what is wrong.
    if set(map(type, value)) <= set(allowed):
        return (len(value),)
    if all(type(row) is list for row in value) and len({len(row) for row in value}) == 1 and value[0]:
        if set(map(type, itertools.chain.from_iterable(value))) <= set(allowed):
            return (len(value), len(value[0]))
    shapes = [nested_shape(name, item, path + [i], allowed) for i, item in enumerate(value)]
    first = shapes[0]
    for i, shape in enumerate(shapes):
        if shape != first:
            if len(shape) == 1 and len(first) == 1:
                where = f"{name}{index_text(path)}" if path else name
                raise ProblemError(
                    f"{where}: row {i} has {counted(shape[0], 'value')} but row 0 has {first[0]}", key=name
                )
            raise ProblemError(
                f"{name}{index_text(path + [i])} has shape {shape_text(shape)} "
                f"but {name}{index_text(path + [0])} has {shape_text(first)}",
                key=name,
            )
    return (len(value),) + first


def as_array(name: str, value: Any, ranks: tuple[int, ...]) -> np.ndarray:
    """``value`` (nested lists of numbers, or a numeric array) as a finite float64 array with as
    many axes as one of ``ranks``; ProblemError naming ``name`` and the cell otherwise."""
    shape = nested_shape(name, value, [], (int, float))
    if len(shape) not in ranks:
        wanted = " or ".join(f"{rank}-D" for rank in ranks)
        got = "a single number" if not shape else f"a {len(shape)}-D array of shape {shape_text(shape)}"
        raise ProblemError(f"{name} must be a {wanted} array, got {got}", {name: shape})
    if 0 in shape:
        raise ProblemError(f"{name} is empty (shape {shape_text(shape)})", {name: shape})
    array = float_array(name, value)
    refuse_non_finite(name, array)
    return array


def float_array(name: str, value: list) -> np.ndarray:
    """``value`` (a validated nested list or array) as float64; an integer too large for float64 is an error."""
    if isinstance(value, np.ndarray):
        return value.astype(np.float64)
    try:
        return np.array(value, dtype=np.float64)
    except OverflowError:
        path = _find_huge_integer(value, [])
        raise ProblemError(
            f"{name}{index_text(path or [])} is an integer too large for float64 (beyond ±1.8e308)", key=name
        ) from None


def _find_huge_integer(value: Any, path: list[int]) -> list[int] | None:
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _find_huge_integer(item, path + [i])
            if found is not None:
                return found
        return None
    return path if isinstance(value, int) and abs(value) > _FLOAT64_MAX else None


def refuse_non_finite(name: str, array: np.ndarray) -> None:
    """ProblemError naming the first NaN or infinite cell of ``array``, if it has one."""
    # a finite sum means every cell is finite: one reduction in the usual case (a sum too large
    # for float64 just takes the cell-by-cell test)
    with np.errstate(over="ignore", invalid="ignore"):  # ±1e308 + ∓1e308 overflows to inf − inf
        if math.isfinite(np.add.reduce(array, axis=None)):
            return
    bad = np.argwhere(~np.isfinite(array))
    if len(bad):
        where = tuple(int(i) for i in bad[0])
        what = "NaN" if np.isnan(array[where]) else "infinite (beyond ±1.8e308)"
        raise ProblemError(f"{name}{index_text(list(where))} is {what}; every value must be a finite number",
                           key=name)


RANKS = {1: "1-D (heads,)", 2: "2-D (q_len, k_len)", 3: "3-D (batch, q_len, k_len)",
         4: "4-D (batch, heads, q_len, k_len)"}
MINUS_INFINITY = 'a finite number or −∞ (null or "-inf" in JSON, -inf in NPY)'


def with_minus_infinity(key: str, value: Any, ranks: tuple[int, ...]) -> np.ndarray:
    """A float array in which a cell may be −∞ (null or "-inf" in JSON, -inf in NPY); no NaN, no +∞."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf":
            raise ProblemError(f"{key} holds values of type {value.dtype}, expected numbers", key=key)
        shape = value.shape
    else:
        _refuse_other_strings(key, value, [])
        shape = nested_shape(key, _replace_minus_infinity(value), [], (int, float))
    if len(shape) not in ranks:
        names = [RANKS[rank] for rank in ranks]
        raise ProblemError(f"{key} must be a {', '.join(names[:-1]) + ' or ' if len(names) > 1 else ''}{names[-1]} "
                           f"array, got {f'a {len(shape)}-D array of shape ' if shape else ''}{shape_text(shape)}",
                           {key: shape})
    array = value.astype(np.float64) if isinstance(value, np.ndarray) else np.array(
        _replace_minus_infinity(value), dtype=np.float64)
    if 0 in array.shape:
        raise ProblemError(f"{key} is empty (shape {shape_text(array.shape)})", {key: array.shape})
    bad = np.argwhere(np.isnan(array) | np.isposinf(array))
    if len(bad):
        where = [int(i) for i in bad[0]]
        raise ProblemError(f"{key}{index_text(where)} is {'NaN' if np.isnan(array[tuple(where)]) else '+∞'}; each "
                           f"value is {MINUS_INFINITY}", key=key)
    return array


def _refuse_other_strings(key: str, value: Any, path: list[int]) -> None:
    """The first string cell that is not "-inf", named with what a cell may be."""
    for i, item in enumerate(value if isinstance(value, list) and len(path) < 5 else []):
        if isinstance(item, str) and item.strip().lower() not in ("-inf", "-infinity"):
            raise ProblemError(f"{key}{index_text([*path, i])} is {describe(item)}; each value is {MINUS_INFINITY}",
                               key=key)
        _refuse_other_strings(key, item, [*path, i])


def _replace_minus_infinity(value: Any) -> Any:
    if isinstance(value, list):
        return [_replace_minus_infinity(item) for item in value]
    if value is None or (isinstance(value, str) and value.strip().lower() in ("-inf", "-infinity")):
        return -math.inf
    return value


def true_or_false(key: str, value: Any, meaning: str) -> bool:
    """``value`` as a bool: true/false, a numpy bool, or an NPZ's 0-d bool array; otherwise a
    ProblemError naming ``key``: "{key} is …; it is {meaning}"."""
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind == "b":
        value = bool(value)
    if not isinstance(value, bool | np.bool_):
        raise ProblemError(f"{key} is {describe(value)}; it is {meaning}", key=key)
    return bool(value)
