"""Names shared by every layer. No numpy: the CLI's --help and option checks use it without paying
numpy's import. (Message wording lives in attncli.wording.)"""

from __future__ import annotations

MATRIX_KEYS = (
    "x", "context",
    "w_query", "w_key", "w_value",
    "b_query", "b_key", "b_value",
    "w_out", "b_out",
)
# The arrays a file can hold: the matrices and a mask array.
FILE_KEYS = MATRIX_KEYS + ("mask",)
OPTION_KEYS = ("heads", "scale", "mask")
# The variants of modern attention (grouped-query, rotary, windows, caps, sinks…): all optional.
VARIANT_KEYS = (
    "kv_heads", "positions", "rope", "qk_norm", "softcap", "alibi", "bias", "padding", "window",
    "sinks", "masked_rows", "bias_k", "bias_v", "add_zero_attn",
    # false reads 3-D inputs as (seq, batch, E) and gives the output so, as PyTorch's default
    "batch_first",
)
# Labels of the rows (attncli.tokens): shown beside the indices, never computed with.
LABEL_KEYS = ("tokens", "context_tokens")
# "about" lets a document describe itself (samples do); it is never computed with.
KNOWN_KEYS = MATRIX_KEYS + OPTION_KEYS + VARIANT_KEYS + LABEL_KEYS + ("about",)
REQUIRED_KEYS = ("x", "w_query", "w_key", "w_value")
# What each required matrix is, for the message that says it is missing.
REQUIRED_ROLES = {
    "x": "the input, (seq_len, d_model) or (batch, seq_len, d_model)",
    "w_query": "the query weights, (d_model, heads*head_dim)",
    "w_key": "the key weights, (d_model, heads*head_dim)",
    "w_value": "the value weights, (d_model, heads*head_dim_v)",
}
STEP_NAMES = (
    "q", "k", "v", "q_normed", "k_normed", "q_rotated", "k_rotated", "scores", "logits", "capped", "biased",
    "softmax", "averaged", "concat", "output",
)
# check's default tolerances: |yours - attncli| <= ATOL + RTOL·|attncli|, as numpy.isclose
DEFAULT_ATOL = 1e-6
DEFAULT_RTOL = 1e-5

