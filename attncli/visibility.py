"""Which keys each query may see: every rule that hides keys (a mask array, the causal rules, a
sliding window over positions, padding, the −∞ cells of a bias) held as rules, so that a block of
queries gets its part, and the keys it needs, without the whole q_len × k_len mask being made.

A long sequence with a window or a causal mask then costs memory for the block at hand only; the
whole mask is made only when asked for (``full``: the full trace, the views, ``explain``).
Pure numpy: no I/O.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from attncli.errors import ProblemError
from attncli.numbers import float_array, index_text, nested_shape, shape_text
from attncli.wording import closest

# the causal rules: query i sees keys j <= i + offset(q_len, k_len)
CAUSAL_OFFSETS = {"causal": lambda q_len, k_len: 0, "causal_lower_right": lambda q_len, k_len: k_len - q_len}
# rows of the mask made at a time when a whole-problem question (which queries see no key) is asked
_ROWS_AT_ONCE = 1024


class Visibility(NamedTuple):
    """The rules that hide keys, True = may attend when made into a mask.

    - ``array``: bool (batch | 1, heads | 1, q_len, k_len) or None: a mask array and the −∞ cells
      of a bias, folded into one;
    - ``causal_offset``: query i sees keys j <= i + offset (0: top-left causal, as SDPA's is_causal;
      k_len − q_len: lower-right), or None;
    - ``window``: the query at position p sees keys at positions p − window < j <= p, or None;
    - ``padding``: bool (batch | 1, k_len), False = a padded key, or None;
    - ``query_positions`` (q_len,) and ``key_positions`` (k_len,), int64.
    """

    array: np.ndarray | None
    causal_offset: int | None
    window: int | None
    padding: np.ndarray | None
    query_positions: np.ndarray
    key_positions: np.ndarray

    @property
    def q_len(self) -> int:
        return len(self.query_positions)

    @property
    def k_len(self) -> int:
        return len(self.key_positions)

    @property
    def extent(self) -> tuple[int, int]:
        """How many batch items and heads the mask tells apart (1: the same for all)."""
        arrays = [array for array in (self.array, self.padding) if array is not None]
        return max([1] + [array.shape[0] for array in arrays]), 1 if self.array is None else self.array.shape[1]

    def part(self, batch: int | None = None, head: int | None = None, start: int = 0, stop: int | None = None,
             k_start: int = 0, k_stop: int | None = None) -> np.ndarray:
        """The mask of queries ``start:stop`` over keys ``k_start:k_stop``, bool (batch | 1, heads | 1,
        rows, keys): of one batch item and head when given, of every one (or 1, when all are alike)
        when None."""
        stop = self.q_len if stop is None else stop
        k_stop = self.k_len if k_stop is None else k_stop
        shape = (stop - start, k_stop - k_start)
        allowed = np.ones(shape, dtype=bool)[None, None]
        if self.causal_offset is not None:
            allowed = allowed & (np.arange(k_start, k_stop)[None, :] <= np.arange(start, stop)[:, None]
                                 + self.causal_offset)[None, None]
        if self.window is not None:
            queries = self.query_positions[start:stop, None]
            keys = self.key_positions[None, k_start:k_stop]
            allowed = allowed & ((keys <= queries) & (keys > queries - self.window))[None, None]
        if self.padding is not None:
            padding = _pick(self.padding, 0, batch)[:, k_start:k_stop]
            allowed = allowed & padding[:, None, None, :]
        if self.array is not None:
            array = _pick(_pick(self.array, 0, batch), 1, head)
            allowed = allowed & array[:, :, start:stop, k_start:k_stop]
        return allowed

    def full(self) -> np.ndarray:
        """The whole mask, bool (batch | 1, heads | 1, q_len, k_len)."""
        return self.part()

    def key_span(self, batch: int, head: int, start: int, stop: int) -> tuple[int, int]:
        """The keys ``k_start:k_stop`` that queries ``start:stop`` of this batch item and head may
        see, from the first to the last the rules allow any of them. Causal rules and windows (over
        positions in order) give the span without making the mask; arrays and padding narrow it
        by reading their part. A span with no visible key is one (masked) key long."""
        k_start, k_stop = 0, self.k_len
        if self.causal_offset is not None:
            k_stop = min(k_stop, max(stop - 1 + self.causal_offset + 1, 0))
        ordered = self.window is not None and bool(np.all(np.diff(self.key_positions) >= 0))
        if ordered:
            queries = self.query_positions[start:stop]
            k_start = max(k_start, int(np.searchsorted(self.key_positions, queries.min() - self.window, "right")))
            k_stop = min(k_stop, int(np.searchsorted(self.key_positions, queries.max(), "right")))
        if k_start < k_stop and (self.array is not None or self.padding is not None
                                 or (self.window is not None and not ordered)):
            seen = np.flatnonzero(np.logical_or.reduce(self.part(batch, head, start, stop, k_start, k_stop)[0, 0],
                                                       axis=0))
            k_start, k_stop = (k_start + int(seen[0]), k_start + int(seen[-1]) + 1) if len(seen) else (k_start, k_start)
        if k_start >= k_stop:
            k_start = min(k_start, self.k_len - 1)
            return k_start, k_start + 1
        return k_start, k_stop

    def blind(self) -> np.ndarray:
        """Which queries see no key, bool (batch | 1, heads | 1, q_len), made a few rows at a time
        and over each rows' span of keys only."""
        batches, heads = self.extent
        blind = np.ones((batches, heads, self.q_len), dtype=bool)
        for batch in range(batches):
            for head in range(heads):
                for start in range(0, self.q_len, _ROWS_AT_ONCE):
                    stop = min(start + _ROWS_AT_ONCE, self.q_len)
                    k_start, k_stop = self.key_span(batch, head, start, stop)
                    rows = self.part(batch, head, start, stop, k_start, k_stop)[0, 0]
                    blind[batch, head, start:stop] = ~np.logical_or.reduce(rows, axis=1)
        return blind


def _pick(array: np.ndarray, axis: int, index: int | None) -> np.ndarray:
    """``array``'s item ``index`` along ``axis``, keeping the axis; all of it when None or when the
    axis has size 1 (the same for every item)."""
    if index is None or array.shape[axis] == 1:
        return array
    return array[(slice(None),) * axis + (slice(index, index + 1),)]


def visibility(array: np.ndarray | None, rule: str | None, window: int | None, padding: np.ndarray | None,
               bias: np.ndarray | None, query_positions: np.ndarray, key_positions: np.ndarray) -> Visibility | None:
    """The Visibility of a problem's rules: the mask ``array`` (bool (batch | 1, heads | 1, q_len,
    k_len)) or causal ``rule``, the ``window``, the ``padding`` (bool (batch | 1, k_len)) and the
    −∞ cells of the ``bias``; None when nothing hides a key."""
    if bias is not None and np.isneginf(bias).any():
        finite = ~np.isneginf(bias)
        array = finite if array is None else array & finite
    offset = CAUSAL_OFFSETS[rule](len(query_positions), len(key_positions)) if rule in CAUSAL_OFFSETS else None
    if array is None and offset is None and window is None and padding is None:
        return None
    return Visibility(array, offset, window, padding, query_positions, key_positions)


def parse_mask(value: Any, batch: int, heads: int, q_len: int, k_len: int) -> tuple[np.ndarray | None, str | None]:
    """The mask array as bool (batch | 1, heads | 1, q_len, k_len), True = may attend, and its rule:
    (None, "causal" | "causal_lower_right") for a rule, which visibility.py applies part by part."""
    if value is None:
        return None, None
    if isinstance(value, str):
        rule = value.strip().lower()
        if rule in CAUSAL_OFFSETS:
            # causal: top-left, as SDPA's is_causal; causal_lower_right: the last query sees every key
            return None, rule
        raise ProblemError(f"mask is {value!r}; use \"causal\", \"causal_lower_right\" or an array of 0/1 "
                           f"(1 = may attend){closest(value, tuple(CAUSAL_OFFSETS))}", key="mask")
    shape = nested_shape("mask", value, [], (bool, int, float))
    if len(shape) not in (2, 3, 4):
        raise ProblemError(f"mask must be 2-D (q_len, k_len), 3-D (batch, q_len, k_len) or 4-D "
                           f"(batch, heads, q_len, k_len), got shape {shape_text(shape)}", {"mask": shape})
    array = float_array("mask", value)
    bad = np.argwhere((array != 0) & (array != 1))
    if len(bad):
        where = tuple(int(i) for i in bad[0])
        raise ProblemError(f"mask{index_text(list(where))} is {float(array[where]):g}; "
                           "a mask holds 0/1 or false/true (1 = may attend)", key="mask")
    allowed = array.astype(bool)
    allowed = allowed[None, None] if allowed.ndim == 2 else allowed[:, None] if allowed.ndim == 3 else allowed
    if not (allowed.shape[0] in (1, batch) and allowed.shape[1] in (1, heads) and allowed.shape[2:] == (q_len, k_len)):
        expected, names = {2: ((q_len, k_len), "q_len, k_len"), 3: ((batch, q_len, k_len), "batch, q_len, k_len"),
                           4: ((batch, heads, q_len, k_len), "batch, heads, q_len, k_len")}[len(shape)]
        raise ProblemError(f"mask has shape {shape_text(shape)} but the scores need {shape_text(expected)} ({names})",
                           {"mask": shape})
    return allowed, "array"
