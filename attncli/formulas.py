"""The formulas and explanations of the logit and output stages, from the Sizes alone: a real
problem's (naming its scale, cap, biases and masks) or, for sizes alone, the general form. Which
logit stage applies the masks (``masks_at``) is decided here too, for the stages and ``explain``.
Pure Python: no numpy.
"""

from __future__ import annotations

from typing import Any

from attncli.sizes import Sizes


def masks_at(variant: Any) -> str:
    """Which logit stage applies the masks: the last of logits, capped (soft-capping), biased
    (ALiBi or a bias), as the reference code masks after capping and adds its biases with the
    mask. ``variant`` is a Problem or Sizes (both say ``softcap`` and ``additive``)."""
    return "biased" if variant.additive else "capped" if variant.softcap is not None else "logits"


_MASKED = ", masked → −∞"


def logits_formula(sizes: Sizes) -> str:
    if not sizes.exact:
        return "logits = scores × scale"
    scaling = "scores" if sizes.factor == 1.0 else (
        "scores / √head_dim" if sizes.scale == "sqrt" else f"scores × {sizes.factor:g}")
    return "logits = " + scaling + (_MASKED if sizes.masked and masks_at(sizes) == "logits" else "")


def has_logits(sizes: Sizes) -> bool:
    return sizes.scaled or (sizes.masked and masks_at(sizes) == "logits")


def _before_capped(sizes: Sizes) -> str:
    return "logits" if has_logits(sizes) else "scores"


def capped_formula(sizes: Sizes) -> str:
    cap = f"{sizes.softcap:g}" if sizes.softcap is not None else "c"
    masking = _MASKED if sizes.masked and masks_at(sizes) == "capped" else ""
    return f"capped = {cap}·tanh({_before_capped(sizes)} / {cap}){masking}"


def _before_biased(sizes: Sizes) -> str:
    return "capped" if sizes.softcap is not None else _before_capped(sizes)


def biased_formula(sizes: Sizes) -> str:
    terms = [_before_biased(sizes)] + (["ALiBi"] if sizes.alibi else []) + (["bias"] if sizes.bias else [])
    if not sizes.exact and len(terms) == 1:
        terms += ["ALiBi", "bias"]
    return "biased = " + " + ".join(terms) + (_MASKED if sizes.masked else "")


def biased_how(sizes: Sizes) -> str:
    # from sizes alone with neither named (the general form), both
    either = not sizes.exact and not sizes.alibi and not sizes.bias
    parts = (["−slope_h·(query position − key position)"] if sizes.alibi or either else []) + (
        ["the bias"] if sizes.bias or either else [])
    return " and ".join(parts) + " added cell by cell"


def _softmax_input(sizes: Sizes) -> str:
    return "biased" if sizes.additive else _before_biased(sizes)


def softmax_formula(sizes: Sizes) -> str:
    if not sizes.exact:
        return "softmax over keys"
    sink = " and the head's sink (its weight dropped)" if sizes.sinks else ""
    return f"softmax = softmax({_softmax_input(sizes)}) over keys{sink}"


def merge_how(sizes: Sizes) -> str:
    if sizes.heads > 1:
        return f"softmax·V per head, heads joined: {sizes.heads}×{sizes.dim_v} = {sizes.width_v}"
    return "softmax·V: weighted sums of V's rows"


def concat_formula(sizes: Sizes) -> str:
    return "concat = [softmax·V for each head]" if sizes.heads > 1 or not sizes.exact else "concat = softmax·V"


def output_formula(sizes: Sizes) -> str:
    if sizes.d_out is not None:
        return "output = concat·W_O" + (" + b_O" if "b_out" in sizes.biases else "")
    return "output = [softmax·V for each head]" if sizes.heads > 1 else "output = softmax·V"


def output_how(sizes: Sizes) -> str:
    return f"times W_O ({sizes.width_v}×{sizes.d_out})" if sizes.d_out is not None else merge_how(sizes)
