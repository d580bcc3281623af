"""Write the bad-input corpus: one malformed input per file, and cases.json, which says how each is
run and the one-line error it must give. Rerun from the project root after changing a case:

    python tests/bad_inputs/make_corpus.py
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
GOOD = {
    "x": [[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]],
    "w_query": [[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1]],
    "w_key": [[0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]],
    "w_value": [[0, 2, 0], [0, 3, 0], [1, 0, 3], [1, 1, 0]],
}


def doc(**changes):
    document = {**GOOD, **changes}
    return json.dumps({key: value for key, value in document.items() if value is not ...})


# four-column weights: head_dim 4 with one head, 2 with two, 1 with four
SQUARE = [[1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 0], [0, 0, 1, 1]]


def doc4(**changes):
    return doc(w_query=SQUARE, w_key=SQUARE, w_value=SQUARE, **changes)


def per_head(heads, head_dim):
    """A per-head weight (heads, d_model 4, head_dim)."""
    return [[[1] * head_dim for _ in range(4)] for _ in range(heads)]


# the document one key to a line, as people write it: "{", the four keys on lines 2-5, "}"
LINES = ["{", *(f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in GOOD.items()), "}"]

# name -> (content, extra command-line arguments, the message after "Error: FILE: ")
JSON_CASES = {
    "trailing_comma.json": ("\n".join(LINES), [],
                            f"line 5, column {len(LINES[4])}: a comma before '}}' is not allowed in JSON"),
    "missing_comma.json": ("\n".join([*LINES[:3], LINES[3].rstrip(","), LINES[4].rstrip(","), "}"]), [],
                           "line 5: expected a comma after the value on line 4"),
    "truncated.json": (doc()[:40], [], "invalid JSON at line 1, column 41: Expecting ',' delimiter"),
    "empty.json": ("", [], "is empty; expected a JSON object"),
    "whitespace.json": ("  \n\t\n", [], "is empty; expected a JSON object"),
    "array_top.json": ("[1, 2, 3]", [], "expected a JSON object with x, w_query, w_key and w_value, got an array"),
    "string_top.json": ('"hello"', [], "expected a JSON object with x, w_query, w_key and w_value, got the string 'hello'"),
    "missing_x.json": (doc(x=...), [], "missing x (the input, (seq_len, d_model) or (batch, seq_len, d_model))"),
    "missing_w_value.json": (doc(w_value=...), [], "missing w_value (the value weights, (d_model, heads*head_dim_v))"),
    "string_cell.json": (doc(x=[[1, "0", 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]]), [], "x[0][1] is the string '0', expected a number"),
    "null_cell.json": (doc(x=[[1, None, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]]), [], "x[0][1] is null, expected a number"),
    "bool_cell.json": (doc(w_key=[[True, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]]), [], "w_key[0][0] is true, expected a number"),
    "object_for_matrix.json": (doc(x={"rows": 3}), [], "x is an object, expected a number"),
    "nested_too_deep.json": (doc(x=[[[[[[1]]]]]]), [], "x must be a 2-D or 3-D array, got a 6-D array of shape "
                                                       "1×1×1×1×1×1"),
    "nested_far_too_deep.json": (doc(x=[[[[[[[[[[1, 2], [3]]]]]]]]]]), [],
                                 "x is nested more than 4 deep; a matrix has at most 4 axes"),
    "empty_matrix.json": (doc(x=[]), [], "x must be a 2-D or 3-D array, got a 1-D array of shape 0"),
    "zero_width.json": (doc(x=[[], [], []]), [], "x is empty (shape 3×0)"),
    "ragged.json": (doc(x=[[1, 0, 1, 0], [0, 2, 0], [1, 1, 1, 1]]), [], "x: row 1 has 3 values but row 0 has 4"),
    "nan_literal.json": (doc().replace("[[1, 0, 1, 0]", "[[1, NaN, 1, 0]", 1), [], "x[0][1] is NaN; every value must be a finite number"),
    "infinity_literal.json": (doc().replace("[[1, 0, 1, 0]", "[[1, Infinity, 1, 0]", 1), [], "x[0][1] is infinite (beyond ±1.8e308); every value must be a finite number"),
    "huge_number.json": (doc().replace("[[1, 0, 1, 0]", "[[1, 1e400, 1, 0]", 1), [], "x[0][1] is infinite (beyond ±1.8e308); every value must be a finite number"),
    "overflow_1e308.json": (doc(x=[[1e308, 1e308, 1e308, 1e308]] * 3), [], "q overflows float64 at (q_len 0, head_dim 0): beyond ±1.8e308; scale the inputs or weights down"),
    "heads_zero.json": (doc(heads=0), [], "heads is 0; it must be at least 1"),
    "heads_negative.json": (doc(heads=-3), [], "heads is -3; it must be at least 1"),
    "heads_fraction.json": (doc(heads=1.5), [], "heads is 1.5; it must be a whole number of at least 1"),
    "heads_string.json": (doc(heads="two"), [], "heads is the string 'two'; it must be a whole number of at least 1"),
    "heads_not_dividing.json": (doc(heads=2), [], "w_query has 3 columns, which do not split into 2 heads (head counts that would: 1, 3)"),
    "scale_zero.json": (doc(scale=0), [], "scale is 0; it must be a positive finite number"),
    "scale_negative.json": (doc(scale=-0.5), [], "scale is -0.5; it must be a positive finite number"),
    "scale_typo.json": (doc(scale="sqrtt"), [], "scale is 'sqrtt'; use \"sqrt\" (1/sqrt(head_dim)), \"none\" (1) or a positive number; did you mean 'sqrt'?"),
    "mask_wrong_shape.json": (doc(mask=[[1, 1], [1, 1]]), [], "mask has shape 2×2 but the scores need 3×3 (q_len, k_len)"),
    "mask_not_binary.json": (doc(mask=[[1, 0.5, 1]] * 3), [], "mask[0][1] is 0.5; a mask holds 0/1 or false/true (1 = may attend)"),
    "mask_typo.json": (doc(mask="casual"), [], "mask is 'casual'; use \"causal\", \"causal_lower_right\" or an array of 0/1 (1 = may attend); did you mean 'causal'?"),
    "context_other_batch.json": (doc(x=[GOOD["x"]] * 2, context=[GOOD["x"]] * 3), [], "context has a batch of 3 but x has 2"),
    "weights_mismatch.json": (doc(w_query=GOOD["w_query"][:3]), [], "w_query has 3 rows but x has 4 columns"),
    "unknown_key.json": (doc(w_qeury=[[1]]), [], "unknown key 'w_qeury'; did you mean 'w_query'?"),
    "duplicate_key.json": ('{"x": [[1]], "x": [[2]]}', [], "key 'x' appears twice in one object"),
}

# the keys of modern attention's variants (issue 11): one case for each way each key goes wrong
ROPE_STYLES = "use \"neox\" (halves, Llama) or \"gptj\" (adjacent pairs)"
ROPE_SHAPES = 'use "neox", "gptj" or {"style": …, "theta": …, "rotary_dim": …}'
NORM_OVER = "use \"head\" (each head's head_dim values, Qwen3) or \"all\" (the whole projection, OLMo 2)"
MINUS_INFINITY = "each value is a finite number or −∞ (null or \"-inf\" in JSON, -inf in NPY)"
POSITIONS = 'positions must be an object {"query": [...], "key": [...]} of whole numbers'
QK = {"q_weight": [1, 1, 1, 1], "k_weight": [1, 1, 1, 1]}
BIAS = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
VARIANT_CASES = {
    "window_zero.json": (doc(window=0), [], "window is 0; it must be at least 1"),
    "window_string.json": (doc(window="3"), [], "window is the string '3'; it must be a whole number of at least 1"),
    "window_fraction.json": (doc(window=2.5), [], "window is 2.5; it must be a whole number of at least 1"),
    "kv_heads_not_dividing.json": (doc4(heads=4, kv_heads=3), [],
                                   "kv_heads is 3, which does not divide heads 4 (kv_heads that would: 1, 2, 4)"),
    "kv_heads_zero.json": (doc(kv_heads=0), [], "kv_heads is 0; it must be at least 1"),
    "kv_heads_per_head_count.json": (doc(w_query=per_head(4, 1), w_key=per_head(4, 1), w_value=per_head(2, 1),
                                         kv_heads=2), [],
                                     "kv_heads is 2 but w_key holds 4 heads; a per-head w_key is "
                                     "(kv_heads, d_model, head_dim), so it needs 2"),
    "per_head_fewer_without_kv_heads.json": (doc(w_query=per_head(2, 2), w_key=per_head(1, 2),
                                                 w_value=per_head(1, 2)), [],
                                             "w_key holds 1 head but w_query holds 2; for grouped-query attention "
                                             "give kv_heads: 1"),
    "rope_rotary_dim_odd.json": (doc4(rope={"style": "neox", "rotary_dim": 3}), [],
                                 "rope.rotary_dim is 3; it must be even and at most head_dim 4"),
    "rope_rotary_dim_too_big.json": (doc4(rope={"rotary_dim": 6}), [],
                                     "rope.rotary_dim is 6; it must be even and at most head_dim 4"),
    "rope_style_typo.json": (doc4(rope="neoxx"), [], f"rope.style is 'neoxx'; {ROPE_STYLES}; did you mean 'neox'?"),
    "rope_style_in_object.json": (doc4(rope={"style": "gpt-j"}), [],
                                  f"rope.style is 'gpt-j'; {ROPE_STYLES}; did you mean 'gptj'?"),
    "rope_number.json": (doc4(rope=1), [], f"rope is 1; {ROPE_SHAPES}"),
    "rope_array.json": (doc4(rope=["neox"]), [], f"rope is an array; {ROPE_SHAPES}"),
    "rope_unknown_key.json": (doc4(rope={"style": "neox", "thetaa": 500}), [],
                              "rope has an unknown key 'thetaa'; did you mean 'theta'?"),
    "rope_inv_freq_length.json": (doc4(rope={"inv_freq": [1.0]}), [],
                                  "rope.inv_freq has 1 value but rotary_dim 4 has 2 pairs"),
    "rope_theta_zero.json": (doc4(rope={"theta": 0}), [], "rope.theta is 0; it must be a positive finite number"),
    "rope_theta_and_inv_freq.json": (doc4(rope={"theta": 10000, "inv_freq": [1.0, 0.01]}), [],
                                     "rope gives both theta and inv_freq; give one (theta makes the frequencies "
                                     "theta^(-2i/rotary_dim), inv_freq lists them)"),
    "qk_norm_weight_length.json": (doc4(qk_norm={**QK, "q_weight": [1, 1, 1]}), [],
                                   "qk_norm.q_weight has 3 values but over \"head\" it needs head_dim = 4"),
    "qk_norm_all_weight_length.json": (doc4(heads=2, qk_norm={**QK, "q_weight": [1, 1], "over": "all"}), [],
                                       "qk_norm.q_weight has 2 values but over \"all\" it needs heads*head_dim = 4"),
    "qk_norm_no_k_weight.json": (doc4(qk_norm={"q_weight": [1, 1, 1, 1]}), [],
                                 "qk_norm has no k_weight; give both q_weight and k_weight (k_weight over \"head\": "
                                 "head_dim = 4 values)"),
    "qk_norm_over_typo.json": (doc4(qk_norm={**QK, "over": "heads"}), [],
                               f"qk_norm.over is 'heads'; {NORM_OVER}; did you mean 'head'?"),
    "softcap_zero.json": (doc(softcap=0), [], "softcap is 0; it must be a positive finite number"),
    "softcap_negative.json": (doc(softcap=-1), [], "softcap is -1; it must be a positive finite number"),
    "softcap_string.json": (doc(softcap="50"), [], "softcap is the string '50'; it must be a positive number"),
    "alibi_slope_count.json": (doc4(heads=2, alibi=[0.5]), [], "alibi has 1 slope but there are 2 heads"),
    "alibi_string.json": (doc4(heads=2, alibi="yes"), [],
                          "alibi is the string 'yes'; use true (Press et al.'s slopes) or a list of 2 slopes, "
                          "one per head"),
    "bias_wrong_shape.json": (doc(bias=[[0, 0], [0, 0]]), [],
                              "bias has shape 2×2 but the logits need 3×3 (q_len, k_len)"),
    "bias_one_axis.json": (doc(bias=[0, 0, 0]), [],
                           "bias must be a 2-D (q_len, k_len), 3-D (batch, q_len, k_len) or 4-D "
                           "(batch, heads, q_len, k_len) array, got a 1-D array of shape 3"),
    "bias_nan_string.json": (doc(bias=[[0, "nan", 0], *BIAS[1:]]), [],
                             f"bias[0][1] is the string 'nan'; {MINUS_INFINITY}"),
    "bias_nan_literal.json": (doc(bias=BIAS).replace("[[0, 0, 0]", "[[0, NaN, 0]", 1), [],
                              f"bias[0][1] is NaN; {MINUS_INFINITY}"),
    "bias_plus_infinity.json": (doc(bias=BIAS).replace("[[0, 0, 0]", "[[0, Infinity, 0]", 1), [],
                                f"bias[0][1] is +∞; {MINUS_INFINITY}"),
    "bias_inf_string.json": (doc(bias=[[0, "inf", 0], *BIAS[1:]]), [],
                             f"bias[0][1] is the string 'inf'; {MINUS_INFINITY}"),
    "padding_length.json": (doc(padding=[1, 1]), [],
                            "padding has 2 values but there are 3 keys; padding is (k_len,) or (batch, k_len), a 0/1 "
                            "per key"),
    "padding_two.json": (doc(padding=[1, 2, 1]), [], "padding[1] is 2; padding holds 0/1 (1 = a real key, 0 = padding)"),
    "sinks_length.json": (doc4(heads=2, sinks=[0.0]), [], "sinks has 1 value but there are 2 heads"),
    "sinks_nan_string.json": (doc(sinks=["nan"]), [], f"sinks[0] is the string 'nan'; {MINUS_INFINITY}"),
    "masked_rows_none.json": (doc(masked_rows="none"), [],
                              "masked_rows is 'none'; use \"zero\" (weights and output 0, as SDPA) or \"nan\" "
                              "(as nn.MultiheadAttention); did you mean 'nan'?"),
    "positions_fraction.json": (doc(positions={"query": [0, 1.5, 2]}), [],
                                "positions.query[1] is 1.5; positions are whole numbers"),
    "positions_query_length.json": (doc(positions={"query": [0, 1]}), [],
                                    "positions.query has 2 values but there are 3 queries"),
    "positions_list.json": (doc(positions=[0, 1, 2]), [], f"{POSITIONS}, not an array"),
    "positions_unknown_key.json": (doc(positions={"query": [0, 1, 2], "keys": [0, 1, 2]}), [],
                                   f"{POSITIONS}; unknown key 'keys'"),
    "positions_too_far.json": (doc(positions={"query": [0, 1, 1e17]}), [],
                               "positions.query[2] is 1e+17; positions must lie within ±2^53"),
    "bias_k_alone.json": (doc(bias_k=[1, 2, 3]), [],
                          "bias_k is given without bias_v: add_bias_kv appends a key and a value, give both"),
    "bias_k_width.json": (doc(bias_k=[[[1, 2]]], bias_v=[1, 2, 3]), [],
                          "bias_k has shape 1×1×2; it is one row of 3 values (w_key's columns), (1, 1, 3) as PyTorch "
                          "keeps it"),
    "bias_k_rows.json": (doc(bias_k=[[1, 2, 3], [1, 2, 3]], bias_v=[1, 2, 3]), [],
                         "bias_k has shape 2×3; it is one row of 3 values (w_key's columns), (1, 1, 3) as PyTorch "
                         "keeps it"),
    "add_zero_attn_word.json": (doc(add_zero_attn="yes"), [],
                                "add_zero_attn is the string 'yes'; it is true (a key and a value of zeros appended, "
                                "as nn.MultiheadAttention(add_zero_attn=True)) or false"),
    "add_zero_attn_causal.json": (doc(add_zero_attn=True, mask="causal"), [],
                                  "mask 'causal' is given with add_zero_attn: give the mask as an array (attn_mask), "
                                  "which PyTorch pads with a visible column for each appended key"),
    "add_zero_attn_rope.json": (doc4(add_zero_attn=True, rope="neox"), [],
                                "rope is given with add_zero_attn: an appended key has no position "
                                "(nn.MultiheadAttention has neither)"),
    "mask_lower_right_typo.json": (doc(mask="causal_lower_rigth"), [],
                                   "mask is 'causal_lower_rigth'; use \"causal\", \"causal_lower_right\" or an array "
                                   "of 0/1 (1 = may attend); did you mean 'causal_lower_right'?"),
    # tokens: labels of the rows, one string per query (and per key of a context)
    "tokens_too_few.json": (doc(tokens=["The", "cat"]), [],
                            "tokens has 2 strings but x has 3 queries: one token per query"),
    "tokens_string.json": (doc(tokens="The cat sat"), [],
                           "tokens is the string 'The cat sat'; it is a list of strings, one per query"),
    "tokens_number.json": (doc(tokens=["The", 7, "sat"]), [], "tokens[1] is 7; a token is a string"),
    "tokens_null_item.json": (doc(tokens=["The", None, "sat"]), [], "tokens[1] is null; a token is a string"),
    "tokens_nested_unbatched.json": (doc(tokens=[["The", "cat", "sat"]]), [],
                                     "tokens has 1 string but x has 3 queries: one token per query"),
    "tokens_batch_count.json": (doc(x=[GOOD["x"]] * 2, tokens=[["a", "b", "c"]] * 3), [],
                                "tokens has 3 lists but x has a batch of 2: give one list per batch item, or one list "
                                "for every item"),
    "tokens_batch_item.json": (doc(x=[GOOD["x"]] * 2, tokens=[["a", "b", "c"], ["a", "b"]]), [],
                               "tokens[1] has 2 strings but x has 3 queries: one token per query"),
    "context_tokens_self.json": (doc(context_tokens=["a", "b", "c"]), [],
                                 "context_tokens is given without context: in self-attention the keys are the tokens "
                                 "(give tokens)"),
    "context_tokens_count.json": (doc(context=[[1, 0, 1, 0], [0, 2, 0, 2]], context_tokens=["a", "b", "c"]), [],
                                  "context_tokens has 3 strings but context has 2 keys: one token per key"),
}


# --- damaged safetensors files ---------------------------------------------------------------------
# Read through attncli.safetensors.SafeTensorsFile by tests/test_safetensors.py, and as a model by
# the CLI (compute FILE --layer 0: the header is refused before a layer or x is looked for).

SAFETENSORS_DTYPES = {"<f8": "F64", "<f4": "F32", "<f2": "F16", "<i8": "I64", "<i4": "I32", "|u1": "U8", "|b1": "BOOL"}


def safetensors_bytes(tensors, metadata=None, changes=None, length=None):
    """A safetensors file: ``tensors`` maps names to arrays (their dtype names the file's) or to
    (dtype name, raw bytes, shape); ``changes`` overrides header entries' fields after the layout;
    ``length`` overrides the header length written first."""
    header, data = ({"__metadata__": metadata} if metadata is not None else {}), b""
    for name, tensor in tensors.items():
        if isinstance(tensor, tuple):
            dtype, raw, shape = tensor
        else:
            little = tensor.astype(tensor.dtype.newbyteorder("<"))
            dtype, raw, shape = SAFETENSORS_DTYPES[little.dtype.str], little.tobytes(), tensor.shape
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    for name, change in (changes or {}).items():
        header[name] = {**header[name], **change}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


TWO = {"a": np.arange(8, dtype="<f4"), "b": np.ones((4, 4), dtype="<f4")}  # a: bytes 0-32, b: 32-96
GOOD_SAFETENSORS = safetensors_bytes(TWO)
HEADER = GOOD_SAFETENSORS[8:-96]
# name -> (the file's bytes, the message after "Error: FILE: ")
SAFETENSORS_CASES = {
    "truncated.safetensors": (GOOD_SAFETENSORS[:-40],
                              "tensor 'b' claims bytes 32–96 but the data area holds only 56 (is the file truncated?)"),
    "header_beyond_file.safetensors": (struct.pack("<Q", 4096) + GOOD_SAFETENSORS[8:],
                                       f"header length 4096 is beyond the file's {len(GOOD_SAFETENSORS)} bytes"),
    "header_100gb.safetensors": (struct.pack("<Q", 100 * 1024**3) + b"{}",
                                 "header length 107374182400 is beyond the file's 10 bytes"),
    "too_short.safetensors": (b"\x10\x00\x00", "is 3 bytes, too short for a safetensors file (8 bytes of header "
                                                "length, then the header)"),
    "offsets_out_of_range.safetensors": (safetensors_bytes(TWO, changes={"b": {"data_offsets": [64, 128]}}),
                                         "tensor 'b' claims bytes 64–128 but the data area holds only 96 (is the "
                                         "file truncated?)"),
    "overlapping.safetensors": (safetensors_bytes(TWO, changes={"b": {"data_offsets": [16, 80]}}),
                                "tensors 'a' and 'b' overlap (bytes 0–32 and 16–80)"),
    "wrong_dtype_size.safetensors": (safetensors_bytes(TWO, changes={"b": {"dtype": "F16"}}),
                                     "tensor 'b' claims bytes 32–96 but F16 × 4×4 needs 32"),
    "wrong_shape_size.safetensors": (safetensors_bytes(TWO, changes={"b": {"shape": [4, 8]}}),
                                     "tensor 'b' claims bytes 32–96 but F32 × 4×8 needs 128"),
    "header_not_json.safetensors": (struct.pack("<Q", len(HEADER)) + HEADER.replace(b'"a"', b"'a'") + GOOD_SAFETENSORS[-96:],
                                    "the header is not JSON: Expecting property name enclosed in double quotes at "
                                    "byte 9"),
    "header_not_utf8.safetensors": (struct.pack("<Q", len(HEADER)) + HEADER.replace(b'"a"', b'"\xff"') + GOOD_SAFETENSORS[-96:],
                                    "the header is not JSON: byte 0xff at offset 10 is not UTF-8"),
    "header_array.safetensors": (struct.pack("<Q", 2) + b"[]", "the header is an array, not a JSON object of tensors"),
    "unknown_dtype.safetensors": (safetensors_bytes(TWO, changes={"a": {"dtype": "F4"}}),
                                  "tensor 'a' has dtype 'F4', which attncli does not know; it reads F64, F32, F16 and "
                                  "BF16"),
    "negative_shape.safetensors": (safetensors_bytes(TWO, changes={"a": {"shape": [-8]}}),
                                   "tensor 'a' has shape [-8]; a shape is a list of whole numbers"),
    "metadata_number.safetensors": (safetensors_bytes(TWO, metadata={"format": 3}),
                                    "__metadata__ must be an object of strings, got 'format': 3"),
}


def write_safetensors_cases() -> None:
    for name, (content, _message) in SAFETENSORS_CASES.items():
        (HERE / name).write_bytes(content)


def main() -> None:
    cases = {}
    for name, (content, args, message) in {**JSON_CASES, **VARIANT_CASES}.items():
        (HERE / name).write_text(content)
        cases[name] = {"args": args, "message": message}
    # bytes and other formats
    (HERE / "binary.json").write_bytes(bytes(range(256)))
    cases["binary.json"] = {"args": [], "message": "is not UTF-8 text: byte 0x80 at offset 128"}
    (HERE / "utf16.json").write_bytes(doc().encode("utf-16"))
    cases["utf16.json"] = {"args": [], "message": "is not UTF-8 text: byte 0xff at offset 0 (it looks like UTF-16: save it as UTF-8)"}
    (HERE / "ragged.csv").write_text("1,0,1,0\n0,2,0\n1,1,1,1\n")
    cases["ragged.csv"] = {"problem": "good.json", "option": "--x", "message": "line 2 has 3 values but line 1 has 4"}
    (HERE / "word.csv").write_text("1,0,1,0\n0,two,0,2\n1,1,1,1\n")
    cases["word.csv"] = {"problem": "good.json", "option": "--x", "message": "line 2, column 2: 'two' is not a number"}
    (HERE / "empty.csv").write_text("")
    cases["empty.csv"] = {"problem": "good.json", "option": "--x", "message": "is empty"}
    np.save(HERE / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    cases["pickled.npy"] = {"problem": "good.json", "option": "--x",
                            "message": "holds Python objects (a pickle), which attncli never loads: save plain "
                                       "numeric arrays (np.save with a float or bool array)"}
    np.save(HERE / "vector.npy", np.array([1.0, 2.0, 3.0, 4.0]))
    cases["vector.npy"] = {"problem": "good.json", "option": "--x",
                           "message": "x must be a 2-D or 3-D array, got a 1-D array of shape 4"}
    # NPY holds NaN and ±∞ as numbers: a bias may hold −∞ but never NaN or +∞
    good = {key: np.array(value, dtype=np.float64) for key, value in GOOD.items()}
    for name, cell, what in (("bias_nan.npz", np.nan, "NaN"), ("bias_plus_infinity.npz", np.inf, "+∞")):
        bias = np.zeros((3, 3))
        bias[1, 2] = cell
        np.savez(HERE / name, **good, bias=bias)
        cases[name] = {"args": [], "message": f"bias[1][2] is {what}; each value is a finite number or −∞ (null or "
                                              "\"-inf\" in JSON, -inf in NPY)"}
    (HERE / "not_really.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    cases["not_really.npz"] = {"args": [], "message": "is not a valid .npz file (File is not a zip file)"}
    (HERE / "good.json").write_text(doc())
    (HERE / "noextension").write_text(doc())
    cases["noextension"] = {"args": [], "message": "unknown extension '(none)': a problem is a .json or .npz file or a "
                                                   "folder (single matrices go in --x, --w-query, …)"}
    (HERE / "lines_not_objects.jsonl").write_text("[1, 2]\n")
    cases["lines_not_objects.jsonl"] = {"args": [], "message": "line 1: expected a JSON object with x, w_query, w_key "
                                                               "and w_value, got an array"}
    folder = HERE / "folder_without_x"
    folder.mkdir(exist_ok=True)
    (folder / "w_query.csv").write_text("1,0,1\n1,0,0\n0,0,1\n0,1,1\n")
    cases["folder_without_x"] = {"args": [], "message": "holds no x (x.csv, x.tsv, x.json, x.npy or x.txt); a problem "
                                                        "folder has one file per matrix"}
    # bad options on a good problem: usage errors, one line each
    for name, args, message in (
        ("option_heads_zero", ["--heads", "0"], "Invalid value for '--heads': 0 is not allowed; use a whole number "
                                                "of at least 1 (see 'attncli compute --help')"),
        ("option_scale_word", ["--scale", "sqrtt"], None),
        ("option_dtype", ["--dtype", "float8"], "Invalid value for '--dtype': 'float8' is not one of float64, "
                                                "float32, float16, bfloat16 (see 'attncli compute --help')"),
        ("option_precision", ["--precision", "99"], "Invalid value for '--precision': 99 is not allowed; use a "
                                                    "whole number from 0 to 17 (see 'attncli compute --help')"),
        ("option_step", ["--step", "attn"], "Invalid value for --step: 'attn' is not a step; the steps are q, k, v, "
                                            "q_normed, k_normed, q_rotated, k_rotated, scores, logits, capped, biased, softmax, averaged, concat, output; did you mean 'softmax'? "
                                            "(see 'attncli compute --help')"),
        ("option_format", ["--format", "xlsx"], "Invalid value for '--format' / '-f': 'xlsx' is not one of table, "
                                                "json, csv, npz (see 'attncli compute --help')"),
    ):
        if message is None:  # an option whose value the problem checks: the error names the file
            cases[name] = {"problem": "good.json", "args": args,
                           "message": "scale is 'sqrtt'; use \"sqrt\" (1/sqrt(head_dim)), \"none\" (1) or a "
                                      "positive number; did you mean 'sqrt'?"}
        else:
            cases[name] = {"problem": "good.json", "args": args, "message": message, "usage": True}
    write_safetensors_cases()
    for name, (_content, message) in SAFETENSORS_CASES.items():
        cases[name] = {"args": ["--layer", "0"], "message": message}
    (HERE / "cases.json").write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {len(cases)} cases to {HERE}")


if __name__ == "__main__":
    main()
