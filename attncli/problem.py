"""Turn a problem document (parsed JSON: dicts, lists, numbers) into a validated Problem.

Everything a user can get wrong about shapes, types and options is caught here,
so the pipeline can assume consistent float64 arrays. Pure Python and numpy: no I/O.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from attncli import torchnames, variants
from attncli.appended import Appended, appended_rows, extended_rules
from attncli.errors import ProblemError, option
from attncli.keys import KNOWN_KEYS, REQUIRED_KEYS, REQUIRED_ROLES, VARIANT_KEYS
from attncli.numbers import as_array, counted, index_text
from attncli.precision import ROUNDED, Precision, largest_text
from attncli.tokens import Tokens, labels_of
from attncli.variants import QKNorm, Rope, parse_scale
from attncli.visibility import Visibility, parse_mask, visibility
from attncli.wording import closest, describe, head_counts

VARIANT_KEY_SET = frozenset(VARIANT_KEYS)

# no __eq__ or __repr__ made (arrays cannot be compared as a whole): defining the class costs less, on every run
@dataclass(frozen=True, eq=False, repr=False)
class Problem:
    """Validated arrays and options for one attention computation.

    Arrays are float64 and always carry a batch axis here, whether or not the
    document had one (``batched`` says which); per-head weights are already
    laid side by side, head h in columns ``h*head_dim:(h+1)*head_dim``.

    - ``x``: (batch, q_len, d_model); ``context``: (batch, k_len, d_context),
      the very same array as ``x`` for self-attention.
    - ``w_query``, ``w_key``: (d_model | d_context, heads*head_dim);
      ``w_value``: (d_context, heads*head_dim_v); biases (width,) or None.
    - ``w_out``: (heads*head_dim_v, d_out) or None; ``b_out``: (d_out,) or None.
    - ``visibility``: every rule that hides keys (the ``mask`` key, the window, the padding, −∞
      bias cells), or None; ``mask`` (a property) is the whole mask it makes, bool (batch | 1,
      heads | 1, q_len, k_len), True = may attend.
    - ``scale``: "sqrt", "none" or a positive float that multiplies the scores.
    - ``mask_rule``: the ``mask`` key's rule: None, "causal", "causal_lower_right" or "array".
    - ``kv_heads``: key/value heads (``heads`` unless grouped); w_key, w_value are kv_heads wide.
    - ``positions``: (query (q_len,), key (k_len,)) int64, or None for the default alignment.
    - ``rope``, ``qk_norm``: see variants.Rope and variants.QKNorm; ``softcap`` c or None;
      ``alibi`` slopes (heads,) or None; ``bias`` float (batch | 1, heads | 1, q_len, k_len) or
      None; ``sinks`` (heads,) or None; ``window`` W or None; ``padding`` bool (batch | 1, k_len)
      or None (both already in ``mask``); ``masked_rows`` "zero" or "nan"; ``appended``: rows
      after K's and V's (nn.MultiheadAttention's add_bias_kv, add_zero_attn), see appended.py.
    - ``precision``: None (computed in the arrays' dtype), or the reduced dtype (float16, bfloat16)
      whose rounding every stage's result gets; the arrays are then float32, see precision.py.
    """

    x: np.ndarray
    context: np.ndarray
    w_query: np.ndarray
    w_key: np.ndarray
    w_value: np.ndarray
    b_query: np.ndarray | None
    b_key: np.ndarray | None
    b_value: np.ndarray | None
    w_out: np.ndarray | None
    b_out: np.ndarray | None
    heads: int
    scale: str | float
    visibility: Visibility | None
    mask_rule: str | None
    batched: bool
    cross: bool
    kv_heads: int = 0  # 0: as many as heads
    positions: tuple[np.ndarray, np.ndarray] | None = None
    rope: Rope | None = None
    qk_norm: QKNorm | None = None
    softcap: float | None = None
    alibi: np.ndarray | None = None
    bias: np.ndarray | None = None
    sinks: np.ndarray | None = None
    window: int | None = None
    padding: np.ndarray | None = None
    masked_rows: str = "zero"
    appended: Appended | None = None
    seq_first: bool = False  # the document's 3-D inputs were (seq, batch, E): its output is given so
    notes: tuple[str, ...] = ()  # warnings about how the document was read
    precision: Precision | None = None  # float16 or bfloat16: every stage's result rounded (precision.py)
    tokens: Tokens | None = None  # the rows' labels (tokens.py): never computed with

    def __post_init__(self) -> None:
        if not self.kv_heads:
            object.__setattr__(self, "kv_heads", self.heads)

    @functools.cached_property
    def mask(self) -> np.ndarray | None:
        """The whole mask, bool (batch | 1, heads | 1, q_len, k_len), True = may attend, or None;
        made when first asked for (the blocked path asks ``visibility`` for its parts instead)."""
        return None if self.visibility is None else self.visibility.full()

    @functools.cached_property
    def query_positions(self) -> np.ndarray:
        """Each query's position (q_len,): given, or i + k_len - q_len."""
        return self.positions[0] if self.positions else variants.default_positions(*self._lengths)[0]

    @functools.cached_property
    def key_positions(self) -> np.ndarray:
        """Each key's position (k_len,): given, or j."""
        return self.positions[1] if self.positions else variants.default_positions(*self._lengths)[1]

    @property
    def k_len(self) -> int:
        """Keys: the source's rows, and the rows appended after the projections (add_bias_kv…)."""
        return self.context.shape[1] + (0 if self.appended is None else self.appended.count)

    @property
    def score_cells(self) -> int:
        """How many scores the problem has: batch × heads × q_len × k_len."""
        return self.x.shape[0] * self.heads * self.x.shape[1] * self.k_len

    @property
    def _lengths(self) -> tuple[int, int]:
        return self.x.shape[1], self.k_len

    @property
    def groups(self) -> int:
        """Query heads per key/value head: query head h reads key/value head h // groups."""
        return self.heads // self.kv_heads

    @property
    def additive(self) -> bool:
        """Whether anything is added to the logits (ALiBi or a bias)."""
        return self.alibi is not None or self.bias is not None

    def astype(self, dtype: str, rng: Any = None) -> Problem:
        """The same problem with every array in ``dtype`` (float32 to match a framework's float32
        numbers), or for float16 and bfloat16 in float32 rounded to that dtype and every stage's result
        rounded so too (stochastically with ``rng``, a numpy Generator; see precision.py)."""
        arrays = {name: getattr(self, name) for name in ("x", "context", "w_query", "w_key", "w_value", "b_query",
                  "b_key", "b_value", "w_out", "b_out", "bias", "sinks", "alibi") if getattr(self, name) is not None}
        if self.qk_norm is not None:
            arrays.update({"qk_norm.q_weight": self.qk_norm.q_weight, "qk_norm.k_weight": self.qk_norm.k_weight})
        if self.softcap is not None:
            arrays["softcap"] = np.array(self.softcap)
        dtype = dtype if dtype in ROUNDED else np.dtype(dtype).name
        reduced = Precision(dtype, rng) if dtype in ROUNDED and (dtype != "float32" or rng is not None) else None
        changed = {}
        with np.errstate(over="ignore"):  # a value beyond the new dtype's range is refused below, by name
            for name, array in arrays.items():
                changed[name] = array.astype(dtype) if reduced is None else reduced.round(array)
                beyond = ~np.isfinite(changed[name]) & ~np.isneginf(array)  # −∞ (a bias's, a sink's) stays −∞
                if beyond.any():
                    where = [int(i) for i in np.argwhere(beyond)[0]]
                    if name == "bias":  # without the batch and heads axes a bias is broadcast along
                        where = [i for axis, i in enumerate(where) if axis > 1 or array.shape[axis] > 1]
                    elif name in ("x", "context") and not self.batched:
                        where = where[1:]  # the batch axis the document did not have
                    raise ProblemError(f"{name}{index_text(where)} is beyond {dtype}'s "
                                       f"range (±{largest_text(dtype)}); compute in float64", key=name.split(".")[0])
        if self.context is self.x:
            changed["context"] = changed["x"]  # self-attention stays one array
        if self.qk_norm is not None:
            changed["qk_norm"] = self.qk_norm._replace(q_weight=changed.pop("qk_norm.q_weight"),
                                                       k_weight=changed.pop("qk_norm.k_weight"))
        changed.pop("softcap", None)  # a number: the capped stage computes in the logits' dtype
        return dataclasses.replace(self, **changed, precision=reduced)

    @property
    def head_dim(self) -> int:
        return self.w_query.shape[1] // self.heads

    @property
    def head_dim_v(self) -> int:
        return self.w_value.shape[1] // self.kv_heads

    @property
    def scale_factor(self) -> float:
        """The number the scores are multiplied by."""
        if self.scale == "sqrt":
            return 1.0 / math.sqrt(self.head_dim)
        if self.scale == "none":
            return 1.0
        return float(self.scale)


def problem_from_document(
    document: Any,
    *,
    heads: int | None = None,
    scale: str | float | None = None,
    causal: bool = False,
    causal_lower_right: bool = False,
    kv_heads: int | None = None, rope: str | None = None, rope_theta: float | None = None,
    window: int | None = None, softcap: float | None = None, alibi: bool = False,
) -> Problem:
    """Validate a parsed problem document and return a Problem.

    The keywords are command-line overrides: when given they replace the document's key of their
    name (``causal``, ``causal_lower_right``: its ``mask``; ``rope`` a style, with ``rope_theta``
    its theta; ``alibi``: true) and are validated as it is. Raises ProblemError naming the
    matrix and what is wrong.
    """
    if not isinstance(document, dict):
        raise ProblemError(
            f"expected a JSON object with x, w_query, w_key and w_value, got {describe(document)}"
        )
    # PyTorch's names are translated first: what follows validates attncli's own
    notes: tuple[str, ...] = ()
    if torchnames.uses_pytorch_names(document):
        converted = torchnames.from_pytorch_names(document if heads is None else {**document, "heads": heads})
        document, notes = converted, torchnames.layout_notes(document, converted)
    if causal and causal_lower_right:
        raise ProblemError(f"two masks: give {option('causal')} or {option('causal_lower_right')}, not both")
    # --rope sets the style and --rope-theta the theta of the document's rope (the rest kept), or make one
    rope_key = document.get("rope") if document.get("rope") not in (None, False) else None
    rope_key = rope_key if isinstance(rope_key, dict) or rope_key is None else {"style": rope_key}
    if rope is not None:
        rope_key = {**(rope_key or {}), "style": rope}
    if rope_theta is not None:
        if rope_key is None:
            raise ProblemError(f"{option('rope_theta')} is the theta of a rotation: give {option('rope')} too "
                               "(the document has no rope)")
        rope_key = {**{key: value for key, value in rope_key.items() if key != "inv_freq"}, "theta": rope_theta}
    rope_key = rope_key if rope is not None or rope_theta is not None else None
    overrides = {key: value for key, value in (
        ("kv_heads", kv_heads), ("rope", rope_key), ("window", window), ("softcap", softcap), ("alibi", alibi or None),
        ("mask", "causal_lower_right" if causal_lower_right else None)) if value is not None}
    if overrides:
        document = {**document, **overrides}
    _reject_unknown_keys(document)
    for key in REQUIRED_KEYS:
        if key not in document:
            raise ProblemError(f"missing {key} ({REQUIRED_ROLES[key]})")

    seq_first = not torchnames.batch_first(document.get("batch_first", True))
    x = _batch_first(as_array("x", document["x"], (2, 3)), seq_first)
    batched = x.ndim == 3
    x3 = x if batched else x[None]
    cross = document.get("context") is not None
    if cross:
        context = _batch_first(as_array("context", document["context"], (2, 3)), seq_first)
        if context.ndim != x.ndim:
            raise ProblemError(
                f"context has {context.ndim} axes but x has {x.ndim}: give both a batch axis or neither",
                {"context": context.shape, "x": x.shape},
            )
        context3 = context if batched else context[None]
        if context3.shape[0] != x3.shape[0]:
            raise ProblemError(
                f"context has a batch of {context3.shape[0]} but x has {x3.shape[0]}",
                {"context": context.shape, "x": x.shape},
            )
        context_name = "context"
    else:
        context3 = x3
        context_name = "x"

    per_head_counts: dict[str, int] = {}
    weights: dict[str, np.ndarray] = {}
    for key in ("w_query", "w_key", "w_value"):
        weight = as_array(key, document[key], (2, 3))
        if weight.ndim == 3:
            per_head_counts[key] = weight.shape[0]
            # (heads, d_in, head_dim) -> (d_in, heads*head_dim), head h in the h-th block
            weight = weight.transpose(1, 0, 2).reshape(weight.shape[1], -1)
        weights[key] = weight
    heads = variants.heads(document.get("heads") if heads is None else heads, per_head_counts,
                           grouped=document.get("kv_heads") is not None)
    kv_heads = variants.kv_heads(document.get("kv_heads"), heads, per_head_counts)

    _check_rows(weights["w_query"], "w_query", x3, "x")
    _check_rows(weights["w_key"], "w_key", context3, context_name)
    _check_rows(weights["w_value"], "w_value", context3, context_name)
    _check_divisible(weights["w_query"], "w_query", heads)
    q_width, k_width = weights["w_query"].shape[1], weights["w_key"].shape[1]
    head_dim = q_width // heads
    if head_dim * kv_heads != k_width:
        if kv_heads != heads:
            message = (f"w_key has {counted(k_width, 'column')} but kv_heads {kv_heads} × head_dim {head_dim} = "
                       f"{head_dim * kv_heads} are needed")
        else:
            grouping = k_width // head_dim if k_width % head_dim == 0 else 0
            message = (f"w_query has {counted(q_width, 'column')} but w_key has {k_width}: queries and keys must have "
                       "the same width to be multiplied" + (
                           f", or give kv_heads: {grouping} for grouped-query attention"
                           if grouping and heads % grouping == 0 else ""))
        raise ProblemError(message, {"w_key": weights["w_key"].shape, "w_query": weights["w_query"].shape})
    _check_divisible(weights["w_value"], "w_value", kv_heads)

    biases = {
        name: _bias(document, name, weights[weight_name].shape[1], weight_name, count)
        for name, weight_name, count in (("b_query", "w_query", heads), ("b_key", "w_key", kv_heads),
                                         ("b_value", "w_value", kv_heads))
    }

    w_out = b_out = None
    if document.get("w_out") is not None:
        w_out = as_array("w_out", document["w_out"], (2,))
        head_dim_v = weights["w_value"].shape[1] // kv_heads
        concat_width = heads * head_dim_v
        if w_out.shape[0] != concat_width:
            raise ProblemError(
                f"w_out has {counted(w_out.shape[0], 'row')} but the heads concatenated have width "
                f"{concat_width} (heads × head_dim_v = {heads} × {head_dim_v})",
                {"w_out": w_out.shape, "w_value": weights["w_value"].shape},
            )
        b_out = _bias(document, "b_out", w_out.shape[1], "w_out", None)
    elif document.get("b_out") is not None:
        raise ProblemError("b_out is given without w_out", key="b_out")

    scale_value = parse_scale(document.get("scale", "sqrt") if scale is None else scale)
    batch, q_len, k_len = x3.shape[0], x3.shape[1], context3.shape[1]
    mask_value = "causal" if causal else document.get("mask")
    mask_array, mask_rule = parse_mask(mask_value, batch, heads, q_len, k_len)
    # a classic document (no variant key) skips the variants' validation: a stream has many
    modern = variants.fields(document, batch, heads, kv_heads, q_width // heads, q_len, k_len) if (
        not VARIANT_KEY_SET.isdisjoint(document)) else {}
    extra = appended_rows(document, modern, k_width, weights["w_value"].shape[1], mask_rule) if modern else None
    if extra is not None:  # the masks cover the source's keys; the appended ones are seen by every query
        mask_array, modern = extended_rules(mask_array, modern, extra.count)
        k_len += extra.count
    seen = None if mask_rule is None and not modern else visibility(
        mask_array, mask_rule, modern.get("window"), modern.get("padding"), modern.get("bias"),
        *(modern.get("positions") or variants.default_positions(q_len, k_len)))

    labelled = "tokens" in document or "context_tokens" in document
    labels = labels_of(document, batch, batched, q_len, context3.shape[1], cross,
                       () if extra is None else extra.names) if labelled else None
    return Problem(x=x3, context=context3, **weights, **biases, w_out=w_out, b_out=b_out, heads=heads,
                   scale=scale_value, visibility=seen, mask_rule=mask_rule, batched=batched, cross=cross,
                   kv_heads=kv_heads, appended=extra, seq_first=seq_first and batched, notes=notes,
                   tokens=labels, **modern)


def _reject_unknown_keys(document: dict) -> None:
    unknown = [key for key in document if key not in KNOWN_KEYS]
    if unknown:
        key = unknown[0]
        # repr: a key may hold any character, a line break included, and the message stays one line
        others = f" (and {', '.join(map(repr, unknown[1:]))})" if len(unknown) > 1 else ""
        # the variants' short names (rope, bias…) are near many words: suggest one only when close
        classic = tuple(name for name in KNOWN_KEYS if name not in VARIANT_KEYS)
        hint = closest(key, KNOWN_KEYS, 0.75) or closest(key, classic)
        raise ProblemError(f"unknown key {key!r}{others}{hint}")


def _batch_first(array: np.ndarray, seq_first: bool) -> np.ndarray:
    # (seq, batch, E) → (batch, seq, E); a 2-D input is unbatched (seq, E) in either layout
    return array.transpose(1, 0, 2) if seq_first and array.ndim == 3 else array


def _check_rows(weight: np.ndarray, name: str, source: np.ndarray, source_name: str) -> None:
    if weight.shape[0] != source.shape[2]:
        raise ProblemError(
            f"{name} has {counted(weight.shape[0], 'row')} but {source_name} has {counted(source.shape[2], 'column')}",
            {name: weight.shape, source_name: source.shape},
        )


def _check_divisible(weight: np.ndarray, name: str, heads: int) -> None:
    width = weight.shape[1]
    if width % heads:
        raise ProblemError(
            f"{name} has {counted(width, 'column')}, which do not split into {heads} heads "
            f"(head counts that would: {head_counts(width, heads)})",
            {name: weight.shape},
        )


def _bias(document: dict, name: str, width: int, weight_name: str, heads: int | None) -> np.ndarray | None:
    if document.get(name) is None:
        return None
    bias = as_array(name, document[name], (1, 2) if heads else (1,))
    if bias.ndim == 2:
        # per head, (heads, head_dim): laid side by side like the per-head weights
        if bias.shape[0] != heads:
            raise ProblemError(
                f"{name} has {counted(bias.shape[0], 'row')} but there are {heads} heads",
                {name: bias.shape},
            )
        bias = bias.reshape(-1)
    if bias.shape[0] != width:
        raise ProblemError(
            f"{name} has {counted(bias.shape[0], 'value')} but {weight_name} has {counted(width, 'column')}",
            {name: bias.shape},
        )
    return bias
