"""The common mistakes ``check`` can name, in words: a short name, what it means and the fix.

How each is computed (the stages with a slip, or the problem with one thing changed) is in
wrong_runs.py; the comparison that names them is in mistakes.py. Pure Python: no numpy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    """A common mistake: a short ``name``, what it ``means`` and the one-line ``fix``; ``parts``
    names the two mistakes a pair is made of (empty for one mistake)."""

    name: str
    means: str
    fix: str
    parts: tuple[str, ...] = ()


MISTAKES = {
    "transposed_weighted_sum": Mistake(
        "weighted values summed over the query axis",
        "the output was computed as softmaxᵀ·V: each value row weighted by a column of the weights",
        "sum over the keys: output[i] = Σ_j softmax[i, j]·V[j], i.e. softmax·V, not softmax.T·V"),
    "softmax_over_queries": Mistake(
        "softmax over the wrong axis",
        "each column of the weights sums to 1 (softmax over the queries) instead of each row",
        "normalise over the keys, the last axis: softmax(scores, axis=-1)"),
    "no_scaling": Mistake(
        "scores not scaled",
        "the scores went into the softmax without the 1/√head_dim factor",
        "divide the scores by √head_dim before the softmax"),
    "scaled_not_asked": Mistake(
        "scores scaled though the problem says scale: none",
        "the scores were divided by √head_dim, but this problem asks for no scaling",
        "leave the scores as they are (scale=1.0 in F.scaled_dot_product_attention), or drop "
        "\"scale\": \"none\" from the problem if the scaling was meant"),
    "sqrt_d_model": Mistake(
        "scaled by √d_model instead of √head_dim",
        "the scores were divided by the square root of the model width, not of one head's width",
        "divide by √head_dim = √(d_model / heads)"),
    "scaled_twice": Mistake(
        "scaled twice",
        "the 1/√head_dim factor was applied twice (e.g. to Q and again to the scores)",
        "apply the scale once: to the scores, or √ of it to Q and K each"),
    "divided_by_d": Mistake(
        "divided by head_dim instead of √head_dim",
        "the scores were divided by head_dim itself, not by its square root",
        "divide by math.sqrt(head_dim)"),
    "scores_transposed": Mistake(
        "Q and K swapped",
        "the scores are K·Qᵀ, the transpose of Q·Kᵀ",
        "scores[i, j] = q_i·k_j: compute Q·Kᵀ with queries on the rows"),
    "mask_inverted": Mistake(
        "mask inverted",
        "the mask was read with the opposite meaning: 1 as blocked (PyTorch's nn.MultiheadAttention "
        "convention) where 1 means may attend",
        "flip the mask: attncli and F.scaled_dot_product_attention take 1/True = may attend"),
    "causal_not_asked": Mistake(
        "causal mask applied",
        "each query only saw the keys up to itself, but this problem has no mask",
        "drop the causal mask (is_causal=False), or add \"mask\": \"causal\" to the problem if it was meant"),
    "mask_ignored": Mistake(
        "mask ignored",
        "every key was attended to, though the problem masks some",
        "apply the mask: masked logits must be −∞ before the softmax"),
    "empty_row_uniform": Mistake(
        "a fully masked row given uniform weights",
        "the mask was a large finite number (Hugging Face adds torch.finfo(dtype).min), so a query that "
        "sees no key spread its weight evenly over every key instead of giving 0",
        "mask with −∞ and give a row with no key 0 (as SDPA does), or zero such rows after the softmax"),
    "empty_row_nan": Mistake(
        "a fully masked row gives NaN",
        "a query that sees no key got 0/0 = NaN weights (as nn.MultiheadAttention gives) where this "
        "problem gives 0",
        "give such a row 0 (torch.nan_to_num after the softmax, or SDPA), or set \"masked_rows\": \"nan\" "
        "in the problem if NaN is what you want"),
    "causal_top_left": Mistake(
        "causal mask aligned top-left instead of bottom-right",
        "query i saw keys j ≤ i (is_causal=True's top-left diagonal), but with fewer queries than keys "
        "this problem's last query sees every key (bottom-right, as with a KV cache)",
        "let query i see keys j ≤ i + k_len − q_len: torch.tril(ones(q_len, k_len), diagonal=k_len - q_len)"),
    "causal_bottom_right": Mistake(
        "causal mask aligned bottom-right instead of top-left",
        "query i saw keys j ≤ i + k_len − q_len (the bottom-right diagonal), but this problem's causal "
        "mask is top-left: j ≤ i",
        "let query i see keys j ≤ i (torch.tril(ones(q_len, k_len)), SDPA's is_causal=True), or ask for "
        "\"causal_lower_right\" if the bottom-right was meant"),
    "window_wider": Mistake(
        "window one key too wide",
        "each query saw window + 1 keys: j ≥ i − window instead of j > i − window",
        "keep keys i − window < j ≤ i: window keys, the query's own included"),
    "window_narrower": Mistake(
        "window one key too narrow",
        "each query saw window − 1 keys: j > i − window + 1, the query's own key counted outside the window",
        "keep keys i − window < j ≤ i: window keys, the query's own included"),
    "padding_ignored": Mistake(
        "padding ignored",
        "the padded keys were attended to: the padding was not masked",
        "mask the padded keys (attention_mask, key_padding_mask) with −∞ before the softmax"),
    "weights_not_transposed": Mistake(
        "weights used as (out, in) without transposing",
        "the weights were applied as x·Wᵀ (PyTorch's layout) to weights stored (in, out)",
        "use x·W for attncli's (in, out) weights; PyTorch's (out, in) weights need x·Wᵀ"),
    "torch_weights_not_transposed": Mistake(
        "PyTorch's (out, in) weights applied without transposing",
        "PyTorch's weights (in_proj_weight, q_proj_weight, k_proj_weight, v_proj_weight, out_proj.weight) are "
        "stored (out, in), as nn.Linear stores them, and were applied as x·W",
        "apply PyTorch's weights as x·Wᵀ + b (F.linear(x, W, b)); only attncli's own names (w_query, …) "
        "are (in, out) and take x·W"),
    "heads_interleaved": Mistake(
        "heads split with the wrong reshape",
        "each head took every heads-th column (reshape to (head_dim, heads)) instead of a contiguous block",
        "reshape (batch, seq, heads*head_dim) to (batch, seq, heads, head_dim), then move heads forward"),
    "split_untransposed": Mistake(
        "heads split without the transpose",
        "(batch, seq, heads·head_dim) was viewed as (batch·heads, seq, head_dim) directly, so each head's "
        "rows are runs of numbers from several tokens and heads",
        "view as (batch, seq, heads, head_dim), then transpose(1, 2) to (batch, heads, seq, head_dim)"),
    "merge_untransposed": Mistake(
        "heads merged without moving them back",
        "(batch, heads, seq, head_dim) was viewed as (batch, seq, heads·head_dim) directly, so each "
        "output row mixes the rows of several tokens",
        "transpose(1, 2) to (batch, seq, heads, head_dim) first, then reshape to (batch, seq, heads·head_dim)"),
    "no_output_projection": Mistake(
        "output projection left out",
        "the result is the concatenated heads, without W_O",
        "multiply the concatenated heads by W_O (and add b_O)"),
    "no_biases": Mistake(
        "every bias left out",
        "the projections ran without any of their biases (bias=False, or the biases not loaded)",
        "add each projection's bias after its product: b_query, b_key, b_value and b_out"),
    "rope_style_swapped": Mistake(
        "RoPE style swapped (neox ↔ gptj)",
        "Q and K were rotated pairing the wrong dims: halves (neox, rotate_half) where the problem pairs "
        "neighbours (gptj, rotate_every_two), or the other way round",
        "use the problem's style: \"neox\" pairs dim i with i + rotary_dim/2 (Llama), \"gptj\" pairs 2i "
        "with 2i + 1 (GPT-J)"),
    "rope_q_only": Mistake(
        "RoPE applied to Q only",
        "the queries were rotated but the keys were not",
        "rotate K too, by the keys' positions (apply_rotary_pos_emb returns both q and k)"),
    "rope_from_zero": Mistake(
        "RoPE positions started at 0",
        "the queries were rotated at positions 0, 1, … instead of their own (the cache offset forgotten: "
        "the keys before them come first)",
        "rotate each query at its position: k_len − q_len + i with a KV cache, or the positions given"),
    "rope_left_out": Mistake(
        "RoPE left out",
        "neither Q nor K was rotated",
        "apply the rotary embeddings to Q and K after the projections (and any QK-norm), before Q·Kᵀ"),
    "kv_tiled": Mistake(
        "key/value heads tiled instead of repeated in place",
        "query head h read key/value head h mod kv_heads (K.repeat(1, groups, 1, 1), np.tile) instead of "
        "h ÷ (heads / kv_heads)",
        "repeat each key/value head in place: K.repeat_interleave(heads // kv_heads, dim=1), as Hugging "
        "Face's repeat_kv"),
    "softcap_after_mask": Mistake(
        "soft-capped after the mask",
        "the mask was applied before capping, so masked logits became −cap instead of −∞ and masked keys "
        "kept some weight",
        "cap first, then mask: cap·tanh(logits / cap), then −∞ where masked"),
    "softcap_before_scale": Mistake(
        "soft-capped before the scale",
        "the raw scores were capped, then scaled: cap·tanh(scores / cap)·scale instead of "
        "cap·tanh(scores·scale / cap)",
        "scale the scores first, then cap the logits"),
    "sink_kept": Mistake(
        "the sink's weight kept, a key's dropped",
        "softmax([keys | sink]) was sliced [..., 1:] instead of [..., :-1]: key 0's weight dropped and the "
        "sink's kept in the last key's place",
        "drop the sink's column, the last: probs[..., :-1]"),
    "sink_left_out": Mistake(
        "sink left out of the denominator",
        "the softmax ran over the keys alone, so each row sums to 1 with no share for the head's sink",
        "add exp(sink) to each row's denominator: softmax over [keys | sink], then drop the sink's column"),
    "alibi_sign": Mistake(
        "ALiBi's sign flipped",
        "+slope·(query position − key position) was added: distant keys favoured instead of penalised",
        "add −slope·(i − j): the bias falls with the distance to the key"),
    "qk_norm_left_out": Mistake(
        "QK-norm left out",
        "Q and K went into the scores without their RMSNorm (q_norm, k_norm)",
        "normalise Q and K after the projections and before RoPE: x / √(mean(x²) + eps) · weight"),
}


def bias_mistake(name: str) -> Mistake:
    """One bias (b_query, …) left out."""
    return Mistake(f"{name} left out", f"the computation ran without the bias {name}",
                   f"add {name} after its projection")


def alibi_heads_mistake(count: int, heads: int) -> Mistake:
    """ALiBi's slopes made for ``count`` heads in a layer of ``heads``."""
    return Mistake(f"ALiBi slopes of {count} heads",
                   f"the slopes are Press et al.'s for {count} heads (get_slopes({count})), but this layer has {heads}",
                   f"make the slopes for the layer's own head count: get_slopes({heads})")


def torch_weights_mistake(names: list[str]) -> Mistake:
    """PyTorch's (out, in) weights, under the ``names`` the document used, applied as x·W."""
    generic = MISTAKES["torch_weights_not_transposed"]
    plural = len(names) > 1
    return Mistake(generic.name, f"{', '.join(names)} {'are' if plural else 'is'} stored (out, in), as nn.Linear "
                                 f"stores weights, and {'were' if plural else 'was'} applied as x·W", generic.fix)


def pair_mistake(first: Mistake, second: Mistake) -> Mistake:
    """Two mistakes made at once."""
    return Mistake(f"{first.name}, and {second.name}", f"two mistakes at once: {first.means}; and {second.means}",
                   f"{first.fix}; and {second.fix}", (first.name, second.name))
