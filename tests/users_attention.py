"""Attention as a user writes it, in plain numpy and independently of attncli's stages, with the
bugs check must name switched on by name: each bug is written where a user's code would make it.

Batch-first (batch, seq, width) inputs, heads split by reshape and transpose, key/value heads
repeated in place, then the reference code's order (Hugging Face's Llama, Gemma 2, gpt-oss):
QK-norm, RoPE, Q·Kᵀ, scale, soft-cap, ALiBi, mask, softmax (with sinks), values, heads joined, W_O.
"""

from __future__ import annotations

import math

import numpy as np


def press_slopes(heads):
    """ALiBi's slopes as Press et al. give them for a power of two heads: 2^(−8k/heads), k = 1…heads."""
    assert math.log2(heads).is_integer()
    return 2.0 ** (-8.0 * np.arange(1, heads + 1) / heads)


def _rotate(values, positions, inv_freq, style):
    angles = positions[:, None] * inv_freq[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    half = len(inv_freq)
    if style == "neox":  # rotate_half
        first, second = values[..., :half], values[..., half:]
        return np.concatenate([first * cos - second * sin, second * cos + first * sin], axis=-1)
    rotated = np.empty_like(values)  # rotate_every_two
    even, odd = values[..., 0::2], values[..., 1::2]
    rotated[..., 0::2], rotated[..., 1::2] = even * cos - odd * sin, odd * cos + even * sin
    return rotated


def users_attention(document, *bugs):
    """The steps scores (batch, heads, q_len, k_len), softmax and output (batch, q_len, d_out) of
    ``document`` (batched x), made with the named ``bugs``."""
    bug = set(bugs)
    x = np.asarray(document["x"], float)
    context = np.asarray(document.get("context", document["x"]), float)
    batch, q_len, k_len = x.shape[0], x.shape[1], context.shape[1]
    heads = document.get("heads", 1)
    kv_heads = document.get("kv_heads", heads)
    weights = {name: np.asarray(document[name], float) for name in ("w_query", "w_key", "w_value")}
    if "untransposed_weights" in bug:  # x·Wᵀ
        weights = {name: weight.T for name, weight in weights.items()}
    projected = []
    for name, source, bias in (("w_query", x, "b_query"), ("w_key", context, "b_key"), ("w_value", context, "b_value")):
        values = source @ weights[name]
        if document.get(bias) is not None and "no_biases" not in bug:
            values = values + np.asarray(document[bias], float)
        projected.append(values)

    def split(values, count):  # (batch, seq, count·dim) -> (batch, count, seq, dim)
        if "split_untransposed" in bug:  # .view(batch·count, seq, dim), no transpose
            return values.reshape(batch, count, values.shape[1], -1)
        return values.reshape(batch, values.shape[1], count, -1).transpose(0, 2, 1, 3)

    q, k, v = split(projected[0], heads), split(projected[1], kv_heads), split(projected[2], kv_heads)
    head_dim = q.shape[-1]
    norm = document.get("qk_norm")
    if norm is not None and "qk_norm_left_out" not in bug:  # over each head
        eps = norm.get("eps", 1e-6)
        q = q / np.sqrt((q**2).mean(-1, keepdims=True) + eps) * np.asarray(norm["q_weight"])
        k = k / np.sqrt((k**2).mean(-1, keepdims=True) + eps) * np.asarray(norm["k_weight"])
    given = document.get("positions") or {}
    query_positions = np.asarray(given.get("query", np.arange(k_len - q_len, k_len)), float)
    key_positions = np.asarray(given.get("key", np.arange(k_len)), float)
    rope = document.get("rope")
    rope = {"style": rope} if isinstance(rope, str) else rope
    if rope is not None and "rope_left_out" not in bug:
        style = rope["style"]
        if "rope_style_swapped" in bug:
            style = "gptj" if style == "neox" else "neox"
        inv_freq = 1.0 / rope.get("theta", 10000.0) ** (np.arange(0, head_dim, 2) / head_dim)
        at = np.arange(q_len, dtype=float) if "rope_from_zero" in bug else query_positions
        q = _rotate(q, at, inv_freq, style)
        if "rope_q_only" not in bug:
            k = _rotate(k, key_positions, inv_freq, style)
    groups = heads // kv_heads
    if "kv_tiled" in bug:  # K.repeat(1, groups, 1, 1)
        k, v = np.tile(k, (1, groups, 1, 1)), np.tile(v, (1, groups, 1, 1))
    else:  # repeat_interleave
        k, v = np.repeat(k, groups, axis=1), np.repeat(v, groups, axis=1)
    scores = q @ k.swapaxes(-1, -2)

    scale = 1.0 / math.sqrt(head_dim) if document.get("scale", "sqrt") == "sqrt" else 1.0
    if "scaled_not_asked" in bug:
        scale = 1.0 / math.sqrt(head_dim)
    if "divided_by_d" in bug:
        scale = 1.0 / head_dim
    if "no_scaling" in bug:
        scale = 1.0
    logits = scores * scale

    allowed = np.ones((batch, 1, q_len, k_len), dtype=bool)
    rule = document.get("mask")
    if isinstance(rule, list):
        allowed &= np.asarray(rule, bool)
    elif rule in ("causal", "causal_lower_right"):
        lower_right = rule == "causal_lower_right"
        lower_right ^= "causal_top_left" in bug or "causal_bottom_right" in bug
        allowed &= np.tri(q_len, k_len, k_len - q_len if lower_right else 0, dtype=bool)
    if "mask_inverted" in bug:
        allowed = ~allowed
    window = document.get("window")
    if window is not None:
        distance = query_positions[:, None] - key_positions[None, :]
        if "window_wider" in bug:
            allowed &= (distance >= 0) & (distance <= window)
        elif "window_narrower" in bug:
            allowed &= (distance >= 0) & (distance < window - 1)
        else:
            allowed &= (distance >= 0) & (distance < window)
    if document.get("padding") is not None and "padding_ignored" not in bug:
        allowed &= np.asarray(document["padding"], bool).reshape(-1, 1, 1, k_len)
    blocked = -np.inf if "empty_row_uniform" not in bug else np.finfo(float).min  # Hugging Face's fill

    cap = document.get("softcap")
    if cap is not None:
        if "softcap_before_scale" in bug:
            logits = cap * np.tanh(scores / cap) * scale
        elif "softcap_after_mask" in bug:
            logits = cap * np.tanh(np.where(allowed, logits, -np.inf) / cap)
        else:
            logits = cap * np.tanh(logits / cap)
    if document.get("alibi") is not None:
        slopes = press_slopes(heads) if document["alibi"] is True else np.asarray(document["alibi"], float)
        if "alibi_slopes_of_twice_the_heads" in bug:
            slopes = press_slopes(2 * heads)[:heads]
        sign = 1.0 if "alibi_sign" in bug else -1.0
        logits = logits + sign * slopes[:, None, None] * (query_positions[:, None] - key_positions[None, :])
    if "softcap_after_mask" not in bug:
        logits = np.where(allowed, logits, blocked)

    sinks = document.get("sinks")
    if sinks is not None and "sink_left_out" not in bug:
        sink = np.broadcast_to(np.asarray(sinks, float)[None, :, None, None], (*logits.shape[:-1], 1))
        combined = np.concatenate([logits, sink], axis=-1)
        combined = combined - combined.max(-1, keepdims=True)
        probs = np.exp(combined) / np.exp(combined).sum(-1, keepdims=True)
        weights = probs[..., 1:] if "sink_kept" in bug else probs[..., :-1]
    else:
        with np.errstate(invalid="ignore", over="ignore"):  # finfo.min − a row's max: −∞, e^−∞ = 0
            shifted = np.exp(logits - logits.max(-1, keepdims=True))
            weights = shifted / shifted.sum(-1, keepdims=True)  # 0/0 = NaN where every key is masked
        if "empty_row_nan" not in bug:
            weights = np.nan_to_num(weights, nan=0.0)
    per_head = weights @ v
    if "merge_untransposed" in bug:  # .view(batch, seq, heads·dim) with no transpose back
        concat = per_head.reshape(batch, q_len, -1)
    else:
        concat = per_head.transpose(0, 2, 1, 3).reshape(batch, q_len, -1)
    output = concat
    if document.get("w_out") is not None:
        w_out = np.asarray(document["w_out"], float)
        output = concat @ (w_out.T if "untransposed_weights" in bug else w_out)
        if document.get("b_out") is not None and "no_biases" not in bug:
            output = output + np.asarray(document["b_out"], float)
    return {"scores": scores, "softmax": weights, "output": output}
