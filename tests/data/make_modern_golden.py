"""Make tests/data/modern_golden.json: the attention variants of issue 11 and what the reference code computes.

Needs torch and transformers (on the project's machines, in a throwaway environment:
`python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.13.0 transformers numpy`);
attncli's tests do not. Rerun from the project root:

    /tmp/torchvenv/bin/python tests/data/make_modern_golden.py

Each case holds a problem document in attncli's format (weights stored (in, out), applied as x·W;
numbers rounded to 3 decimals so the documents stay readable, the expectations computed from those
exact values; a -inf bias cell written null) and the expected steps in attncli's layout: q (batch,
heads, q_len, head_dim) right after the projection, k and v (batch, kv_heads, k_len, dim),
q_normed/k_normed after QK-norm, q_rotated/k_rotated after RoPE, softmax (batch, heads, q_len,
k_len) and output (batch, q_len, d_out); the batch axis dropped when x has none, the heads axis
when heads == 1, the kv_heads axis when kv_heads == 1. A NaN (masked_rows "nan") is written null.

The numbers come from the reference implementations themselves, in float64:
- projections: F.linear; heads split as the Hugging Face attention modules do (view, transpose);
- QK-norm: Qwen3RMSNorm per head ("over": "head"), Olmo2RMSNorm over the projection ("all");
- RoPE: apply_rotary_pos_emb + rotate_half of modeling_llama ("neox", full width), of
  modeling_gpt_neox (partial rotary_dim), of modeling_gpt_oss (the gpt-oss case); GPT-J's
  apply_rotary_pos_emb + rotate_every_two with GPTJAttention's rot/pass split ("gptj");
- masks: the mask functions of transformers.masking_utils (causal_mask_function,
  sliding_window_overlay, padding_mask_function, checked against sdpa_mask where HF builds the
  same mask) and torch's causal_lower_right;
- softmax and the product with V: F.scaled_dot_product_attention (enable_gqa=True; a bool mask,
  a float attn_mask carrying ALiBi/bias, or the CausalBias itself), with the weights from
  aten._scaled_dot_product_attention_math; Gemma 2's eager_attention_forward (softcap); gpt-oss's
  eager_attention_forward (sinks); for masked_rows "nan" the reference code printed in
  F.scaled_dot_product_attention's docstring, checked against nn.MultiheadAttention;
- ALiBi slopes: get_slopes of Press et al. (github.com/ofirpress/attention_with_linear_biases,
  fairseq/models/transformer.py), the softmax cross-checked with BLOOM's build_alibi_tensor.

Float64 patches. transformers 5.24 keeps some steps in float32 even for float64 tensors; for
goldens good to ~1e-13 they run in float64 here:
- RoPE's cos/sin: the rotary-embedding modules compute the frequencies, cos and sin in float32;
  here inv_freq = 1 / theta ** (arange(0, rotary_dim, 2) / rotary_dim) and cos/sin are computed
  in float64 and handed to the unchanged apply_rotary_pos_emb functions;
- Qwen3RMSNorm / Olmo2RMSNorm cast to torch.float32 before normalising, and Gemma 2's
  eager_attention_forward takes its softmax with dtype=torch.float32: while the golden runs, the
  name `torch` inside modeling_qwen3, modeling_olmo2 and modeling_gemma2 points at a stand-in
  whose float32 is float64 (float32_steps_in_float64); their code runs otherwise unchanged.
For each case with one of these steps, `output_as_shipped` holds the output of the same functions
unpatched (cos/sin from GPTNeoXRotaryEmbedding / GPTJRotaryEmbedding), for a looser check.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import float64_patch  # beside this script
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
import transformers
from torch.nn.attention.bias import causal_lower_right
from transformers import GPTJConfig, GPTNeoXConfig, masking_utils
from transformers.models.bloom import modeling_bloom
from transformers.models.gemma2 import modeling_gemma2
from transformers.models.gpt_neox import modeling_gpt_neox
from transformers.models.gpt_oss import modeling_gpt_oss
from transformers.models.gptj import modeling_gptj
from transformers.models.llama import modeling_llama
from transformers.models.olmo2 import modeling_olmo2
from transformers.models.qwen3 import modeling_qwen3

OUT = Path(__file__).with_name("modern_golden.json")
DTYPE = torch.float64
# how far the as-shipped output (float32 RoPE, RMSNorm, softmax) may be from the golden one
SHIPPED_RTOL, SHIPPED_ATOL = 1e-5, 1e-6
PATCHED_MODULES = (modeling_qwen3, modeling_olmo2, modeling_gemma2)


# ---------------------------------------------------------------- float64 patch


def float32_steps_in_float64(active: bool = True):
    """Within: the float32 steps of PATCHED_MODULES run in float64 (float64_patch.py)."""
    return float64_patch.float32_steps_in_float64(PATCHED_MODULES, active)


# ---------------------------------------------------------------- ALiBi slopes (Press et al.)


def get_slopes(n):
    # as in github.com/ofirpress/attention_with_linear_biases, fairseq/models/transformer.py
    def get_slopes_power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        ratio = start
        return [start * ratio**i for i in range(n)]

    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest_power_of_2 = 2 ** math.floor(math.log2(n))
    return (get_slopes_power_of_2(closest_power_of_2)
            + get_slopes(2 * closest_power_of_2)[0::2][: n - closest_power_of_2])


# ---------------------------------------------------------------- helpers


def tensor(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array, dtype=float), dtype=DTYPE)


def bias_tensor(array) -> torch.Tensor:
    """A bias array from the document: null cells are -inf."""
    values = np.asarray(array, dtype=float)  # None -> nan
    return torch.tensor(np.where(np.isnan(values), -np.inf, values), dtype=DTYPE)


def rounded(array) -> list:
    return np.round(array, 3).tolist()


def json_ready(array: np.ndarray):
    """Nested lists with NaN as None (JSON has no NaN)."""
    if array.ndim == 0:
        value = float(array)
        return None if math.isnan(value) else value
    return [json_ready(row) for row in array]


def present(array: torch.Tensor, batched: bool, head_count: int | None) -> np.ndarray:
    """Drop the axes attncli drops: batch when x had none, the head axis (1) when its count is 1."""
    result = array.detach().numpy()
    if head_count == 1:
        result = result[:, 0]
    if not batched:
        result = result[0]
    return result


def broadcast4(array: torch.Tensor) -> torch.Tensor:
    """(q,k) | (batch,q,k) | (batch,heads,q,k) -> 4-D for broadcasting."""
    if array.dim() == 2:
        return array[None, None]
    if array.dim() == 3:
        return array[:, None]
    return array


# ---------------------------------------------------------------- RoPE


def rope_settings(rope, head_dim: int) -> tuple[str, float, int, list | None]:
    if isinstance(rope, str):
        rope = {"style": rope}
    return rope["style"], rope.get("theta", 10000.0), rope.get("rotary_dim", head_dim), rope.get("inv_freq")


def inverse_frequencies(theta: float, rotary_dim: int, explicit) -> torch.Tensor:
    if explicit is not None:
        return tensor(explicit)
    # the formula of compute_default_rope_parameters, in float64 instead of float32
    return 1.0 / (theta ** (torch.arange(0, rotary_dim, 2, dtype=DTYPE) / rotary_dim))


def shipped_cos_sin(style, theta, rotary_dim, head_dim, explicit, positions, like):
    """cos/sin as transformers' rotary-embedding modules make them (float32 inside)."""
    position_ids = positions[None].to(torch.int64)
    if style == "neox":
        config = GPTNeoXConfig(hidden_size=head_dim, num_attention_heads=1, rope_parameters={
            "rope_type": "default", "rope_theta": theta, "partial_rotary_factor": rotary_dim / head_dim})
        module = modeling_gpt_neox.GPTNeoXRotaryEmbedding(config)
        if explicit is not None:
            module.inv_freq = torch.tensor(explicit, dtype=torch.float32)
        assert module.inv_freq.numel() == rotary_dim // 2
        return module(like, position_ids)
    assert theta == 10000.0 and explicit is None, "GPT-J's sinusoid table knows theta 10000 only"
    config = GPTJConfig(n_embd=head_dim, n_head=1, rotary_dim=rotary_dim, n_positions=64)
    sin, cos = modeling_gptj.GPTJRotaryEmbedding(config)(like, position_ids)
    return cos, sin


def rotate(rope, states: torch.Tensor, positions: torch.Tensor, shipped: bool, family: str) -> torch.Tensor:
    """RoPE on (batch, heads, seq, head_dim) at the given positions (seq,)."""
    head_dim = states.shape[-1]
    style, theta, rotary_dim, explicit = rope_settings(rope, head_dim)
    if shipped:
        cos, sin = shipped_cos_sin(style, theta, rotary_dim, head_dim, explicit, positions, states)
    else:
        freqs = positions.to(DTYPE)[:, None] * inverse_frequencies(theta, rotary_dim, explicit)[None]
        if style == "neox":
            emb = torch.cat((freqs, freqs), dim=-1)  # as the rotary modules' forward does
            cos, sin = emb.cos()[None], emb.sin()[None]
        else:
            cos, sin = freqs.cos()[None], freqs.sin()[None]  # GPT-J's table: half width
    if style == "neox":
        if rotary_dim != head_dim:
            return modeling_gpt_neox.apply_rotary_pos_emb(states, states, cos, sin)[0]
        if family == "gpt_oss":  # its rotary module gives cos/sin of half width (no cat)
            half = rotary_dim // 2
            rotated = modeling_gpt_oss.apply_rotary_pos_emb(states, states, cos[..., :half], sin[..., :half])[0]
        else:
            rotated = modeling_llama.apply_rotary_pos_emb(states, states, cos, sin)[0]
        other = modeling_gpt_neox.apply_rotary_pos_emb(states, states, cos, sin)[0]
        assert torch.allclose(rotated, other, rtol=1e-15, atol=1e-15)
        return rotated
    # GPTJAttention: (batch, seq, heads, dim), the first rotary_dim dims rotated, the rest passed
    by_token = states.transpose(1, 2)
    rotated = modeling_gptj.apply_rotary_pos_emb(by_token[..., :rotary_dim], sin, cos)
    return torch.cat([rotated, by_token[..., rotary_dim:]], dim=-1).transpose(1, 2)


# ---------------------------------------------------------------- QK-norm


def rms_norm(cls, weight, eps) -> torch.nn.Module:
    weight = tensor(weight)
    norm = cls(weight.numel(), eps=eps).to(DTYPE)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm


# ---------------------------------------------------------------- masks


def positions_of(doc: dict, q_len: int, k_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    given = doc.get("positions", {})
    query = torch.tensor(given["query"]) if "query" in given else torch.arange(q_len) + k_len - q_len
    key = torch.tensor(given["key"]) if "key" in given else torch.arange(k_len)
    return query, key


def allowed_of(doc: dict, batch: int, heads: int, q_len: int, k_len: int) -> torch.Tensor:
    """Which keys each query may see, (batch, heads, q_len, k_len) bool, from masking_utils' functions."""
    b = torch.arange(batch)[:, None, None, None]
    h = torch.arange(heads)[None, :, None, None]
    i = torch.arange(q_len)[None, None, :, None]
    j = torch.arange(k_len)[None, None, None, :]
    offset = k_len - q_len  # the default position of query i
    allowed = torch.ones(batch, heads, q_len, k_len, dtype=torch.bool)
    mask = doc.get("mask")
    if mask == "causal":
        allowed &= masking_utils.causal_mask_function(b, h, i, j)
    elif mask == "causal_lower_right":
        allowed &= causal_lower_right(q_len, k_len)._materialize()
    elif mask is not None:
        allowed &= broadcast4(torch.tensor(np.asarray(mask)).bool())
    if "window" in doc:
        assert "positions" not in doc, "window cases keep the default positions"
        window = masking_utils.and_masks(masking_utils.sliding_window_overlay(doc["window"]),
                                         masking_utils.causal_mask_function)
        allowed &= window(b, h, i + offset, j)
    if "padding" in doc:
        padding = torch.tensor(np.asarray(doc["padding"])).bool()
        padding = padding.expand(batch, k_len) if padding.dim() == 1 else padding
        allowed &= masking_utils.padding_mask_function(padding)(b, h, i, j)
    check_against_sdpa_mask(doc, allowed, batch, q_len, k_len)
    return allowed


def check_against_sdpa_mask(doc, allowed, batch, q_len, k_len) -> None:
    """Where Hugging Face builds the same mask (causal at its cache offset, window, padding), compare."""
    mask = doc.get("mask")
    if isinstance(mask, list) or (mask == "causal" and q_len != k_len):
        return
    if mask is None and "window" not in doc:
        function = masking_utils.bidirectional_mask_function
    elif "window" in doc:
        function = masking_utils.sliding_window_causal_mask_function(doc["window"])
    else:
        function = masking_utils.causal_mask_function
    padding = doc.get("padding")
    if padding is not None:
        padding = torch.tensor(np.asarray(padding)).bool()
        padding = padding.expand(batch, k_len) if padding.dim() == 1 else padding
    hf = masking_utils.sdpa_mask(batch_size=batch, q_length=q_len, kv_length=k_len, q_offset=k_len - q_len,
                                 mask_function=function, attention_mask=padding, allow_is_causal_skip=False)
    if hf is not None:
        assert torch.equal(hf.expand_as(allowed), allowed), "masking_utils.sdpa_mask disagrees"


# ---------------------------------------------------------------- the reference


def docstring_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """The reference code printed in F.scaled_dot_product_attention's docstring (torch 2.13), returning
    the weights too: a row with every key masked becomes NaN (softmax of -inf only). One change: a bool
    mask is applied out of place (masked_fill, not masked_fill_), so that it may be 4-D."""
    L, S = query.size(-2), key.size(-2)  # noqa: N806
    scale_factor = 1 / math.sqrt(query.size(-1)) if scale is None else scale
    attn_bias = torch.zeros(L, S, dtype=query.dtype, device=query.device)
    if is_causal:
        assert attn_mask is None
        temp_mask = torch.ones(L, S, dtype=torch.bool, device=query.device).tril(diagonal=0)
        attn_bias.masked_fill_(temp_mask.logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            attn_bias = attn_bias.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            attn_bias = attn_mask + attn_bias
    if enable_gqa:
        key = key.repeat_interleave(query.size(-3) // key.size(-3), -3)
        value = value.repeat_interleave(query.size(-3) // value.size(-3), -3)
    attn_weight = query @ key.transpose(-2, -1) * scale_factor
    attn_weight += attn_bias
    attn_weight = torch.softmax(attn_weight, dim=-1)
    attn_weight = torch.dropout(attn_weight, dropout_p, train=True)
    return attn_weight @ value, attn_weight


def reference(doc: dict, family: str, shipped: bool = False) -> tuple[dict, bool]:
    """Every step of the document's attention as the reference code computes it (with batch and head
    axes), and whether x has a batch axis."""
    x = tensor(doc["x"])
    batched = x.dim() == 3
    x = x if batched else x[None]
    context = x
    if "context" in doc:
        context = tensor(doc["context"])
        context = context if batched else context[None]
    projected = []
    for source, w_name, b_name in ((x, "w_query", "b_query"), (context, "w_key", "b_key"),
                                   (context, "w_value", "b_value")):
        bias = tensor(doc[b_name]) if b_name in doc else None
        projected.append(F.linear(source, tensor(doc[w_name]).T, bias))  # x·W with W stored (in, out)
    q, k, v = projected
    heads = doc.get("heads", 1)
    kv_heads = doc.get("kv_heads", heads)
    batch, q_len, k_len = x.shape[0], x.shape[1], context.shape[1]
    head_dim, head_dim_v = q.shape[-1] // heads, v.shape[-1] // kv_heads
    q_by_token = q.view(batch, q_len, heads, head_dim)  # HF's hidden_shape view
    k_by_token = k.view(batch, k_len, kv_heads, head_dim)
    steps = {"q": q_by_token.transpose(1, 2), "k": k_by_token.transpose(1, 2),
             "v": v.view(batch, k_len, kv_heads, head_dim_v).transpose(1, 2)}
    query, key, value = steps["q"], steps["k"], steps["v"]

    if "qk_norm" in doc:
        norm = doc["qk_norm"]
        eps = norm.get("eps", 1e-6)
        with float32_steps_in_float64(not shipped), torch.no_grad():
            if norm.get("over", "head") == "head":  # Qwen3: q_norm(q_proj(x).view(hidden_shape))
                cls = modeling_qwen3.Qwen3RMSNorm
                query = rms_norm(cls, norm["q_weight"], eps)(q_by_token).transpose(1, 2)
                key = rms_norm(cls, norm["k_weight"], eps)(k_by_token).transpose(1, 2)
            else:  # OLMo 2: q_norm(q_proj(x)), then the view
                cls = modeling_olmo2.Olmo2RMSNorm
                query = rms_norm(cls, norm["q_weight"], eps)(q).view(batch, q_len, heads, head_dim).transpose(1, 2)
                key = rms_norm(cls, norm["k_weight"], eps)(k).view(batch, k_len, kv_heads, head_dim).transpose(1, 2)
        steps["q_normed"], steps["k_normed"] = query, key

    query_positions, key_positions = positions_of(doc, q_len, k_len)
    if "rope" in doc:
        query = rotate(doc["rope"], query, query_positions, shipped, family)
        key = rotate(doc["rope"], key, key_positions, shipped, family)
        steps["q_rotated"], steps["k_rotated"] = query, key

    scale = {"sqrt": 1 / math.sqrt(head_dim), "none": 1.0}.get(doc.get("scale", "sqrt"), doc.get("scale"))
    allowed = allowed_of(doc, batch, heads, q_len, k_len)
    additive = torch.zeros(1, heads, q_len, k_len, dtype=DTYPE)
    if "alibi" in doc:
        slopes = tensor(get_slopes(heads) if doc["alibi"] is True else doc["alibi"])
        distance = (query_positions[:, None] - key_positions[None, :]).to(DTYPE)
        additive = additive - slopes[None, :, None, None] * distance
    if "bias" in doc:
        additive = additive + broadcast4(bias_tensor(doc["bias"]))
    additive = additive.expand(batch, heads, q_len, k_len)
    has_additive = "alibi" in doc or "bias" in doc
    blocked = (~allowed) | torch.isneginf(additive)
    empty_rows = blocked.all(-1)
    groups = heads // kv_heads

    if family in ("gemma2", "gpt_oss"):
        assert not empty_rows.any(), "HF masks with finfo.min: rows with no key would be uniform"
        hf_mask = torch.where(allowed, tensor(0.0), tensor(torch.finfo(DTYPE).min)) + additive
        module = SimpleNamespace(num_key_value_groups=groups, head_dim=head_dim, training=False)
        if family == "gemma2":
            with float32_steps_in_float64(not shipped):
                out, weights = modeling_gemma2.eager_attention_forward(
                    module, query, key, value, hf_mask, scaling=scale, softcap=doc.get("softcap"))
        else:
            assert "softcap" not in doc
            module.sinks = tensor(doc["sinks"])
            out, weights = modeling_gpt_oss.eager_attention_forward(module, query, key, value, hf_mask,
                                                                    scaling=scale)
        out = out.transpose(1, 2)  # eager returns (batch, q_len, heads, dim)
    elif family == "docstring":
        float_mask = torch.where(allowed, tensor(0.0), tensor(-math.inf)) + additive
        out, weights = docstring_sdpa(query, key, value, attn_mask=float_mask, scale=scale, enable_gqa=True)
        if doc.get("masked_rows", "zero") == "nan":
            assert torch.isnan(weights[empty_rows]).all() and torch.isnan(out[empty_rows]).all()
    else:
        assert family == "sdpa" and "softcap" not in doc and "sinks" not in doc
        float_mask = torch.where(allowed, tensor(0.0), tensor(-math.inf)) + additive
        if doc.get("mask") == "causal_lower_right" and not has_additive and not {"window", "padding"} & set(doc):
            attn_mask = causal_lower_right(q_len, k_len)
        elif has_additive:
            attn_mask = float_mask
        else:
            attn_mask = allowed
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask, scale=scale, enable_gqa=True)
        math_out, weights = torch.ops.aten._scaled_dot_product_attention_math(
            query, key, value, attn_mask=float_mask, scale=scale, enable_gqa=True)
        assert torch.allclose(math_out, out, rtol=1e-12, atol=1e-13)
        repeated = F.scaled_dot_product_attention(query, modeling_llama.repeat_kv(key, groups),
                                                  modeling_llama.repeat_kv(value, groups), attn_mask=float_mask,
                                                  scale=scale)
        assert torch.allclose(repeated, out, rtol=1e-12, atol=1e-13)
        if empty_rows.any():
            assert (weights[empty_rows] == 0).all() and (out[empty_rows] == 0).all()

    if "alibi" in doc and doc["alibi"] is True and family == "sdpa" and "bias" not in doc and "positions" not in doc:
        check_alibi_with_bloom(doc, query, key, scale, allowed, weights)

    steps["softmax"] = weights
    concat = out.transpose(1, 2).reshape(batch, q_len, heads * head_dim_v)
    output = concat
    if "w_out" in doc:
        output = F.linear(concat, tensor(doc["w_out"]).T, tensor(doc["b_out"]) if "b_out" in doc else None)
    steps["output"] = output
    return steps, batched


def check_alibi_with_bloom(doc, query, key, scale, allowed, weights) -> None:
    """BLOOM adds slope·(key position counted over real tokens): a constant per row away from ours."""
    batch, heads, q_len, k_len = allowed.shape
    padding = torch.tensor(np.asarray(doc.get("padding", [1] * k_len)))
    padding = padding.expand(batch, k_len) if padding.dim() == 1 else padding
    alibi = modeling_bloom.build_alibi_tensor(padding, heads, DTYPE).view(batch, heads, 1, k_len)
    key = modeling_llama.repeat_kv(key, heads // key.shape[1])
    logits = query @ key.transpose(-1, -2) * scale + alibi
    bloom = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    assert torch.allclose(bloom, weights, rtol=1e-12, atol=1e-14), "BLOOM's ALiBi disagrees"


def family_of(doc: dict) -> str:
    if "sinks" in doc:
        return "gpt_oss"
    if "softcap" in doc:
        return "gemma2"
    if doc.get("masked_rows") == "nan":
        return "docstring"
    return "sdpa"


def expected_of(doc: dict, family: str) -> tuple[dict, dict | None]:
    steps, batched = reference(doc, family)
    heads = doc.get("heads", 1)
    kv_heads = doc.get("kv_heads", heads)
    axis = {"q": heads, "q_normed": heads, "q_rotated": heads, "softmax": heads,
            "k": kv_heads, "k_normed": kv_heads, "k_rotated": kv_heads, "v": kv_heads, "output": None}
    expected = {name: present(array, batched, axis[name]) for name, array in steps.items()}
    shipped = None
    if {"rope", "qk_norm"} & set(doc) or family == "gemma2":
        shipped_steps, _ = reference(doc, family, shipped=True)
        shipped_output = present(shipped_steps["output"], batched, None)
        difference = float(np.abs(shipped_output - expected["output"]).max())
        np.testing.assert_allclose(shipped_output, expected["output"], rtol=SHIPPED_RTOL, atol=SHIPPED_ATOL)
        shipped = {"output_as_shipped": shipped_output, "as_shipped_max_abs_difference": difference}
    return expected, shipped


def check_nan_case_with_multihead(doc: dict, expected: dict) -> None:
    """nn.MultiheadAttention also gives NaN for a row with no key: the same numbers, NaN rows included."""
    heads = doc["heads"]
    x = tensor(doc["x"])
    embed = x.shape[-1]
    module = torch.nn.MultiheadAttention(embed, heads, batch_first=True, dtype=DTYPE).eval()
    with torch.no_grad():
        module.in_proj_weight.copy_(torch.cat([tensor(doc[n]).T for n in ("w_query", "w_key", "w_value")]))
        module.in_proj_bias.copy_(torch.cat([tensor(doc[n]) for n in ("b_query", "b_key", "b_value")]))
        module.out_proj.weight.copy_(tensor(doc["w_out"]).T)
        module.out_proj.bias.copy_(tensor(doc["b_out"]))
        batch, seq = x.shape[0], x.shape[1]
        blocked = ~allowed_of(doc, batch, heads, seq, seq)
        output, weights = module(x, x, x, attn_mask=blocked.reshape(batch * heads, seq, seq), need_weights=True,
                                 average_attn_weights=False)
    np.testing.assert_allclose(output.numpy(), expected["output"], rtol=1e-12, atol=1e-13, equal_nan=True)
    np.testing.assert_allclose(weights.numpy(), expected["softmax"], rtol=1e-12, atol=1e-13, equal_nan=True)


# ---------------------------------------------------------------- the cases


class Maker:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def normal(self, *shape, spread=1.0) -> list:
        return rounded(self.rng.normal(0, spread, shape))

    def positive(self, *shape) -> list:
        return rounded(self.rng.uniform(0.5, 1.5, shape))

    def document(self, *, batch=None, seq=4, d_model=6, heads=2, head_dim=4, kv_heads=None, head_dim_v=None,
                 context=None, biases=False, d_out=None, **options) -> dict:
        """A document with random numbers; context: (k_len, d_source) for cross-attention."""
        lead = (batch,) if batch else ()
        doc = {"x": self.normal(*lead, seq, d_model)}
        d_source = d_model
        if context is not None:
            k_len, d_source = context
            doc["context"] = self.normal(*lead, k_len, d_source)
        kv = kv_heads or heads
        head_dim_v = head_dim_v or head_dim
        doc["w_query"] = self.normal(d_model, heads * head_dim, spread=0.5)
        doc["w_key"] = self.normal(d_source, kv * head_dim, spread=0.5)
        doc["w_value"] = self.normal(d_source, kv * head_dim_v, spread=0.5)
        if biases:
            doc["b_query"] = self.normal(heads * head_dim, spread=0.3)
            doc["b_key"] = self.normal(kv * head_dim, spread=0.3)
            doc["b_value"] = self.normal(kv * head_dim_v, spread=0.3)
        if d_out:
            doc["w_out"] = self.normal(heads * head_dim_v, d_out, spread=0.5)
            if biases:
                doc["b_out"] = self.normal(d_out, spread=0.3)
        if heads != 1:
            doc["heads"] = heads
        if kv_heads is not None:
            doc["kv_heads"] = kv_heads
        doc.update(options)
        return doc

    def cache_document(self, *, past: int, batch=None, seq=2, **kwargs) -> dict:
        """q_len < k_len as in decoding: the context is `past` earlier tokens followed by x itself."""
        doc = self.document(batch=batch, seq=seq, context=None, **kwargs)
        x = np.asarray(doc["x"])
        earlier = np.asarray(self.normal(*x.shape[:-2], past, x.shape[-1]))
        doc = {"x": doc["x"], "context": np.concatenate([earlier, x], axis=-2).tolist(),
               **{key: value for key, value in doc.items() if key != "x"}}
        return doc

    def qk_norm(self, q_width, k_width, **options) -> dict:
        return {"q_weight": self.positive(q_width), "k_weight": self.positive(k_width), **options}


def cases(make: Maker) -> list[dict]:
    m = make
    n = float("-inf")
    return [
        # ---- kv_heads
        ("gqa_batched", "batch 2, 4 tokens, d_model 6, heads 4 sharing kv_heads 2, head_dim 3",
         m.document(batch=2, heads=4, kv_heads=2, head_dim=3)),
        ("gqa_unbatched_causal_out", "unbatched, 5 tokens, heads 6 over kv_heads 3, causal, biases and W_O",
         m.document(seq=5, heads=6, kv_heads=3, head_dim=2, biases=True, d_out=5, mask="causal")),
        ("mqa_kv_heads_1", "batch 2, heads 4, kv_heads 1 (multi-query): k and v lose the kv_heads axis",
         m.document(batch=2, seq=3, heads=4, kv_heads=1, head_dim=2, d_out=6)),
        ("gqa_cross_head_dim_v", "cross-attention, 3 queries over 5 context tokens of width 6, heads 4 over "
         "kv_heads 2, head_dim_v 3 != head_dim 2",
         m.document(batch=2, seq=3, d_model=5, heads=4, kv_heads=2, head_dim=2, head_dim_v=3, context=(5, 6))),
        # ---- rope
        ("rope_neox_unbatched", "RoPE neox (Llama rotate_half), unbatched, heads 2, head_dim 4",
         m.document(seq=5, rope="neox")),
        ("rope_neox_batched_one_head", "RoPE neox, batch 2, one head (no heads axis), head_dim 6, causal",
         m.document(batch=2, seq=4, d_model=6, heads=1, head_dim=6, rope="neox", mask="causal")),
        ("rope_gptj_batched", "RoPE gptj (GPT-J rotate_every_two), batch 2, heads 2, head_dim 4",
         m.document(batch=2, seq=4, rope="gptj")),
        ("rope_gptj_partial", "RoPE gptj on the first 4 of head_dim 6 (GPT-J rotary_dim), unbatched",
         m.document(seq=5, d_model=6, head_dim=6, rope={"style": "gptj", "rotary_dim": 4})),
        ("rope_neox_partial", "RoPE neox on the first 4 of head_dim 6 (GPT-NeoX partial rotary), batch 2",
         m.document(batch=2, seq=3, d_model=6, head_dim=6, rope={"style": "neox", "rotary_dim": 4})),
        ("rope_neox_theta", "RoPE neox with theta 500000 (Llama 3), unbatched, 6 tokens at positions 0..5",
         m.document(seq=6, rope={"style": "neox", "theta": 500000})),
        ("rope_neox_inv_freq", "RoPE neox with explicit inv_freq [1, 0.3, 0.05], head_dim 6",
         m.document(seq=4, d_model=6, head_dim=6, rope={"style": "neox", "inv_freq": [1.0, 0.3, 0.05]})),
        ("rope_positions_explicit", "RoPE neox at explicit positions 3, 5, 8, 9 (queries and keys), unbatched",
         m.document(seq=4, rope="neox", positions={"query": [3, 5, 8, 9], "key": [3, 5, 8, 9]})),
        ("rope_positions_cross", "RoPE gptj, 2 queries at 10, 11 over 5 keys at 2, 4, 6, 10, 11",
         m.cache_document(past=3, rope="gptj", positions={"query": [10, 11], "key": [2, 4, 6, 10, 11]})),
        ("rope_kv_cache_default", "RoPE neox, 2 queries over a 5-token context (3 earlier tokens then x): by "
         "default query i sits at i + 3",
         m.cache_document(past=3, batch=2, rope="neox")),
        ("rope_kv_cache_lower_right", "RoPE gptj, 2 queries over 6 keys, causal_lower_right (a cache step)",
         m.cache_document(past=4, rope="gptj", mask="causal_lower_right")),
        # ---- qk_norm
        ("qk_norm_head", "QK-norm per head (Qwen3RMSNorm, head_dim weights), batch 2, heads 2",
         m.document(batch=2, seq=3, qk_norm=m.qk_norm(4, 4))),
        ("qk_norm_all", "QK-norm over the whole projection (Olmo2RMSNorm), heads 2 over kv_heads 1, eps 1e-5",
         m.document(seq=5, heads=2, kv_heads=1, qk_norm=m.qk_norm(8, 4, over="all", eps=1e-5))),
        ("qk_norm_head_unbatched_eps", "QK-norm per head with eps 0.01, unbatched, one head",
         m.document(seq=4, d_model=6, heads=1, head_dim=5, qk_norm=m.qk_norm(5, 5, over="head", eps=0.01))),
        # ---- softcap
        ("softcap_unbatched", "soft-cap 1.5 on the scaled logits (Gemma 2 eager), unbatched, heads 2",
         m.document(seq=5, softcap=1.5)),
        ("softcap_batched_causal", "soft-cap 3, causal, batch 2, heads 2, W_O",
         m.document(batch=2, seq=4, softcap=3.0, mask="causal", d_out=4)),
        ("softcap_then_bias", "soft-cap 1 then a (q_len, k_len) bias: the bias is added after the cap",
         m.document(seq=4, softcap=1.0, bias=m.normal(4, 4), mask="causal")),
        # ---- alibi
        ("alibi_heads4", "ALiBi true, heads 4 (slopes 1/4, 1/16, 1/64, 1/256), batch 2, no mask",
         m.document(batch=2, seq=4, heads=4, head_dim=2, alibi=True)),
        ("alibi_heads6", "ALiBi true, heads 6 (not a power of two: 1/4, 1/16, 1/64, 1/256, 1/2, 1/8), unbatched",
         m.document(seq=5, d_model=6, heads=6, head_dim=2, alibi=True)),
        ("alibi_list", "ALiBi with slopes given per head [0.5, 0.125, 0.3], unbatched, causal",
         m.document(seq=5, d_model=6, heads=3, head_dim=2, alibi=[0.5, 0.125, 0.3], mask="causal")),
        ("alibi_positions", "ALiBi true, heads 2, batch 2, explicit positions: queries at 7, 9; keys at 0, 3, 7, 9",
         m.cache_document(past=2, batch=2, alibi=True, positions={"query": [7, 9], "key": [0, 3, 7, 9]})),
        # ---- bias
        ("bias_2d_neg_inf", "additive (q_len, k_len) bias with a -inf cell, unbatched, heads 2",
         m.document(seq=4, bias=_with(m.normal(4, 4), (1, 2), n))),
        ("bias_3d", "additive (batch, q_len, k_len) bias, batch 2, causal",
         m.document(batch=2, seq=4, bias=m.normal(2, 4, 4), mask="causal")),
        ("bias_4d_neg_inf", "additive (batch, heads, q_len, k_len) bias with a -inf cell, cross-attention",
         m.document(batch=2, seq=3, heads=2, context=(4, 8), bias=_with(m.normal(2, 2, 3, 4), (1, 0, 2, 3), n))),
        # ---- padding
        ("padding_1d", "padding (k_len,) [1, 1, 1, 0, 0], unbatched",
         m.document(seq=5, padding=[1, 1, 1, 0, 0])),
        ("padding_2d", "padding (batch, k_len), batch 2, one sequence left-padded, no causal mask",
         m.document(batch=2, seq=4, padding=[[1, 1, 1, 1], [0, 1, 1, 1]])),
        ("padding_1d_batched", "padding (k_len,) shared by batch 2",
         m.document(batch=2, seq=4, padding=[1, 1, 0, 1])),
        # ---- window
        ("window_causal", "sliding window 2 with causal, batch 2 (HF sliding_window_causal_mask_function)",
         m.document(batch=2, seq=5, window=2, mask="causal")),
        ("window_causal_unbatched", "sliding window 3 with causal, 6 tokens, unbatched",
         m.document(seq=6, window=3, mask="causal")),
        ("window_lower_right", "sliding window 3 with causal_lower_right, 2 queries over 6 keys (a cache step)",
         m.cache_document(past=4, window=3, mask="causal_lower_right")),
        ("window_alone", "window 2 without a mask: query at p sees p-2 < j <= p, the same as with causal",
         m.document(seq=5, window=2)),
        # ---- causal_lower_right
        ("causal_lower_right_unbatched", "causal_lower_right, 3 queries over 5 keys (torch CausalBias)",
         m.document(seq=3, context=(5, 6), mask="causal_lower_right")),
        ("causal_lower_right_batched", "causal_lower_right, batch 2, 2 queries over 4 keys, W_O",
         m.cache_document(past=2, batch=2, mask="causal_lower_right", d_out=3)),
        # ---- sinks
        ("sinks_unbatched", "one sink logit per head (gpt-oss eager), unbatched, heads 2: rows sum below 1",
         m.document(seq=4, sinks=[0.5, -1.0])),
        ("sinks_batched_causal", "sinks, batch 2, heads 4, causal",
         m.document(batch=2, seq=4, heads=4, head_dim=2, sinks=[1.0, 0.0, -0.5, 2.0], mask="causal")),
        # ---- masked rows
        ("masked_rows_nan", "masked_rows nan: query 1 of batch item 1 sees no key, its weights and output are "
         "NaN (SDPA docstring reference; nn.MultiheadAttention agrees)",
         m.document(batch=2, seq=3, d_model=6, heads=2, head_dim=3, biases=True, d_out=6, masked_rows="nan",
                    mask=[[[1, 1, 0], [1, 1, 1], [0, 1, 1]], [[1, 0, 0], [0, 0, 0], [1, 1, 1]]])),
        ("masked_rows_nan_none_empty", "masked_rows nan, causal, no empty row: nothing is NaN",
         m.document(seq=4, mask="causal", masked_rows="nan")),
        ("masked_rows_zero_left_padding", "LABELLED: fully masked rows, SDPA with a bool mask: causal over a "
         "left-padded sequence, the padded queries see no key and get weight 0 (masked_rows zero)",
         m.document(batch=2, seq=4, mask="causal", padding=[[1, 1, 1, 1], [0, 0, 1, 1]], masked_rows="zero")),
        # ---- combinations that real models use
        ("mistral_gqa_rope_window", "Mistral-like: heads 4 over kv_heads 2, RoPE neox, causal, window 3, batch 2",
         m.document(batch=2, seq=6, heads=4, kv_heads=2, head_dim=2, rope="neox", mask="causal", window=3)),
        ("mistral_decode_step", "a Mistral-like decode step: 1 query over 5 cached keys, GQA, RoPE, window 3, "
         "causal_lower_right",
         m.cache_document(past=4, seq=1, heads=4, kv_heads=2, head_dim=2, rope="neox", window=3,
                          mask="causal_lower_right", d_out=8)),
        ("qwen3_gqa_rope_qknorm", "Qwen3-like: heads 4 over kv_heads 2, QK-norm per head, RoPE neox theta 1e6, "
         "causal, unbatched",
         m.document(seq=5, heads=4, kv_heads=2, head_dim=4, d_model=8, qk_norm=m.qk_norm(4, 4),
                    rope={"style": "neox", "theta": 1000000}, mask="causal", d_out=8)),
        ("olmo2_qknorm_all_rope", "OLMo 2-like: QK-norm over the projection, RoPE neox, causal, unbatched",
         m.document(seq=5, heads=2, head_dim=4, qk_norm=m.qk_norm(8, 8, over="all"), rope="neox",
                    mask="causal", d_out=8)),
        ("gemma2_softcap_window_gqa", "Gemma 2-like: soft-cap 2, window 3, causal, heads 4 over kv_heads 2, "
         "RoPE neox, scale query_pre_attn_scalar**-0.5 = 8**-0.5, unbatched",
         m.document(seq=6, heads=4, kv_heads=2, head_dim=4, softcap=2.0, window=3, mask="causal",
                    rope="neox", scale=8 ** -0.5, d_out=8)),
        ("gptoss_sinks_window_gqa_biases", "gpt-oss-like: sinks, window 3, causal, heads 4 over kv_heads 2, "
         "biases on every projection and W_O, RoPE neox, batch 2",
         m.document(batch=2, seq=5, heads=4, kv_heads=2, head_dim=2, biases=True, d_out=8, window=3,
                    mask="causal", rope="neox", sinks=[0.2, -0.4, 1.1, 0.0])),
        ("bloom_alibi_causal_padding", "BLOOM-like: ALiBi, causal, right padding, heads 4, biases and W_O, "
         "batch 2",
         m.document(batch=2, seq=5, heads=4, head_dim=2, biases=True, d_out=8, alibi=True, mask="causal",
                    padding=[[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])),
        ("alibi_heads6_causal_padding", "ALiBi heads 6, causal, padding (k_len,), unbatched",
         m.document(seq=5, d_model=6, heads=6, head_dim=2, alibi=True, mask="causal", padding=[1, 1, 1, 1, 0])),
    ]


def dumps(value, depth: int = 0) -> str:
    """JSON, one key per line, each innermost row of numbers on one line (compact but readable)."""
    pad, inner = " " * depth, " " * (depth + 1)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(key)}: {dumps(item, depth + 1)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(item, dict | list) for item in value):
        return "[\n" + ",\n".join(inner + dumps(item, depth + 1) for item in value) + "\n" + pad + "]"
    return json.dumps(value, allow_nan=False, separators=(", ", ": "))


def _with(rows: list, index: tuple, value: float) -> list:
    """Set one cell of nested lists; -inf is written None (JSON's null)."""
    array = np.asarray(rows, dtype=object)
    array[index] = None if value == float("-inf") else value
    return array.tolist()


def main() -> None:
    rng = np.random.default_rng(20261211)
    make = Maker(rng)
    golden = {
        "about": "Problems with the attention variants of issue 11 (GQA/MQA, RoPE, QK-norm, soft-cap, ALiBi, "
        "bias, padding, sliding window, causal_lower_right, sinks, masked rows) and the steps the reference "
        "implementations compute for them in float64. Made by tests/data/make_modern_golden.py; see its docstring.",
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "float64_patches": [
            "RoPE cos/sin computed in float64 (the rotary-embedding modules compute them in float32) and handed "
            "to the unchanged apply_rotary_pos_emb functions",
            "Qwen3RMSNorm and Olmo2RMSNorm: their cast to torch.float32 made a cast to float64",
            "Gemma 2's eager_attention_forward: softmax(dtype=torch.float32) made float64",
        ],
        "as_shipped_note": "output_as_shipped: the same reference functions unpatched (float32 cos/sin from "
        "GPTNeoXRotaryEmbedding or GPTJRotaryEmbedding, float32 RMSNorm and Gemma 2 softmax), the rest float64; "
        f"checked here against the golden output with rtol {SHIPPED_RTOL}, atol {SHIPPED_ATOL}.",
        "cases": [],
    }
    for name, about, doc in cases(make):
        family = family_of(doc)
        expected, shipped = expected_of(doc, family)
        if name.startswith("masked_rows_nan") and "b_out" in doc:
            check_nan_case_with_multihead(doc, expected)
        case = {"name": name, "about": about, "reference": family, "document": doc,
                "expected": {step: json_ready(array) for step, array in expected.items()}}
        if shipped:
            case["output_as_shipped"] = json_ready(shipped["output_as_shipped"])
            case["as_shipped_max_abs_difference"] = shipped["as_shipped_max_abs_difference"]
        golden["cases"].append(case)
    names = [case["name"] for case in golden["cases"]]
    assert len(set(names)) == len(names)
    OUT.write_text(dumps(golden) + "\n")
    assert json.loads(OUT.read_text()) == json.loads(json.dumps(golden))
    print(f"wrote {OUT} ({len(names)} cases, torch {torch.__version__}, transformers {transformers.__version__})")


if __name__ == "__main__":
    main()
