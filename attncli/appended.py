"""Keys and values appended after the projections, as ``nn.MultiheadAttention`` makes them:
``add_bias_kv`` (a learnt key ``bias_k`` and value ``bias_v``, one more key) and ``add_zero_attn``
(a key and a value of zeros, one more key after that). Every query sees them: PyTorch pads its
masks with a visible column for each. They have no position, so rotary embeddings, ALiBi, windows
and causal rules (which are positional) are not taken with them. Pure numpy: no I/O.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from attncli.errors import ProblemError
from attncli.numbers import as_array, counted, shape_text, true_or_false

# the variant keys that need positions, which an appended key does not have
POSITIONAL = ("rope", "alibi", "window", "positions")


class Appended(NamedTuple):
    """The rows appended to K and V after their projection (and bias), in order: ``keys``
    (count, kv_heads*head_dim), ``values`` (count, kv_heads*head_dim_v), and ``names`` ("bias_k"
    for add_bias_kv's row, "zero" for add_zero_attn's)."""

    keys: np.ndarray
    values: np.ndarray
    names: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.names)


def appended_rows(document: dict, variants: dict[str, Any], key_width: int, value_width: int,
                  mask_rule: str | None) -> Appended | None:
    """The appended rows of ``document``'s ``bias_k`` and ``bias_v`` ((width,), (1, width) or
    PyTorch's (1, 1, width)) and ``add_zero_attn`` (true/false), or None when it has neither;
    ``variants`` are the document's variant fields, validated (variants.fields)."""
    zero = _flag(document.get("add_zero_attn"))
    given = [name for name in ("bias_k", "bias_v") if document.get(name) is not None]
    if not given and not zero:
        return None
    if len(given) == 1:
        other = "bias_v" if given == ["bias_k"] else "bias_k"
        raise ProblemError(f"{given[0]} is given without {other}: add_bias_kv appends a key and a value, "
                           "give both", key=other)
    named = "bias_k/bias_v" if given else "add_zero_attn"
    for key in POSITIONAL:
        if variants.get(key) is not None:
            raise ProblemError(f"{key} is given with {named}: an appended key has no position "
                               "(nn.MultiheadAttention has neither)", key=key)
    if mask_rule not in (None, "array"):
        raise ProblemError(f"mask {mask_rule!r} is given with {named}: give the mask as an array (attn_mask), "
                           "which PyTorch pads with a visible column for each appended key", key="mask")
    keys, values, names = [], [], []
    if given:
        keys.append(_row(document, "bias_k", key_width, "w_key"))
        values.append(_row(document, "bias_v", value_width, "w_value"))
        names.append("bias_k")
    if zero:
        keys.append(np.zeros(key_width))
        values.append(np.zeros(value_width))
        names.append("zero")
    return Appended(np.stack(keys), np.stack(values), tuple(names))


def _flag(value: Any) -> bool:
    return value is not None and true_or_false("add_zero_attn", value, "true (a key and a value of zeros appended, "
                                               "as nn.MultiheadAttention(add_zero_attn=True)) or false")


def _row(document: dict, name: str, width: int, weight_name: str) -> np.ndarray:
    row = as_array(name, document[name], (1, 2, 3))
    if row.shape[:-1] != (1,) * (row.ndim - 1) or row.shape[-1] != width:
        raise ProblemError(f"{name} has shape {shape_text(row.shape)}; it is one row of "
                           f"{counted(width, 'value')} ({weight_name}'s columns), (1, 1, {width}) as PyTorch keeps it",
                           {name: row.shape})
    return row.reshape(width)


def extended_rules(mask: np.ndarray | None, fields: dict[str, Any], count: int) -> tuple[np.ndarray | None, dict]:
    """The mask array (…, k_len), the padding (…, k_len) and the bias (…, k_len) of the source's
    keys, each with ``count`` columns more for the appended keys: visible, real, and 0 added."""

    def padded(array: np.ndarray | None, fill: Any) -> np.ndarray | None:
        if array is None:
            return None
        extra = np.full(array.shape[:-1] + (count,), fill, dtype=array.dtype)
        return np.concatenate([array, extra], axis=-1)

    changed = {**fields, "padding": padded(fields.get("padding"), True), "bias": padded(fields.get("bias"), 0.0)}
    return padded(mask, True), changed


def joined(projected: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``projected`` (batch, k_len, width) with ``rows`` (count, width) after its keys, for every
    batch item: (batch, k_len + count, width)."""
    batch = projected.shape[0]
    return np.concatenate([projected, np.broadcast_to(rows.astype(projected.dtype), (batch, *rows.shape))], axis=1)
