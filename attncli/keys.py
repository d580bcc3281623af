"""Names shared by every layer. No numpy: the CLI's --help and option checks use it without paying
numpy's import. (Message wording lives in attncli.wording.)"""

from __future__ import annotations

import math

from attncli.wording import closest, describe, head_counts  # noqa: F401  (moved; re-exported for now)

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
