"""Names shared by every layer, and the wording of values in messages. No numpy: the CLI's
--help and option checks use it without paying numpy's import."""

from __future__ import annotations

import difflib
import math
from typing import Any

MATRIX_KEYS = (
    "x", "context",
    "w_query", "w_key", "w_value",
    "b_query", "b_key", "b_value",
    "w_out", "b_out",
)
# The arrays a file can hold: the matrices and a mask array.
FILE_KEYS = MATRIX_KEYS + ("mask",)
OPTION_KEYS = ("heads", "scale", "mask")
# "about" lets a document describe itself (samples do); it is never computed with.
KNOWN_KEYS = MATRIX_KEYS + OPTION_KEYS + ("about",)
REQUIRED_KEYS = ("x", "w_query", "w_key", "w_value")
STEP_NAMES = ("q", "k", "v", "scores", "logits", "softmax", "concat", "output")
# check's default tolerances: |yours - attncli| <= ATOL + RTOL·|attncli|, as numpy.isclose
DEFAULT_ATOL = 1e-6
DEFAULT_RTOL = 1e-5


def closest(word: Any, choices: tuple[str, ...], cutoff: float = 0.5) -> str:
    """``; did you mean 'CHOICE'?`` for the choice most like ``word``, or an empty string."""
    matches = difflib.get_close_matches(str(word).lower(), choices, n=1, cutoff=cutoff)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def describe(value: Any) -> str:
    """A JSON value as a message names it: null, true, the string '…', an object, an array, 3."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"the string {shown!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def head_counts(width: int, wanted: int | None = None, most: int = 8) -> str:
    """The head counts that split ``width`` evenly, for a message: ``1, 2, 4``; for a width with
    many, the ``most`` nearest to ``wanted``. Divisors are found up to √width, so a huge width is quick."""
    small = [number for number in range(1, math.isqrt(width) + 1) if width % number == 0]
    counts = sorted(set(small + [width // number for number in small]))
    if len(counts) > most:
        counts = sorted(sorted(counts, key=lambda count: abs(count - (wanted or 1)))[:most])
    return ", ".join(map(str, counts))


def format_number(value: float, precision: int, integers: bool = False) -> str:
    """``value`` with ``precision`` decimals (as a whole number when ``integers``); a masked −∞
    as ``-∞``; in scientific notation when ``precision`` decimals (2 or more) would show a
    nonzero value as 0, or for magnitudes of 1e9 and beyond."""
    if math.isinf(value) and value < 0:
        return "-∞"
    if integers:
        return str(int(value))
    magnitude = abs(value)
    hidden = value != 0 and precision >= 2 and magnitude < 0.5 * 10.0**-precision
    if hidden or magnitude >= 1e9:
        return f"{value:.{max(precision - 1, 1)}e}"
    return f"{value:.{precision}f}"
