"""Unit tests of variants.py, the validation of issue 11's keys: ALiBi's slopes against the paper's
get_slopes written out, the default positions, RoPE's frequencies, the one mask every hiding rule
folds into, the lower-right causal mask, kv_heads and QK-norm's widths."""

from __future__ import annotations

import numpy as np
import pytest

from attncli import variants
from attncli.errors import ProblemError
from attncli.visibility import parse_mask


def message_of(function, *args) -> str:
    with pytest.raises(ProblemError) as caught:
        function(*args)
    return caught.value.message


# Press et al., get_slopes(n): for a power of two n, start = 2^(-8/n) and the slopes are
# start^1..start^n; otherwise the slopes of the power of two below, then every other slope of twice
# that power (its 1st, 3rd, 5th…) until there are n. Written out by hand from that rule.
PAPER_SLOPES = {
    1: [2**-8],
    2: [2**-4, 2**-8],
    4: [2**-2, 2**-4, 2**-6, 2**-8],
    # 4's slopes, then 8's 1st and 3rd (8's are 2^-1…2^-8)
    6: [0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125],
    8: [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625],
    # 8's slopes, then 16's 1st, 3rd, 5th and 7th (16's are 2^-0.5, 2^-1, 2^-1.5, …)
    12: [0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625,
         0.7071067811865476, 0.3535533905932738, 0.1767766952966369, 0.08838834764831845],
}


@pytest.mark.parametrize("heads", sorted(PAPER_SLOPES))
def test_alibi_slopes_are_the_papers(heads):
    slopes = variants.alibi_slopes(heads)
    assert slopes.shape == (heads,)
    np.testing.assert_allclose(slopes, PAPER_SLOPES[heads], rtol=1e-15, atol=0)


def test_alibi_true_gives_the_papers_slopes_and_a_list_is_kept():
    np.testing.assert_array_equal(variants.alibi(True, 4), PAPER_SLOPES[4])
    assert variants.alibi(None, 4) is None and variants.alibi(False, 4) is None
    np.testing.assert_array_equal(variants.alibi([0.5, 0.25], 2), [0.5, 0.25])
    assert message_of(variants.alibi, [0.5], 2) == "alibi has 1 slope but there are 2 heads"


def test_default_positions_align_the_last_query_with_the_last_key():
    query, key = variants.default_positions(2, 4)
    np.testing.assert_array_equal(query, [2, 3])
    np.testing.assert_array_equal(key, [0, 1, 2, 3])
    assert query.dtype == key.dtype == np.int64
    query, key = variants.default_positions(3, 3)  # self-attention: both 0…L−1
    np.testing.assert_array_equal(query, [0, 1, 2])
    np.testing.assert_array_equal(key, [0, 1, 2])


def test_positions_fill_a_missing_side_with_its_default():
    assert variants.positions(None, 2, 4) is None
    query, key = variants.positions({"key": [5, 6, 7, 8]}, 2, 4)
    np.testing.assert_array_equal(query, [2, 3])
    np.testing.assert_array_equal(key, [5, 6, 7, 8])
    query, _ = variants.positions({"query": [10.0, 11.0]}, 2, 4)  # whole floats are whole numbers
    assert query.dtype == np.int64 and list(query) == [10, 11]


def test_rope_frequencies_for_theta_10000_and_rotary_dim_4():
    rope = variants.rope({"style": "neox", "theta": 10000}, 4)
    assert (rope.style, rope.rotary_dim, rope.theta) == ("neox", 4, 10000.0)
    # theta^(-2i/rotary_dim) for i = 0, 1: 1 and 10000^-0.5
    np.testing.assert_allclose(rope.inv_freq, [1.0, 0.01], rtol=1e-15)


def test_rope_defaults_and_a_partial_rotary_dim():
    rope = variants.rope("gptj", 8)  # a style alone: theta 10000 over the whole head
    assert (rope.style, rope.rotary_dim, rope.theta) == ("gptj", 8, 10000.0)
    np.testing.assert_allclose(rope.inv_freq, [1.0, 0.1, 0.01, 0.001], rtol=1e-14)
    partial = variants.rope({"rotary_dim": 4, "theta": 100}, 8)  # dims 4…7 pass through
    assert (partial.style, partial.rotary_dim) == ("neox", 4)
    np.testing.assert_allclose(partial.inv_freq, [1.0, 0.1], rtol=1e-15)
    given = variants.rope({"style": "gptj", "rotary_dim": 2, "inv_freq": [0.5]}, 4)
    assert given.theta is None and list(given.inv_freq) == [0.5]
    assert variants.rope(None, 4) is None and variants.rope(False, 4) is None


@pytest.mark.parametrize("value, message", [
    ({"rotary_dim": 3}, "rope.rotary_dim is 3; it must be even and at most head_dim 4"),
    ({"rotary_dim": 6}, "rope.rotary_dim is 6; it must be even and at most head_dim 4"),
    ({"inv_freq": [1.0]}, "rope.inv_freq has 1 value but rotary_dim 4 has 2 pairs"),
    ("rotate", "rope.style is 'rotate'; use \"neox\" (halves, Llama) or \"gptj\" (adjacent pairs)"),
])
def test_rope_refuses(value, message):
    assert message_of(variants.rope, value, 4) == message


def test_a_causal_rule_is_kept_as_a_rule_and_an_array_as_an_array():
    assert parse_mask("causal_lower_right", 1, 1, 2, 4) == (None, "causal_lower_right")
    allowed, rule = parse_mask([[1, 0], [1, 1]], 1, 1, 2, 2)
    assert rule == "array" and allowed.shape == (1, 1, 2, 2)


def test_kv_heads_defaults_to_the_heads_and_must_divide_them():
    assert variants.kv_heads(None, 8, {}) == 8
    assert variants.kv_heads(None, 4, {"w_query": 4, "w_key": 4, "w_value": 4}) == 4
    assert variants.kv_heads(2, 8, {}) == 2
    assert variants.kv_heads(1, 8, {"w_key": 1, "w_value": 1}) == 1  # multi-query
    assert variants.kv_heads(2.0, 8, {}) == 2


@pytest.mark.parametrize("value, heads, counts, message", [
    (3, 8, {}, "kv_heads is 3, which does not divide heads 8 (kv_heads that would: 1, 2, 4, 8)"),
    (0, 8, {}, "kv_heads is 0; it must be at least 1"),
    (1.5, 8, {}, "kv_heads is 1.5; it must be a whole number of at least 1"),
    (True, 8, {}, "kv_heads is true; it must be a whole number of at least 1"),
    (2, 8, {"w_key": 4}, "kv_heads is 2 but w_key holds 4 heads; a per-head w_key is (kv_heads, d_model, head_dim), "
                         "so it needs 2"),
    (None, 4, {"w_query": 4, "w_key": 2}, "w_key holds 2 heads but w_query holds 4; for grouped-query attention "
                                          "give kv_heads: 2"),
])
def test_kv_heads_refuses(value, heads, counts, message):
    assert message_of(variants.kv_heads, value, heads, counts) == message


def test_qk_norm_widths_per_head_and_over_all():
    per_head = variants.qk_norm({"q_weight": [1, 2, 3], "k_weight": [3, 2, 1]}, 4, 2, 3)
    assert (per_head.over, per_head.eps) == ("head", 1e-6)
    over_all = variants.qk_norm({"q_weight": [1] * 12, "k_weight": [2] * 6, "eps": 1e-5, "over": "all"}, 4, 2, 3)
    assert over_all.q_weight.shape == (12,) and over_all.k_weight.shape == (6,)  # heads*head_dim, kv_heads*head_dim
    assert (over_all.over, over_all.eps) == ("all", 1e-5)
    assert variants.qk_norm(None, 4, 2, 3) is None


@pytest.mark.parametrize("value, message", [
    ({"q_weight": [1] * 3, "k_weight": [1] * 6, "over": "all"},
     'qk_norm.q_weight has 3 values but over "all" it needs heads*head_dim = 12'),
    ({"q_weight": [1] * 12, "k_weight": [1] * 12, "over": "all"},
     'qk_norm.k_weight has 12 values but over "all" it needs kv_heads*head_dim = 6'),
    ({"q_weight": [1] * 12, "k_weight": [1] * 3},
     'qk_norm.q_weight has 12 values but over "head" it needs head_dim = 3'),
    ({"q_weight": [1] * 12, "over": "all"},
     'qk_norm has no k_weight; give both q_weight and k_weight (k_weight over "all": kv_heads*head_dim = 6 values)'),
])
def test_qk_norm_refuses_the_wrong_width(value, message):
    assert message_of(variants.qk_norm, value, 4, 2, 3) == message


def test_bias_and_sinks_take_minus_infinity_but_not_nan_or_plus_infinity():
    bias = variants.bias([[0, None], ["-inf", 1.5]], 1, 1, 2, 2)
    assert bias.shape == (1, 1, 2, 2) and np.isneginf(bias[0, 0, 0, 1]) and np.isneginf(bias[0, 0, 1, 0])
    np.testing.assert_array_equal(variants.sinks([0.5, None], 2), [0.5, -np.inf])
    for cell, what in ((np.nan, "NaN"), (np.inf, "+∞")):
        assert message_of(variants.bias, np.array([[0.0, cell]]), 1, 1, 1, 2) == (
            f"bias[0][1] is {what}; each value is a finite number or −∞ (null or \"-inf\" in JSON, -inf in NPY)")


def test_padding_may_be_true_and_false_as_hugging_faces_bool_attention_mask():
    np.testing.assert_array_equal(variants.padding([True, False, True], 1, 3), [[True, False, True]])
    np.testing.assert_array_equal(variants.padding([[1, 0], [0, 1]], 2, 2), [[True, False], [False, True]])
