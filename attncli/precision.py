"""Rounding to a framework's dtype: float16 and bfloat16 (and float32, for check's tolerance), done
on the bits in numpy, with no dependency.

A problem computed ``--dtype float16`` or ``bfloat16`` holds float32 arrays whose values are exactly
representable in that dtype: its inputs and weights rounded to it, every stage computed in float32
(each matrix product accumulated in float32, the softmax in float32, as Hugging Face's "upcast
attention to fp32") and its result rounded to the dtype (see ``Precision.round``, applied to every
stage's result by ``stages.Stage.make``). Rounding is to nearest, ties to even, as
``tensor.to(dtype)`` rounds; with a random generator it is stochastic (up or down with probability
given by the distance), which check uses to measure the spread rounding causes. Pure numpy.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# The dtypes computed by rounding float32 results (the others are numpy's own)
REDUCED = ("float16", "bfloat16")
# The dtypes a Precision rounds to; their values are held and computed in float32 (accumulation as
# frameworks do)
ROUNDED = (*REDUCED, "float32")
# The unit roundoff u: the largest relative error of one rounding to nearest
UNIT_ROUNDOFF = {"float64": 2.0 ** -53, "float32": 2.0 ** -24, "float16": 2.0 ** -11, "bfloat16": 2.0 ** -8}
LARGEST = {"float32": float(np.finfo(np.float32).max), "float16": 65504.0, "bfloat16": 3.3895313892515355e38}
# Bits of each dtype's significand (after the leading 1)
_KEPT = {"bfloat16": 7, "float16": 10}


class Precision(NamedTuple):
    """Computing in ``name`` (float16, bfloat16; float32 for check's spreads): arrays held in
    float32 and every stage's result rounded to ``name``, to nearest even, or stochastically with
    the generator ``rng``."""

    name: str
    rng: np.random.Generator | None = None

    def round(self, array: np.ndarray) -> np.ndarray:
        """``array`` (any float dtype) in the storage dtype, its values rounded to ``name``."""
        return rounded(array, self.name, self.rng)


def rounded(array: np.ndarray, dtype: str, rng: np.random.Generator | None = None) -> np.ndarray:
    """``array``'s values rounded to ``dtype`` (float16, bfloat16 or float32), held in float32: to
    nearest, ties to even (from float64 too, in one rounding), or stochastically with ``rng``.
    Float32 computes in float32 itself: there ``rng`` moves each value by one ulp up, down or not at
    all (a rounding that could have gone the other way). A value beyond the dtype's range becomes
    ±∞, as a framework's cast makes it; NaN stays NaN."""
    values = np.asarray(array)
    if values.dtype != np.float64:
        values = values.astype(np.float32, copy=False)
    with np.errstate(over="ignore"):
        if dtype == "float32":
            values = values.astype(np.float32)
            if rng is None:
                return values
            step = rng.integers(-1, 2, size=values.shape).astype(np.float32)
            return np.nextafter(values, np.copysign(np.float32(np.inf), step), out=values.copy(),
                                where=(step != 0) & np.isfinite(values))
        if rng is None and dtype == "float16":  # numpy's own conversion rounds to nearest even
            return values.astype(np.float16).astype(np.float32)
    wide = values.dtype == np.float64
    unsigned = np.uint64 if wide else np.uint32
    dropped = (52 if wide else 23) - _KEPT[dtype]  # the significand's bits below the dtype's
    bits = values.view(unsigned)
    one, low = unsigned(1), unsigned((1 << dropped) - 1)
    if rng is None:  # to nearest even: add half an ulp less one, and the kept last bit
        carry = ((bits >> unsigned(dropped)) & one) + (low >> one)
    else:  # stochastic: add a random part of an ulp; what passes a whole ulp rounds the magnitude up
        carry = rng.integers(0, 1 << dropped, size=bits.shape, dtype=unsigned)
    with np.errstate(over="ignore"):
        # exact in float32 for the dtype's normal numbers; its subnormals and what is beyond its
        # range are rounded by float16's conversion, or (bfloat16) once more below
        result = ((bits + carry) & ~low).view(values.dtype).astype(np.float16 if dtype == "float16" else np.float32)
        result = result.astype(np.float32)
    if wide and dtype == "bfloat16":
        result = rounded(result, dtype)  # a float32 subnormal: to bfloat16's own; else unchanged
    # ±∞ stays itself (its low bits are 0); NaN's bits could carry into ∞: keep it NaN
    nan = np.isnan(values)
    if nan.any():
        result = np.where(nan, np.float32(np.nan), result)
    return result


def largest_text(dtype: np.dtype | str) -> str:
    """The largest finite value of ``dtype`` (a reduced one's included) as messages write it: 6.6e4."""
    largest = LARGEST[dtype] if dtype in LARGEST else float(np.finfo(dtype).max)
    return f"{largest:.1e}".replace("e+0", "e").replace("e+", "e")
