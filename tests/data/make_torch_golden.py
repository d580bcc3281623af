"""Make tests/data/torch_golden.json: problems in attncli's format and what PyTorch computes for them.

Needs torch (a CPU build is enough: `pip install torch==2.13.0` on the project's machines);
attncli's tests do not. Rerun from the project root:

    python tests/data/make_torch_golden.py

Each case holds a problem document (weights stored (in, out), applied as x·W, mask 1 = may
attend) and the expected steps in attncli's layout: q, k, v as (batch, heads, seq, dim),
softmax as (batch, heads, q_len, k_len), output as (batch, q_len, d_out), with the batch axis
dropped when x has none and the heads axis when heads == 1. Two routes are used:
- nn.MultiheadAttention (batch_first=True), for problems it can express: its output with
  need_weights=False (the SDPA path), its per-head weights with need_weights=True;
- F.scaled_dot_product_attention after projections made with torch, for the rest (per-head
  weights, head_dim_v != head_dim, no W_O, a numeric scale, a fully masked row).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

OUT = Path(__file__).with_name("torch_golden.json")
NAMED_NPZ = Path(__file__).with_name("torch_named_packed.npz")
NAMED_JSON = Path(__file__).with_name("torch_named_separate.json")
NAMED_EXPECTED = Path(__file__).with_name("torch_named_expected.json")
DTYPE = torch.float64


def tensor(array) -> torch.Tensor:
    return torch.tensor(np.asarray(array), dtype=DTYPE)


def present(array: torch.Tensor, batched: bool, heads: int, has_heads_axis: bool) -> list:
    """Drop the axes attncli drops: batch when x had none, heads when heads == 1."""
    result = array.detach().numpy()
    if has_heads_axis and heads == 1:
        result = result[:, 0]
    if not batched:
        result = result[0]
    return result.tolist()


def split(projected: torch.Tensor, heads: int) -> torch.Tensor:
    batch, seq, width = projected.shape
    return projected.view(batch, seq, heads, width // heads).transpose(1, 2)


def allowed_mask(mask, batch: int, heads: int, q_len: int, k_len: int) -> torch.Tensor:
    """The problem's mask (1 = may attend) as a bool tensor (batch, heads, q_len, k_len)."""
    if mask is None:
        return torch.ones(batch, heads, q_len, k_len, dtype=torch.bool)
    if mask == "causal":
        allowed = torch.ones(q_len, k_len, dtype=torch.bool).tril()
    else:
        allowed = torch.tensor(np.asarray(mask)).bool()
    while allowed.dim() < 4:
        allowed = allowed.unsqueeze(0) if allowed.dim() == 2 else allowed.unsqueeze(1)
    return allowed.expand(batch, heads, q_len, k_len)


def projections(doc: dict, heads: int):
    """q, k, v (batch, seq, width) computed with torch from the document's (in, out) weights."""
    x = tensor(doc["x"])
    batched = x.dim() == 3
    if not batched:
        x = x.unsqueeze(0)
    context = tensor(doc["context"]) if "context" in doc else x
    if not batched and "context" in doc:
        context = context.unsqueeze(0)
    result = []
    for source, w_name, b_name in ((x, "w_query", "b_query"), (context, "w_key", "b_key"),
                                   (context, "w_value", "b_value")):
        weight = tensor(doc[w_name])
        if weight.dim() == 3:  # (heads, in, head_dim) -> (in, heads*head_dim)
            weight = weight.permute(1, 0, 2).reshape(weight.shape[1], -1)
        bias = tensor(doc[b_name]).reshape(-1) if b_name in doc else None
        # F.linear applies x·Wᵀ with W stored (out, in): PyTorch's own layout
        result.append(F.linear(source, weight.T, bias))
    return x, context, batched, result


def heads_of(doc: dict) -> int:
    """The document's heads, or the count its per-head (heads, d_model, head_dim) weights imply."""
    if np.asarray(doc["w_query"]).ndim == 3:
        return len(doc["w_query"])
    return doc.get("heads", 1)


def via_sdpa(doc: dict) -> dict:
    heads = heads_of(doc)
    x, context, batched, (q, k, v) = projections(doc, heads)
    batch, q_len, k_len = x.shape[0], x.shape[1], context.shape[1]
    qh, kh, vh = split(q, heads), split(k, heads), split(v, heads)
    head_dim = qh.shape[-1]
    scale = {"sqrt": 1 / math.sqrt(head_dim), "none": 1.0}.get(doc.get("scale", "sqrt"), doc.get("scale"))
    allowed = allowed_mask(doc.get("mask"), batch, heads, q_len, k_len)
    per_head = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=allowed, scale=scale)
    additive = torch.zeros(allowed.shape, dtype=DTYPE).masked_fill(~allowed, float("-inf"))
    math_out, weights = torch.ops.aten._scaled_dot_product_attention_math(qh, kh, vh, attn_mask=additive, scale=scale)
    assert torch.allclose(math_out, per_head, rtol=1e-12, atol=1e-12)
    concat = per_head.transpose(1, 2).reshape(batch, q_len, -1)
    output = concat
    if "w_out" in doc:
        b_out = tensor(doc["b_out"]) if "b_out" in doc else None
        output = F.linear(concat, tensor(doc["w_out"]).T, b_out)
    return {
        "q": present(qh, batched, heads, True),
        "k": present(kh, batched, heads, True),
        "v": present(vh, batched, heads, True),
        "softmax": present(weights, batched, heads, True),
        "output": present(output, batched, heads, False),
    }


def via_module(doc: dict) -> dict:
    """nn.MultiheadAttention with the document's weights: PyTorch stores (out, in), so transpose."""
    heads = doc["heads"]
    x, context, batched, (q, k, v) = projections(doc, heads)
    embed_dim = len(doc["w_query"][0])
    kdim, vdim = context.shape[-1], context.shape[-1]
    module = torch.nn.MultiheadAttention(embed_dim, heads, bias=True, batch_first=True, kdim=kdim, vdim=vdim,
                                         dtype=DTYPE)
    with torch.no_grad():
        if module._qkv_same_embed_dim:
            module.in_proj_weight.copy_(torch.cat([tensor(doc[n]).T for n in ("w_query", "w_key", "w_value")]))
        else:
            module.q_proj_weight.copy_(tensor(doc["w_query"]).T)
            module.k_proj_weight.copy_(tensor(doc["w_key"]).T)
            module.v_proj_weight.copy_(tensor(doc["w_value"]).T)
        module.in_proj_bias.copy_(torch.cat([tensor(doc[n]) for n in ("b_query", "b_key", "b_value")]))
        module.out_proj.weight.copy_(tensor(doc["w_out"]).T)
        module.out_proj.bias.copy_(tensor(doc["b_out"]))
    module.eval()
    batch, q_len, k_len = x.shape[0], x.shape[1], context.shape[1]
    allowed = allowed_mask(doc.get("mask"), batch, heads, q_len, k_len)
    # nn.MultiheadAttention's bool mask is the opposite: True = may NOT attend
    blocked = (~allowed).reshape(batch * heads, q_len, k_len)
    with torch.no_grad():
        output, _ = module(x, context, context, attn_mask=blocked, need_weights=False)
        output_slow, weights = module(x, context, context, attn_mask=blocked, need_weights=True,
                                      average_attn_weights=False)
    assert torch.allclose(output, output_slow, rtol=1e-12, atol=1e-12)
    return {
        "q": present(split(q, heads), batched, heads, True),
        "k": present(split(k, heads), batched, heads, True),
        "v": present(split(v, heads), batched, heads, True),
        "softmax": present(weights, batched, heads, True),
        "output": present(output, batched, heads, False),
    }


def rounded(array: np.ndarray) -> list:
    # short decimals keep the documents readable; the expectations are computed from these exact values
    return np.round(array, 3).tolist()


def cases(rng: np.random.Generator) -> list[dict]:
    def normal(*shape, spread=1.0):
        return rounded(rng.normal(0, spread, shape))

    def random_mask(*shape):
        mask = (rng.random(shape) < 0.7).astype(int)
        mask[..., 0] = 1  # every query keeps at least one key
        return mask.tolist()

    return [
        {
            "name": "module_batch_bias_out",
            "about": "batch 2, 4 tokens, d_model 6, 2 heads, biases and W_O, no mask",
            "route": "module",
            "document": {
                "x": normal(2, 4, 6), "w_query": normal(6, 6), "w_key": normal(6, 6), "w_value": normal(6, 6),
                "b_query": normal(6), "b_key": normal(6), "b_value": normal(6),
                "w_out": normal(6, 6), "b_out": normal(6), "heads": 2,
            },
        },
        {
            "name": "module_cross_causal",
            "about": "cross-attention: 3 queries of width 4 over a context of 5 tokens of width 5, causal, 2 heads",
            "route": "module",
            "document": {
                "x": normal(2, 3, 4), "context": normal(2, 5, 5),
                "w_query": normal(4, 4), "w_key": normal(5, 4), "w_value": normal(5, 4),
                "b_query": normal(4), "b_key": normal(4), "b_value": normal(4),
                "w_out": normal(4, 4), "b_out": normal(4), "heads": 2, "mask": "causal",
            },
        },
        {
            "name": "module_mask_per_head",
            "about": "batch 2, 5 tokens, d_model 8, 4 heads, an explicit (batch, heads, q_len, k_len) mask",
            "route": "module",
            "document": {
                "x": normal(2, 5, 8), "w_query": normal(8, 8), "w_key": normal(8, 8), "w_value": normal(8, 8),
                "b_query": normal(8), "b_key": normal(8), "b_value": normal(8),
                "w_out": normal(8, 8), "b_out": normal(8), "heads": 4, "mask": random_mask(2, 4, 5, 5),
            },
        },
        {
            "name": "sdpa_per_head_weights_scale",
            "about": "per-head weights (heads, d_model, head_dim), head_dim_v 2 != head_dim 3, scale 0.3, no W_O",
            "route": "sdpa",
            "document": {
                "x": normal(4, 5), "w_query": normal(3, 5, 3), "w_key": normal(3, 5, 3), "w_value": normal(3, 5, 2),
                "scale": 0.3,
            },
        },
        {
            "name": "sdpa_unbatched_mask_2d_scale_none",
            "about": "unbatched, 3 heads, biases, a (q_len, k_len) mask, scale none",
            "route": "sdpa",
            "document": {
                "x": normal(5, 6), "w_query": normal(6, 6), "w_key": normal(6, 6), "w_value": normal(6, 9),
                "b_query": normal(6), "b_value": normal(9), "heads": 3, "scale": "none",
                "mask": random_mask(5, 5),
            },
        },
        {
            "name": "sdpa_fully_masked_row",
            "about": "batch 2, query 1 of batch item 1 sees no key: weights 0, output row = b_out",
            "route": "sdpa",
            "document": {
                "x": normal(2, 3, 4), "w_query": normal(4, 4), "w_key": normal(4, 4), "w_value": normal(4, 4),
                "w_out": normal(4, 3), "b_out": normal(3), "heads": 2,
                "mask": [[[1, 1, 1], [1, 0, 1], [1, 1, 0]], [[1, 0, 0], [0, 0, 0], [1, 1, 1]]],
            },
        },
        {
            "name": "sdpa_large_logits",
            "about": "logits in the thousands: a naive softmax would overflow",
            "route": "sdpa",
            "document": {
                "x": normal(4, 4, spread=30.0), "w_query": normal(4, 4), "w_key": normal(4, 4),
                "w_value": normal(4, 4), "heads": 1,
            },
        },
    ]


def pytorch_named(rng: np.random.Generator) -> None:
    """nn.MultiheadAttention layers saved under their own parameter names, and their outputs."""
    torch.manual_seed(int(rng.integers(1 << 30)))
    expected = {"about": "Outputs of nn.MultiheadAttention(batch_first=True) for the layers saved beside this "
                "file under PyTorch's parameter names. Made by tests/data/make_torch_golden.py",
                "torch_version": torch.__version__}

    # packed in_proj_weight (self-attention), saved exactly as the README tells users to
    mha = torch.nn.MultiheadAttention(6, 3, batch_first=True, dtype=DTYPE).eval()
    with torch.no_grad():
        for parameter in mha.parameters():  # PyTorch zeroes the biases at first: make them count
            parameter.normal_()
    x = torch.randn(2, 4, 6, dtype=DTYPE)
    state = {name: t.detach().numpy() for name, t in mha.state_dict().items()}
    np.savez(NAMED_NPZ, x=x.numpy(), heads=mha.num_heads, **state)
    with torch.no_grad():
        expected["packed"] = mha(x, x, x, need_weights=False)[0].numpy().tolist()

    # separate q/k/v_proj_weight (cross-attention: kdim = vdim = 8 != embed_dim 4), as JSON;
    # attncli computes K and V from one context, so the module gets that tensor as key and value
    x, context = torch.randn(1, 3, 4, dtype=DTYPE), torch.randn(1, 5, 8, dtype=DTYPE)
    mha_cross = torch.nn.MultiheadAttention(4, 2, batch_first=True, kdim=8, vdim=8, dtype=DTYPE).eval()
    with torch.no_grad():
        for parameter in mha_cross.parameters():
            parameter.normal_()
    document = {name: t.detach().numpy().tolist() for name, t in mha_cross.state_dict().items()}
    document.update(x=x.numpy().tolist(), context=context.numpy().tolist(), heads=mha_cross.num_heads)
    NAMED_JSON.write_text(json.dumps(document, indent=1) + "\n")
    with torch.no_grad():
        expected["separate"] = mha_cross(x, context, context, need_weights=False)[0].numpy().tolist()
    NAMED_EXPECTED.write_text(json.dumps(expected, indent=1) + "\n")
    print(f"wrote {NAMED_NPZ.name}, {NAMED_JSON.name}, {NAMED_EXPECTED.name}")


def main() -> None:
    rng = np.random.default_rng(20261126)
    golden = {
        "about": "Problems in attncli's format and the steps PyTorch computes for them, in float64. "
        "Made by tests/data/make_torch_golden.py",
        "torch_version": torch.__version__,
        "cases": [],
    }
    for case in cases(rng):
        expected = via_module(case["document"]) if case["route"] == "module" else via_sdpa(case["document"])
        golden["cases"].append({**case, "expected": expected})
    OUT.write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {OUT} ({len(golden['cases'])} cases, torch {torch.__version__})")
    pytorch_named(rng)


if __name__ == "__main__":
    main()
