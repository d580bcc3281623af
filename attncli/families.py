"""One attention layer of a real model as a problem document: each family's tensor names, storage
and configuration (Hugging Face's), read into attncli's keys (weights stored (in, out), applied as
x·W; heads, kv_heads, scale, RoPE, window, soft-cap, sinks, QK-norm, the causal mask).

A family says how to find its layers among a checkpoint's tensor names (any prefix: ``model.``,
``transformer.``, ``bert.`` or a user's own), which tensors make Q, K, V and the output projection,
and what its configuration means. ``layer_document`` gives the document without ``x`` (the
hidden states entering that layer's attention, which the user supplies). Pure Python and numpy:
the tensors come through a ``Tensors`` (names and a ``read``), so no file is opened here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import numpy as np

from attncli.errors import ProblemError


class Tensors(Protocol):
    """What a checkpoint gives: its tensor names, and one tensor as float64."""

    @property
    def names(self) -> list[str]: ...

    def read(self, name: str) -> np.ndarray: ...


class Family(NamedTuple):
    """A family of models: its ``name``, the Hugging Face ``model_types`` it covers, the pattern of
    its query weight's name (groups: the prefix before the layers, the layer number) and the
    function that makes one layer's document from the configuration, the tensors and the names
    of that layer's attention tensors (``names(suffix)``)."""

    name: str
    model_types: tuple[str, ...]
    query_pattern: re.Pattern
    document: Callable[[dict, Tensors, int, Callable[[str], str]], dict[str, Any]]


def _setting(config: dict, *keys: str, default: Any = None) -> Any:
    """The first of ``keys`` the configuration (or its ``rope_parameters``/``rope_scaling``) holds."""
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return default


def _required(config: dict, key: str, family: str) -> Any:
    if not config:
        raise ProblemError(f"has no config.json beside it, and a {family} layer needs its {key!r}: give the model's "
                           "folder, or put its config.json beside the file", key="config")
    if config.get(key) is None:
        raise ProblemError(f"config.json has no {key!r}, which a {family} layer needs", key="config")
    return config[key]


def _rope_parameters(config: dict) -> dict:
    """RoPE's settings: transformers 5's rope_parameters over the older rope_scaling."""
    return {**(config.get("rope_scaling") or {}), **(config.get("rope_parameters") or {})}


def rope_setting(config: dict) -> tuple[str, float]:
    """RoPE's type (``default`` when none is named) and theta, as config.json names them."""
    parameters = _rope_parameters(config)
    theta = float(_setting(parameters, "rope_theta", default=_setting(config, "rope_theta", default=10000.0)))
    return _setting(parameters, "rope_type", "type", default="default"), theta


def rope_inv_freq(config: dict, head_dim: int) -> tuple[int, np.ndarray, float]:
    """RoPE's rotary_dim, frequencies (rotary_dim / 2,) and attention factor as Hugging Face
    computes them from the configuration: ``default``, ``linear``, ``llama3`` and ``yarn`` scaling,
    in float64. Another rope_type is an error that names it."""
    parameters = _rope_parameters(config)
    rope_type, theta = rope_setting(config)
    rotary_dim = int(head_dim * float(_setting(parameters, "partial_rotary_factor",
                                               default=_setting(config, "partial_rotary_factor", default=1.0))))
    inv_freq = 1.0 / theta ** (np.arange(0, rotary_dim, 2, dtype=np.float64) / rotary_dim)
    if rope_type == "default":
        return rotary_dim, inv_freq, 1.0
    if rope_type == "linear":
        return rotary_dim, inv_freq / float(parameters["factor"]), 1.0
    if rope_type == "yarn":
        return (rotary_dim, *_yarn(parameters, config, rotary_dim, theta))
    if rope_type == "llama3":
        factor, low, high = (float(parameters[key]) for key in ("factor", "low_freq_factor", "high_freq_factor"))
        original = float(parameters["original_max_position_embeddings"])
        wavelength = 2 * math.pi / inv_freq
        scaled = np.where(wavelength > original / low, inv_freq / factor, inv_freq)
        smooth = (original / wavelength - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelength < original / high) & ~(wavelength > original / low)
        return rotary_dim, np.where(medium, smoothed, scaled), 1.0
    raise ProblemError(f"config.json's rope_type {rope_type!r} is not one attncli computes "
                       "(default, linear, llama3, yarn)", key="config")


def _yarn(parameters: dict, config: dict, dim: int, theta: float) -> tuple[np.ndarray, float]:
    """YaRN (Peng et al.): each frequency between interpolated (÷ factor) and kept, by a linear ramp
    over the dims between the corrections for beta_fast and beta_slow rotations, and the attention
    factor 0.1·ln(factor) + 1 (or from mscale and mscale_all_dim), as Hugging Face computes them."""
    original = float(parameters["original_max_position_embeddings"])
    factor = parameters.get("factor")
    factor = float(config["max_position_embeddings"]) / original if factor is None else float(factor)

    def mscale(scale: float, weight: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * weight * math.log(scale) + 1.0

    attention_factor = parameters.get("attention_factor")
    if attention_factor is None:
        weights = parameters.get("mscale"), parameters.get("mscale_all_dim")
        attention_factor = mscale(factor, weights[0]) / mscale(factor, weights[1]) if all(weights) else mscale(factor)

    def correction(rotations: float) -> float:
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction(parameters.get("beta_fast") or 32), correction(parameters.get("beta_slow") or 1)
    if parameters.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    high = high + 0.001 if low == high else high
    kept = 1 - np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    powers = theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim)
    return (1.0 / (factor * powers)) * (1 - kept) + (1.0 / powers) * kept, float(attention_factor)


def _linear(tensors: Tensors, name: str) -> np.ndarray:
    """A torch.nn.Linear weight, stored (out, in), as attncli's (in, out)."""
    return tensors.read(name).T


def _optional(tensors: Tensors, name: str) -> np.ndarray | None:
    return tensors.read(name) if name in tensors.names else None


def _sliding(config: dict, layer: int) -> int | None:
    """The layer's window: ``sliding_window`` where ``layer_types`` says sliding_attention (every
    layer when the config has no layer_types but a window, as Mistral's)."""
    window = config.get("sliding_window")
    if window is None or (config.get("use_sliding_window") is False):
        return None
    layer_types = config.get("layer_types")
    if layer_types is None:
        return int(window)
    if layer >= len(layer_types):
        raise ProblemError(f"config.json's layer_types has {len(layer_types)} layers, not layer {layer}", key="config")
    return int(window) if layer_types[layer] == "sliding_attention" else None


def _decoder(config: dict, tensors: Tensors, layer: int, names: Callable[[str], str]) -> dict[str, Any]:
    """Llama and its kin (Mistral, Qwen2, Qwen3, Gemma 2, gpt-oss): q/k/v/o_proj Linear layers,
    grouped-query heads, RoPE (halves), a causal mask, and each family's extras read from the
    configuration and the tensors present (biases, q_norm/k_norm, sinks, soft-cap, window)."""
    family = config.get("model_type", "decoder")
    heads = int(_required(config, "num_attention_heads", family))
    kv_heads = int(_setting(config, "num_key_value_heads", default=heads))
    hidden = int(_required(config, "hidden_size", family))
    head_dim = int(_setting(config, "head_dim", default=hidden // heads))
    rotary_dim, inv_freq, attention_factor = rope_inv_freq(config, head_dim)
    document: dict[str, Any] = {
        "w_query": _linear(tensors, names("q_proj.weight")), "w_key": _linear(tensors, names("k_proj.weight")),
        "w_value": _linear(tensors, names("v_proj.weight")), "w_out": _linear(tensors, names("o_proj.weight")),
        "heads": heads, "kv_heads": kv_heads, "mask": "causal",
        "rope": {"style": "neox", "rotary_dim": rotary_dim, "inv_freq": inv_freq, "attention_factor": attention_factor},
    }
    for letter, key in (("q", "b_query"), ("k", "b_key"), ("v", "b_value"), ("o", "b_out")):
        bias = _optional(tensors, names(f"{letter}_proj.bias"))
        if bias is not None:
            document[key] = bias
    pre_scalar = config.get("query_pre_attn_scalar")
    # Gemma 2 scales by query_pre_attn_scalar^-0.5; the others by head_dim^-0.5
    document["scale"] = "sqrt" if pre_scalar is None else float(pre_scalar) ** -0.5
    if config.get("attn_logit_softcapping") is not None:
        document["softcap"] = float(config["attn_logit_softcapping"])
    window = _sliding(config, layer)
    if window is not None:
        document["window"] = window
    q_norm = _optional(tensors, names("q_norm.weight"))
    if q_norm is not None:
        eps = float(_setting(config, "rms_norm_eps", default=1e-6))
        document["qk_norm"] = {"q_weight": q_norm, "k_weight": tensors.read(names("k_norm.weight")), "eps": eps}
    sinks = _optional(tensors, names("sinks"))
    if sinks is not None:
        document["sinks"] = sinks
    return document


def _gpt2(config: dict, tensors: Tensors, layer: int, names: Callable[[str], str]) -> dict[str, Any]:
    """GPT-2: one Conv1D c_attn stored (in, 3·E), packed q|k|v along its columns; c_proj (E, E);
    ``attn.bias`` is the causal mask's buffer, not a bias."""
    embed = int(_required(config, "n_embd", "gpt2"))
    packed, packed_bias = tensors.read(names("c_attn.weight")), tensors.read(names("c_attn.bias"))
    document: dict[str, Any] = {"heads": int(_required(config, "n_head", "gpt2")), "mask": "causal",
                                "w_out": tensors.read(names("c_proj.weight")),
                                "b_out": tensors.read(names("c_proj.bias"))}
    for index, (weight, bias) in enumerate((("w_query", "b_query"), ("w_key", "b_key"), ("w_value", "b_value"))):
        document[weight] = packed[:, index * embed:(index + 1) * embed]
        document[bias] = packed_bias[index * embed:(index + 1) * embed]
    scale = 1.0 if config.get("scale_attn_weights") is False else (embed // document["heads"]) ** -0.5
    if config.get("scale_attn_by_inverse_layer_idx"):
        scale /= layer + 1
    document["scale"] = scale
    return document


def _bert(config: dict, tensors: Tensors, layer: int, names: Callable[[str], str]) -> dict[str, Any]:
    """BERT and RoBERTa: query/key/value Linear layers, the output dense layer, no mask."""
    document: dict[str, Any] = {"heads": int(_required(config, "num_attention_heads", "bert"))}
    for part, weight, bias in (("self.query", "w_query", "b_query"), ("self.key", "w_key", "b_key"),
                               ("self.value", "w_value", "b_value"), ("output.dense", "w_out", "b_out")):
        document[weight] = _linear(tensors, names(f"{part}.weight"))
        document[bias] = tensors.read(names(f"{part}.bias"))
    return document


FAMILIES = (
    Family("llama", ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gpt_oss"),
           re.compile(r"^(.*?)layers\.(\d+)\.self_attn\.q_proj\.weight$"), _decoder),
    Family("gpt2", ("gpt2",), re.compile(r"^(.*?)h\.(\d+)\.attn\.c_attn\.weight$"), _gpt2),
    Family("bert", ("bert", "roberta"), re.compile(r"^(.*?)layer\.(\d+)\.attention\.self\.query\.weight$"), _bert),
)
_SUFFIX = {"llama": "self_attn.", "gpt2": "attn.", "bert": "attention."}


def family_of(config: dict | None, names: list[str]) -> Family:
    """The family of a checkpoint: by config.json's model_type, else by its tensor names."""
    model_type = (config or {}).get("model_type")
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    for family in FAMILIES:
        if model_type is None and any(family.query_pattern.match(name) for name in names):
            return family
    shown = ", ".join(names[:6]) + (f" … ({len(names)} tensors)" if len(names) > 6 else "")
    what = f"model_type {model_type!r}" if model_type else "tensor names"
    raise ProblemError(f"no attention layers attncli knows in this checkpoint ({what}); it holds {shown}",
                       key="model")


def attention_layers(family: Family, names: list[str]) -> dict[int, str]:
    """Each attention layer's number and the prefix of its tensors (``model.layers.3.self_attn.``)."""
    layers = {}
    for name in names:
        found = family.query_pattern.match(name)
        if found:
            prefix, layer = found.group(1), int(found.group(2))
            head = "h" if family.name == "gpt2" else "layer" if family.name == "bert" else "layers"
            layers[layer] = f"{prefix}{head}.{layer}.{_SUFFIX[family.name]}"
    return dict(sorted(layers.items()))


def layer_document(config: dict | None, tensors: Tensors, layer: int) -> dict[str, Any]:
    """The problem document (without ``x``) of attention layer ``layer`` of a checkpoint."""
    family = family_of(config, tensors.names)
    layers = attention_layers(family, tensors.names)
    if layer not in layers:
        have = f"{min(layers)}–{max(layers)}" if layers else "none"
        raise ProblemError(f"there is no attention layer {layer} (layers {have})", key="layer")
    prefix = layers[layer]

    def names(suffix: str) -> str:
        name = prefix + suffix
        if name not in tensors.names and not suffix.endswith(("bias", "q_norm.weight", "sinks")):
            raise ProblemError(f"the checkpoint has no tensor {name!r}, which a {family.name} layer needs", key="model")
        return name

    return family.document(config or {}, tensors, layer, names)
