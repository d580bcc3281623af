"""Read PyTorch's ``nn.MultiheadAttention`` weight names as attncli's.

PyTorch stores a linear layer's weight as (out, in) and applies ``x·Wᵀ + b``;
attncli stores (in, out) and applies ``x·W + b``. So each weight is transposed,
and the packed ``in_proj_weight`` (3E, E) is cut into its query, key and value
thirds. The result computes what the module computes with ``batch_first=True``.
No torch needed: the arrays come from a state_dict saved with numpy.
"""

from __future__ import annotations

import numpy as np

from attncli.errors import ProblemError, option
from attncli.numbers import as_array

PACKED = ("in_proj_weight", "in_proj_bias")
SEPARATE = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
OUTPUT = ("out_proj.weight", "out_proj.bias")
UNSUPPORTED = ("bias_k", "bias_v")
TORCH_KEYS = PACKED + SEPARATE + OUTPUT + UNSUPPORTED
OURS = ("w_query", "w_key", "w_value", "b_query", "b_key", "b_value", "w_out", "b_out")


def uses_pytorch_names(document: dict) -> bool:
    return any(key in document for key in TORCH_KEYS)


def from_pytorch_names(document: dict) -> dict:
    """A document that names nn.MultiheadAttention's parameters, rewritten with attncli's names.

    Takes ``in_proj_weight`` (3E, E) and ``in_proj_bias`` (3E,), or ``q_proj_weight`` (E, E),
    ``k_proj_weight`` (E, kdim), ``v_proj_weight`` (E, vdim); ``out_proj.weight`` (E, E) and
    ``out_proj.bias`` (E,); returns ``w_query`` (E, E), ``w_key`` (kdim, E), ``w_value`` (vdim, E),
    biases (E,), ``w_out`` (E, E), ``b_out`` (E,). Other keys pass through. ``heads`` is required.
    """
    for key in UNSUPPORTED:
        if key in document:
            raise ProblemError(f"{key} (nn.MultiheadAttention's add_bias_kv) is not supported", key=key)
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
    return converted

