"""Read PyTorch's ``nn.MultiheadAttention`` weight names as attncli's.

PyTorch stores a linear layer's weight as (out, in) and applies ``x·Wᵀ + b``;
attncli stores (in, out) and applies ``x·W + b``. So each weight is transposed,
and the packed ``in_proj_weight`` (3E, E) is cut into its query, key and value
thirds. The inputs may be named as ``forward`` names them (``query``, ``key``, ``value``), in
PyTorch's layout (``batch_first: false``, the module's default, is (seq, batch, E)), with PyTorch's
masks in PyTorch's meaning (``attn_mask``: bool True = blocked, or float added; ``key_padding_mask``:
True = padded). No torch needed: the arrays come from a state_dict saved with numpy.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np

from attncli.errors import ProblemError, option
from attncli.numbers import as_array, counted, nested_shape, shape_text, true_or_false, with_minus_infinity

PACKED = ("in_proj_weight", "in_proj_bias")
SEPARATE = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
OUTPUT = ("out_proj.weight", "out_proj.bias")
# forward's inputs, its masks and the module's settings a document may carry
FORWARD = ("query", "key", "value")
MASKS = ("attn_mask", "key_padding_mask")
# add_bias_kv's bias_k, bias_v and add_zero_attn keep their names: attncli's are PyTorch's (appended.py)
# batch_first is attncli's key too: it alone does not make a PyTorch document
# the weights, each stored (out, in) as nn.Linear stores it: applied as x·Wᵀ
WEIGHTS = (PACKED[0], *SEPARATE, OUTPUT[0])
TORCH_KEYS = PACKED + SEPARATE + OUTPUT + FORWARD + MASKS
OURS = ("w_query", "w_key", "w_value", "b_query", "b_key", "b_value", "w_out", "b_out")
# a PyTorch name and the attncli keys it stands for: give one or the other
SAME_ROLE = {"query": ("x",), "key": ("context",), "value": ("context",), "attn_mask": ("mask", "bias"),
             "key_padding_mask": ("padding",)}


def uses_pytorch_names(document: dict) -> bool:
    return any(key in document for key in TORCH_KEYS)


def weight_names(document: dict) -> tuple[str, ...]:
    """The names the document gives its weights: PyTorch's (in_proj_weight, …) or attncli's (w_query, …)."""
    return tuple(key for key in document if key in WEIGHTS or key in OURS and key.startswith("w_"))


def from_pytorch_names(document: dict) -> dict:
    """A document that names nn.MultiheadAttention's parameters, rewritten with attncli's names.

    Takes ``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E,), or ``q_proj_weight`` (E, E),
    ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim); ``out_proj.weight`` (E, E) and
    ``out_proj.bias`` (E,); returns ``w_query`` (E, E), ``w_key`` (kdim, E), ``w_value`` (vdim, E),
    biases (E,), ``w_out`` (E, E), ``b_out`` (E,). Other keys pass through. ``heads`` is required.

    ``query`` becomes ``x``; ``key`` becomes ``context`` unless it is the query (self-attention);
    a ``value`` other than the key is joined to it as one context [key | value] whose other columns
    the key and value weights take with zero rows, so K = key·W_K and V = value·W_V exactly.
    ``batch_first`` passes through (problem.py reads 3-D inputs and gives the output in its layout),
    or is inferred from the masks' shapes when the document does not say it.
    """
    for torch_name, ours in SAME_ROLE.items():
        for name in ours:
            if torch_name in document and name in document:
                raise ProblemError(f"{torch_name} and {name} are both given: {torch_name} is PyTorch's name for what "
                                   f"attncli calls {'/'.join(ours)}; give one", key=torch_name)
    mixed = [key for key in OURS if key in document]
    if mixed:
        raise ProblemError(
            f"{mixed[0]} is given beside PyTorch's names (in_proj_weight, …): use one naming or the other",
            key=mixed[0],
        )
    if document.get("heads") is None:
        raise ProblemError(
            "heads is required with PyTorch's weight names (nn.MultiheadAttention's num_heads): "
            f"give it in the file or as {option('heads')} N",
            key="heads",
        )
    converted = {key: value for key, value in document.items() if key not in TORCH_KEYS}
    if "in_proj_weight" in document:
        if any(key in document for key in SEPARATE):
            raise ProblemError("give in_proj_weight or q_proj_weight/k_proj_weight/v_proj_weight, not both",
                               key="in_proj_weight")
        packed = as_array("in_proj_weight", document["in_proj_weight"], (2,))
        embed_dim = packed.shape[1]
        if packed.shape[0] != 3 * embed_dim:
            raise ProblemError(
                f"in_proj_weight has shape {packed.shape[0]}×{embed_dim}; nn.MultiheadAttention packs "
                f"(3·embed_dim, embed_dim) = {3 * embed_dim}×{embed_dim}",
                {"in_proj_weight": packed.shape},
            )
        for third, name in enumerate(("w_query", "w_key", "w_value")):
            converted[name] = packed[third * embed_dim:(third + 1) * embed_dim].T
    else:
        for torch_name, name in zip(SEPARATE, ("w_query", "w_key", "w_value"), strict=True):
            if torch_name not in document:
                raise ProblemError(
                    f"missing {torch_name} (or give the packed in_proj_weight)", key=torch_name
                )
            converted[name] = as_array(torch_name, document[torch_name], (2,)).T
    if "in_proj_bias" in document:
        packed_bias = as_array("in_proj_bias", document["in_proj_bias"], (1,))
        if packed_bias.shape[0] % 3:
            raise ProblemError(
                f"in_proj_bias has {packed_bias.shape[0]} values, not 3·embed_dim", {"in_proj_bias": packed_bias.shape}
            )
        for name, part in zip(("b_query", "b_key", "b_value"), np.split(packed_bias, 3), strict=True):
            converted[name] = part
    if "out_proj.weight" in document:
        converted["w_out"] = as_array("out_proj.weight", document["out_proj.weight"], (2,)).T
    if "out_proj.bias" in document:
        converted["b_out"] = as_array("out_proj.bias", document["out_proj.bias"], (1,))
    _inputs(document, converted)
    layout = inferred_batch_first(document, converted)
    _masks(document, converted, layout)
    if layout is not None:
        converted["batch_first"] = layout
    return converted


def batch_first(value: Any) -> bool:
    """``batch_first`` as a bool: True, inputs (batch, seq, E); False, (seq, batch, E)."""
    return true_or_false("batch_first", value, "true (inputs (batch, seq, E)) or false (PyTorch's default: "
                         "(seq, batch, E))")


def inferred_batch_first(document: dict, converted: dict) -> bool | None:
    """The layout of a PyTorch document's 3-D inputs (``converted``'s x and context: _inputs's
    arrays): as its ``batch_first`` says, else as the other inputs' shapes tell (a key of another
    length, key_padding_mask (batch, S), a 3-D attn_mask (batch·heads, L, S)), else None."""
    if "batch_first" in document:
        return batch_first(document["batch_first"])
    query_shape, key_shape = np.shape(converted.get("x")), np.shape(converted.get("context"))
    if len(query_shape) != 3:
        return None
    # the batch is the axis the keys share with the queries (a value shares both with its key)
    if len(key_shape) == 3 and (key_shape[0] == query_shape[0]) != (key_shape[1] == query_shape[1]):
        return key_shape[0] == query_shape[0]
    if query_shape[0] == query_shape[1]:  # as many queries as batch items: a mask's batch cannot tell
        return None
    padding_shape, mask_shape = np.shape(document.get("key_padding_mask")), np.shape(document.get("attn_mask"))
    if len(padding_shape) == 2 and padding_shape[0] in query_shape[:2]:
        return padding_shape[0] == query_shape[0]
    if len(mask_shape) == 3 and mask_shape[1] in query_shape[:2]:  # L, the query length
        return mask_shape[1] == query_shape[1]
    return None


def layout_notes(document: dict, converted: dict) -> tuple[str, ...]:
    """A warning when a PyTorch document's 3-D inputs could be either layout and nothing says which
    (``converted``: from_pytorch_names's document, which has batch_first when something says it)."""
    query = "query" if "query" in document else "x"
    shape = np.shape(converted.get("x"))
    if len(shape) != 3 or "batch_first" in converted:
        return ()
    return (f"{query} {shape_text(shape)} is read batch-first, (batch, seq, E) = ({shape[0]}, {shape[1]}, {shape[2]}); "
            "nn.MultiheadAttention's default is batch_first=False, (seq, batch, E): say batch_first: true or "
            "false in the file",)


def _input(document: dict, name: str) -> np.ndarray:
    # in the document's layout: problem.py makes (seq, batch, E) batch-first, for x and context alike
    return as_array(name, document[name], (2, 3))


def _inputs(document: dict, converted: dict) -> None:
    """x from query (or x), context from key and value (or context)."""
    for name in ("x", "context"):
        if name in document and document[name] is not None:
            converted[name] = _input(document, name)
    if "query" in document:
        converted["x"] = _input(document, "query")
    if "key" not in document and "value" not in document:
        return
    if "x" not in converted:
        raise ProblemError("key and value are given without query (forward's first input, attncli's x)", key="query")
    query = converted["x"]
    key = _input(document, "key") if "key" in document else query
    value = _input(document, "value") if "value" in document else key
    if key.ndim != query.ndim or value.ndim != query.ndim:
        raise ProblemError("query, key and value must all have a batch axis or none",
                           {"query": query.shape, "key": key.shape, "value": value.shape})
    if key.shape[:-1] != value.shape[:-1]:
        raise ProblemError(f"key has shape {shape_text(key.shape)} but value {shape_text(value.shape)}: "
                           "nn.MultiheadAttention needs one value per key", {"key": key.shape, "value": value.shape})
    if _same(key, value):
        if not _same(key, query):
            converted["context"] = key
        return
    # Keys and values from different tensors: one context [key | value], each weight zero on the other's columns
    w_key, w_value = converted["w_key"], converted["w_value"]
    for name, array, weight, torch_name in (("key", key, w_key, "k_proj_weight"),
                                            ("value", value, w_value, "v_proj_weight")):
        if array.shape[-1] != weight.shape[0]:
            raise ProblemError(f"{name} has {counted(array.shape[-1], 'column')} but the {name} weights take "
                               f"{weight.shape[0]} ({torch_name}'s columns)", {name: array.shape})
    converted["context"] = np.concatenate([key, value], axis=-1)
    converted["w_key"] = np.concatenate([w_key, np.zeros((value.shape[-1], w_key.shape[1]))])
    converted["w_value"] = np.concatenate([np.zeros((key.shape[-1], w_value.shape[1])), w_value])


def _same(first: np.ndarray, second: np.ndarray) -> bool:
    return first is second or (first.shape == second.shape and np.array_equal(first, second))


def _masks(document: dict, converted: dict, layout: bool | None) -> None:
    """attn_mask (bool: True = blocked → mask; float: added → bias) and key_padding_mask (True = padded
    → padding); ``layout`` is inferred_batch_first's."""
    heads = document["heads"]
    if document.get("attn_mask") is not None:
        value = document["attn_mask"]
        boolean = _leaf_is_bool(value)
        shape = nested_shape("attn_mask", value, [], (bool,) if boolean else (int, float, str, type(None)))
        if len(shape) not in (2, 3):
            raise ProblemError(f"attn_mask has shape {shape_text(shape)}; nn.MultiheadAttention takes (L, S) or "
                               "(batch·heads, L, S)", {"attn_mask": shape})
        if not boolean:
            _refuse_flags("attn_mask", value, "blocked")
        array = np.array(value, dtype=bool) if boolean else value
        if len(shape) == 3:
            # (batch·heads, L, S): row b·heads + h is batch b's head h
            if not isinstance(heads, Integral) or isinstance(heads, bool) or heads < 1 or shape[0] % heads:
                raise ProblemError(f"attn_mask has {shape[0]} (L, S) matrices; a 3-D attn_mask holds batch·heads "
                                   f"of them, and there are {heads} heads", {"attn_mask": shape})
            heads = int(heads)
            array = (array.reshape(-1, heads, *shape[1:]) if isinstance(array, np.ndarray) else
                     [array[start:start + heads] for start in range(0, shape[0], heads)])
        if boolean:
            converted["mask"] = ~array  # PyTorch's True = blocked; attncli's 1 = may attend
        else:
            converted["bias"] = array  # added to the logits; null / -inf blocks
    if document.get("key_padding_mask") is not None:
        value = document["key_padding_mask"]
        if _leaf_is_bool(value):
            nested_shape("key_padding_mask", value, [], (bool,))
            converted["padding"] = ~np.array(value, dtype=bool)  # PyTorch's True = padded; attncli's 1 = a real key
        else:
            _refuse_flags("key_padding_mask", value, "padded")
            query_shape = np.shape(converted.get("x"))  # in the document's layout: (L, N, E) when seq-first
            seq_first = len(query_shape) == 3 and layout is False
            q_len = query_shape[0] if seq_first else query_shape[-2] if query_shape else 1
            converted["bias"] = _padding_added(value, converted.get("bias"), q_len)


def _padding_added(value: Any, bias: Any, q_len: int) -> np.ndarray:
    """A float key_padding_mask (batch, S) or (S,), added to every query's logits of its keys, as
    PyTorch adds it to the attn_mask: the bias (batch | 1, 1, q_len, S), the float attn_mask's added."""
    shape = nested_shape("key_padding_mask", value, [], (int, float, str, type(None)))
    if len(shape) not in (1, 2):
        raise ProblemError(f"key_padding_mask has shape {shape_text(shape)}; nn.MultiheadAttention takes (batch, S), "
                           "or (S) unbatched", {"key_padding_mask": shape})
    added = with_minus_infinity("key_padding_mask", value, (1, 2))
    added = np.broadcast_to(added.reshape(-1, 1, 1, shape[-1]), (added.size // shape[-1], 1, q_len, shape[-1]))
    if bias is None:
        return added
    attn_mask = with_minus_infinity("attn_mask", bias, (2, 3, 4))
    attn_mask = attn_mask.reshape((1, 1) + attn_mask.shape) if attn_mask.ndim == 2 else attn_mask
    if attn_mask.shape[-1] != added.shape[-1]:
        raise ProblemError(f"key_padding_mask has {counted(added.shape[-1], 'key')} but attn_mask "
                           f"{attn_mask.shape[-1]}", {"key_padding_mask": shape, "attn_mask": attn_mask.shape})
    with np.errstate(invalid="ignore"):
        return attn_mask + added


def _refuse_flags(name: str, value: Any, meaning: str) -> None:
    """A mask of numbers that are all 0 or 1 is flags meant as bool, which PyTorch refuses: added,
    a 1 would only raise its logits by 1."""
    try:
        numbers = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):  # null or "-inf" cells: a float mask
        return
    if numbers.size and np.isin(numbers, (0.0, 1.0)).all() and (numbers == 1.0).any():
        raise ProblemError(f"{name} holds 0s and 1s; PyTorch takes a bool mask (True = {meaning}) or a float one, "
                           f"added to the logits (-inf = {meaning}): give true/false", key=name)


def _leaf_is_bool(value: Any) -> bool:
    """Whether a nested list's first value (or an array's type) is boolean."""
    for _ in range(5):
        if isinstance(value, np.ndarray):
            return value.dtype.kind == "b"
        if not isinstance(value, list) or not value:
            break
        value = value[0]
    return isinstance(value, bool | np.bool_)

