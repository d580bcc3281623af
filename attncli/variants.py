"""Validate the keys of modern attention's variants: grouped-query heads, positions, rotary
embeddings, QK-norm, soft-capping, ALiBi, additive biases, padding, windows, sinks and the rule for
a query that sees no key. Each function takes the document's value and the sizes it must fit and
returns what the Problem holds, or raises ProblemError naming the key. Pure Python and numpy.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from attncli.errors import ProblemError
from attncli.numbers import as_array, counted, float_array, index_text, nested_shape, shape_text, with_minus_infinity
from attncli.wording import closest, describe, head_counts

ROPE_STYLES = ("neox", "gptj")
MASKED_ROWS = ("zero", "nan")
NORM_OVER = ("head", "all")


class Rope(NamedTuple):
    """Rotary embeddings: ``style`` "neox" (the two halves of the first ``rotary_dim`` dims, Hugging
    Face Llama's rotate_half) or "gptj" (adjacent pairs), and one frequency per pair, ``inv_freq``
    (rotary_dim / 2,), float64. ``theta`` is None when the frequencies were given.
    ``attention_factor`` multiplies cos and sin (YaRN's; 1 otherwise), as Hugging Face does."""

    style: str
    rotary_dim: int
    inv_freq: np.ndarray
    theta: float | None
    attention_factor: float = 1.0


class QKNorm(NamedTuple):
    """RMSNorm of Q and K: x / sqrt(mean(x²) + eps) · weight, over each head's ``head_dim`` values
    (``over`` "head") or over the whole projection (``over`` "all"). Weights (head_dim,) or
    (heads*head_dim,) for Q and (kv_heads*head_dim,) for K."""

    q_weight: np.ndarray
    k_weight: np.ndarray
    eps: float
    over: str


def fields(document: dict, batch: int, heads: int, kv_heads: int, head_dim: int, q_len: int, k_len: int
           ) -> dict[str, Any]:
    """The Problem's fields for the variants' keys of ``document``, each validated."""
    return {
        "positions": positions(document.get("positions"), q_len, k_len),
        "window": window(document.get("window")),
        "padding": padding(document.get("padding"), batch, k_len),
        "bias": bias(document.get("bias"), batch, heads, q_len, k_len),
        "rope": rope(document.get("rope"), head_dim),
        "qk_norm": qk_norm(document.get("qk_norm"), heads, kv_heads, head_dim),
        "softcap": softcap(document.get("softcap")),
        "alibi": alibi(document.get("alibi"), heads),
        "sinks": sinks(document.get("sinks"), heads),
        "masked_rows": masked_rows(document.get("masked_rows")),
    }


def whole_number(key: str, value: Any, least: int) -> int:
    """``value`` as an int of at least ``least``; ProblemError naming ``key`` otherwise."""
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if isinstance(value, bool) or not whole:
        raise ProblemError(f"{key} is {describe(value)}; it must be a whole number of at least {least}", key=key)
    if value < least:
        raise ProblemError(f"{key} is {int(value)}; it must be at least {least}", key=key)
    return int(value)


def positive_number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProblemError(f"{key} is {describe(value)}; it must be a positive number", key=key)
    number = float(value)
    if not math.isfinite(number) or number <= 0:
        raise ProblemError(f"{key} is {number:g}; it must be a positive finite number", key=key)
    return number


def heads(value: Any, per_head_counts: dict[str, int], grouped: bool = False) -> int:
    """The heads: ``value`` (a whole number of at least 1) or what per-head weights hold, which must
    agree. Per-head key/value weights may hold fewer (grouped-query attention, ``grouped`` or with
    the heads given, or a per-head w_query): then the query's count alone decides, and kv_heads
    checks theirs."""
    if grouped or value is not None or "w_query" in per_head_counts:
        per_head_counts = {key: count for key, count in per_head_counts.items() if key == "w_query"}
    if value is not None:
        whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        if isinstance(value, bool) or not whole:
            raise ProblemError(f"heads is {describe(value)}; it must be a whole number of at least 1")
        if value < 1:
            raise ProblemError(f"heads is {int(value)}; it must be at least 1")
        value = int(value)
    counts = set(per_head_counts.values())
    if len(counts) > 1:
        listed = ", ".join(f"{key} holds {count}" for key, count in per_head_counts.items())
        raise ProblemError(f"the per-head weights disagree on the number of heads: {listed}")
    if counts:
        (count,) = counts
        if value is not None and value != count:
            key = next(iter(per_head_counts))
            raise ProblemError(f"heads is {value} but {key} holds {counted(count, 'head')}")
        return count
    return 1 if value is None else value


def kv_heads(value: Any, heads: int, per_head_counts: dict[str, int]) -> int:
    """Key/value heads: a divisor of ``heads``, ``heads`` by default. Per-head key/value weights
    (kv_heads, d, head_dim) must hold that many: fewer than the query's only with kv_heads given,
    so a slip in a weight's shape is not taken for grouped-query attention."""
    held = {key: count for key, count in per_head_counts.items() if key != "w_query"}
    if value is None:
        for key, count in held.items():
            if count != heads:
                raise ProblemError(f"{key} holds {counted(count, 'head')} but w_query holds {heads}; for "
                                   f"grouped-query attention give kv_heads: {count}", key=key)
        return heads
    count = whole_number("kv_heads", value, 1)
    if heads % count:
        raise ProblemError(f"kv_heads is {count}, which does not divide heads {heads} "
                           f"(kv_heads that would: {head_counts(heads, count)})", key="kv_heads")
    for key, held_count in held.items():
        if held_count != count:
            raise ProblemError(f"kv_heads is {count} but {key} holds {counted(held_count, 'head')}; a per-head "
                               f"{key} is (kv_heads, d_model, head_dim), so it needs {count}", key=key)
    return count


def positions(value: Any, q_len: int, k_len: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Each query's and key's position, int64 (q_len,) and (k_len,); None when not given (key j
    at j, query i at i + k_len - q_len)."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - {"query", "key"}:
        raise ProblemError('positions must be an object {"query": [...], "key": [...]} of whole numbers'
                           + (f", not {describe(value)}" if not isinstance(value, dict) else
                              f"; unknown key {sorted(set(value) - {'query', 'key'})[0]!r}"), key="positions")
    query_default, key_default = default_positions(q_len, k_len)
    found = []
    for name, length, default in (("query", q_len, query_default), ("key", k_len, key_default)):
        if value.get(name) is None:
            found.append(default)
            continue
        array = as_array(f"positions.{name}", value[name], (1,))
        if array.shape[0] != length:
            raise ProblemError(f"positions.{name} has {counted(array.shape[0], 'value')} but there are "
                               f"{length} {'queries' if name == 'query' else 'keys'}", key="positions")
        fraction = np.flatnonzero(array != np.round(array))
        if len(fraction) or np.abs(array).max() > 2**53:
            where = int(fraction[0]) if len(fraction) else int(np.argmax(np.abs(array)))
            rule = "positions are whole numbers" if len(fraction) else "positions must lie within ±2^53"
            raise ProblemError(f"positions.{name}[{where}] is {array[where]:g}; {rule}", key="positions")
        found.append(array.astype(np.int64))
    return found[0], found[1]


def default_positions(q_len: int, k_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Key j at position j; query i at i + k_len - q_len (the last query beside the last key, as
    with a KV cache; for self-attention both are 0…L−1)."""
    return np.arange(k_len - q_len, k_len, dtype=np.int64), np.arange(k_len, dtype=np.int64)


def rope(value: Any, head_dim: int) -> Rope | None:
    if value is None or value is False:
        return None
    if isinstance(value, str):
        value = {"style": value}
    if not isinstance(value, dict):
        raise ProblemError(f'rope is {describe(value)}; use "neox", "gptj" or {{"style": …, "theta": …, '
                           '"rotary_dim": …}', key="rope")
    known = ("style", "theta", "rotary_dim", "inv_freq", "attention_factor")
    unknown = set(value) - set(known)
    if unknown:
        name = sorted(unknown)[0]
        raise ProblemError(f"rope has an unknown key {name!r}{closest(name, known)}", key="rope")
    style = value.get("style", "neox")
    if not isinstance(style, str) or style.strip().lower() not in ROPE_STYLES:
        hint = closest(style, ROPE_STYLES) if isinstance(style, str) else ""
        raise ProblemError(f'rope.style is {describe(style) if not isinstance(style, str) else repr(style)}; '
                           f'use "neox" (halves, Llama) or "gptj" (adjacent pairs){hint}', key="rope")
    rotary_dim = value.get("rotary_dim")
    factor = 1.0 if value.get("attention_factor") is None else positive_number("rope.attention_factor",
                                                                               value["attention_factor"])
    if head_dim < 2:
        raise ProblemError(f"rope rotates pairs of dims but head_dim is {head_dim}: it needs at least 2", key="rope")
    if rotary_dim is None and head_dim % 2:
        raise ProblemError(f"rope rotates pairs of dims but head_dim is {head_dim}, odd; give rope.rotary_dim, "
                           f"an even number up to {head_dim - 1}, to rotate only the first dims", key="rope")
    rotary_dim = head_dim if rotary_dim is None else whole_number("rope.rotary_dim", rotary_dim, 2)
    if rotary_dim % 2 or rotary_dim > head_dim:
        raise ProblemError(f"rope.rotary_dim is {rotary_dim}; it must be even and at most head_dim {head_dim}",
                           key="rope")
    if value.get("inv_freq") is not None:
        if value.get("theta") is not None:
            raise ProblemError("rope gives both theta and inv_freq; give one (theta makes the frequencies "
                               "theta^(-2i/rotary_dim), inv_freq lists them)", key="rope")
        inv_freq = as_array("rope.inv_freq", value["inv_freq"], (1,))
        if inv_freq.shape[0] != rotary_dim // 2:
            raise ProblemError(f"rope.inv_freq has {counted(inv_freq.shape[0], 'value')} but rotary_dim "
                               f"{rotary_dim} has {rotary_dim // 2} pairs", key="rope")
        return Rope(style.strip().lower(), rotary_dim, inv_freq, None, factor)
    theta = 10000.0 if value.get("theta") is None else positive_number("rope.theta", value["theta"])
    # theta^(-2i/rotary_dim), as Hugging Face's default rotary initialisation (in float64 here)
    inv_freq = 1.0 / theta ** (np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim)
    return Rope(style.strip().lower(), rotary_dim, inv_freq, theta, factor)


def qk_norm(value: Any, heads: int, kv_heads: int, head_dim: int) -> QKNorm | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ProblemError(f'qk_norm is {describe(value)}; use {{"q_weight": [...], "k_weight": [...], '
                           '"eps": 1e-6, "over": "head"}', key="qk_norm")
    allowed = ("q_weight", "k_weight", "eps", "over")
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise ProblemError(f"qk_norm has an unknown key {unknown[0]!r}{closest(unknown[0], allowed)}", key="qk_norm")
    over = value.get("over", "head")
    if over not in NORM_OVER:
        raise ProblemError(f'qk_norm.over is {repr(over) if isinstance(over, str) else describe(over)}; use "head" '
                           '(each head\'s head_dim values, Qwen3) or "all" (the whole projection, OLMo 2)'
                           f"{closest(over, NORM_OVER) if isinstance(over, str) else ''}", key="qk_norm")
    eps = 1e-6 if value.get("eps") is None else positive_number("qk_norm.eps", value["eps"])
    weights = []
    for name, count in (("q_weight", heads), ("k_weight", kv_heads)):
        width = head_dim if over == "head" else count * head_dim
        what = "head_dim" if over == "head" else f"{'heads' if name == 'q_weight' else 'kv_heads'}*head_dim"
        if value.get(name) is None:
            raise ProblemError(f"qk_norm has no {name}; give both q_weight and k_weight ({name} over \"{over}\": "
                               f"{what} = {counted(width, 'value')})", key="qk_norm")
        weight = as_array(f"qk_norm.{name}", value[name], (1,))
        if weight.shape[0] != width:
            raise ProblemError(f"qk_norm.{name} has {counted(weight.shape[0], 'value')} but over \"{over}\" "
                               f"it needs {what} = {width}", key="qk_norm")
        weights.append(weight)
    return QKNorm(weights[0], weights[1], eps, over)


def alibi(value: Any, heads: int) -> np.ndarray | None:
    """One slope per head (heads,): Press et al.'s for ``true``, or the list given."""
    if value is None or value is False:
        return None
    if value is True:
        return alibi_slopes(heads)
    if isinstance(value, (str, int, float, dict)):
        raise ProblemError(f"alibi is {describe(value)}; use true (Press et al.'s slopes) or a list of "
                           f"{counted(heads, 'slope')}, one per head", key="alibi")
    slopes = as_array("alibi", value, (1,))
    if slopes.shape[0] != heads:
        raise ProblemError(f"alibi has {counted(slopes.shape[0], 'slope')} but there are {heads} heads",
                           {"alibi": slopes.shape})
    return slopes


def alibi_slopes(heads: int) -> np.ndarray:
    """ALiBi's slopes (Press et al., get_slopes): for a power of two n, 2^(-8/n)·k for k = 1…n;
    otherwise those of the power of two below, then every other slope of the one above."""
    def powers(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(heads).is_integer():
        return np.array(powers(heads))
    below = 2 ** math.floor(math.log2(heads))
    return np.array(powers(below) + powers(2 * below)[0::2][: heads - below])


def bias(value: Any, batch: int, heads: int, q_len: int, k_len: int) -> np.ndarray | None:
    """The additive bias as float (batch | 1, heads | 1, q_len, k_len); −∞ cells allowed."""
    if value is None:
        return None
    array = with_minus_infinity("bias", value, (2, 3, 4))
    shape = array.shape
    full = array.reshape((1,) * (4 - array.ndim) + shape) if array.ndim != 3 else array[:, None]
    if not (full.shape[0] in (1, batch) and full.shape[1] in (1, heads) and full.shape[2:] == (q_len, k_len)):
        expected = {2: (q_len, k_len), 3: (batch, q_len, k_len), 4: (batch, heads, q_len, k_len)}[array.ndim]
        names = {2: "q_len, k_len", 3: "batch, q_len, k_len", 4: "batch, heads, q_len, k_len"}[array.ndim]
        raise ProblemError(f"bias has shape {shape_text(shape)} but the logits need {shape_text(expected)} ({names})",
                           {"bias": shape})
    return full


def sinks(value: Any, heads: int) -> np.ndarray | None:
    """One sink logit per head (heads,); −∞ (no sink) allowed."""
    if value is None:
        return None
    array = with_minus_infinity("sinks", value, (1,))
    if array.shape[0] != heads:
        raise ProblemError(f"sinks has {counted(array.shape[0], 'value')} but there are {heads} heads",
                           {"sinks": array.shape})
    return array


def padding(value: Any, batch: int, k_len: int) -> np.ndarray | None:
    """Which keys are real, bool (batch | 1, k_len), from 0/1 (1 = a real key)."""
    if value is None:
        return None
    # true/false too, as a mask may hold them (Hugging Face's attention_mask is often bool)
    shape = nested_shape("padding", value, [], (bool, int, float))
    if len(shape) not in (1, 2) or 0 in shape:
        raise ProblemError(f"padding must be a 1-D (k_len) or 2-D (batch, k_len) array of 0/1, got shape "
                           f"{shape_text(shape)}", {"padding": shape})
    array = float_array("padding", value)
    bad = np.argwhere((array != 0) & (array != 1))
    if len(bad):
        where = [int(i) for i in bad[0]]
        raise ProblemError(f"padding{index_text(where)} is {float(array[tuple(where)]):g}; padding holds 0/1 "
                           "(1 = a real key, 0 = padding)", key="padding")
    full = array[None] if array.ndim == 1 else array
    if full.shape[1] != k_len or full.shape[0] not in (1, batch):
        has = (f"{counted(array.shape[0], 'value')} but there are {counted(k_len, 'key')}" if array.ndim == 1 else
               f"shape {shape_text(array.shape)} but the keys need {k_len} or {batch}×{k_len}")
        raise ProblemError(f"padding has {has}; padding is (k_len,) or (batch, k_len), a 0/1 per key",
                           {"padding": array.shape})
    return full.astype(bool)


# Positions lie within ±2^53: a window wider than 2^54 sees as much as one of 2^54, and its
# arithmetic (position − window) stays inside int64.
_WIDEST_WINDOW = 2**54


def window(value: Any) -> int | None:
    return None if value is None else min(whole_number("window", value, 1), _WIDEST_WINDOW)


def softcap(value: Any) -> float | None:
    return None if value is None else positive_number("softcap", value)


def masked_rows(value: Any) -> str:
    if value is None:
        return "zero"
    value = value.strip().lower() if isinstance(value, str) else value
    if value not in MASKED_ROWS:
        hint = closest(value, MASKED_ROWS) if isinstance(value, str) else ""
        raise ProblemError(f'masked_rows is {value!r}; use "zero" (weights and output 0, as SDPA) or "nan" '
                           f"(as nn.MultiheadAttention){hint}", key="masked_rows")
    return value


SCALE_RULES = ("sqrt", "none")


def parse_scale(value: Any) -> str | float:
    """Return "sqrt", "none" or a positive finite float; a numeric string counts as a number."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in SCALE_RULES:
            return word
        try:
            number = float(word)
        except ValueError:
            hint = closest(word, SCALE_RULES)
            raise ProblemError(
                f"scale is {value!r}; use \"sqrt\" (1/sqrt(head_dim)), \"none\" (1) "
                f"or a positive number{hint}"
            ) from None
        if not math.isfinite(number) or number <= 0:
            raise ProblemError(f"scale is {value.strip()!r}; it must be a positive finite number")
        return number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProblemError(
            f"scale is {describe(value)}; use \"sqrt\", \"none\" or a positive number"
        )
    try:
        factor = float(value)
    except OverflowError:
        factor = math.inf
    if not math.isfinite(factor) or factor <= 0:
        shown = "a number beyond ±1.8e308" if math.isinf(factor) else repr(value)
        raise ProblemError(f"scale is {shown}; it must be a positive finite number")
    return factor
