"""Validation: every malformed problem is one ProblemError whose words say what is wrong."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from attncli.errors import ProblemError
from attncli.problem import parse_scale, problem_from_document

BASE = {
    "x": [[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 2.0], [1.0, 1.0, 1.0, 1.0]],
    "w_query": [[1, 0], [1, 0], [0, 0], [0, 1]],
    "w_key": [[0, 0], [1, 1], [0, 1], [1, 1]],
    "w_value": [[0, 2], [0, 3], [1, 0], [1, 1]],
}


def error_for(document, **overrides) -> str:
    with pytest.raises(ProblemError) as caught:
        problem_from_document(document, **overrides)
    return caught.value.message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"x": [[1, 2, 3, 4], [1, 2, 3]]}, "x: row 1 has 3 values but row 0 has 4"),
        ({"x": [[[1, 2, 3, 4]], [[1, 2, 3, 4], [1, 2, 3, 4]]]}, "x[1] has shape 2×4 but x[0] has 1×4"),
        ({"x": [[1, "2", 3, 4]]}, "x[0][1] is the string '2', expected a number"),
        ({"x": [[1, True, 3, 4]]}, "x[0][1] is true, expected a number"),
        ({"x": [[1, None, 3, 4]]}, "x[0][1] is null, expected a number"),
        ({"x": [[1, {"a": 1}, 3, 4]]}, "x[0][1] is an object, expected a number"),
        ({"x": [[1, float("nan"), 3, 4]]}, "x[0][1] is NaN; every value must be a finite number"),
        ({"x": [[1, 2, float("inf"), 4]]},
         "x[0][2] is infinite (beyond ±1.8e308); every value must be a finite number"),
        ({"x": [1, 2, 3, 4]}, "x must be a 2-D or 3-D array, got a 1-D array of shape 4"),
        ({"x": 5}, "x must be a 2-D or 3-D array, got a single number"),
        ({"x": []}, "x must be a 2-D or 3-D array, got a 1-D array of shape 0"),
        ({"x": [[]]}, "x is empty (shape 1×0)"),
        ({"w_query": [[1, 0], [1, 0], [0, 0]]}, "w_query has 3 rows but x has 4 columns"),
        ({"w_key": [[0, 0, 1], [1, 1, 1], [0, 1, 1], [1, 1, 1]]},
         "w_query has 2 columns but w_key has 3: queries and keys must have the same width to be multiplied"),
        ({"heads": 3, "w_query": [[1] * 4] * 4, "w_key": [[1] * 4] * 4},
         "w_query has 4 columns, which do not split into 3 heads (head counts that would: 1, 2, 4)"),
        ({"heads": 2, "w_value": [[0, 2, 1], [0, 3, 1], [1, 0, 1], [1, 1, 1]]},
         "w_value has 3 columns, which do not split into 2 heads (head counts that would: 1, 3)"),
        ({"heads": 0}, "heads is 0; it must be at least 1"),
        ({"heads": -2}, "heads is -2; it must be at least 1"),
        ({"heads": 1.5}, "heads is 1.5; it must be a whole number of at least 1"),
        ({"heads": "2"}, "heads is the string '2'; it must be a whole number of at least 1"),
        ({"heads": True}, "heads is true; it must be a whole number of at least 1"),
        ({"scale": 0}, "scale is 0; it must be a positive finite number"),
        ({"scale": -1.5}, "scale is -1.5; it must be a positive finite number"),
        ({"scale": "sqrtt"}, "scale is 'sqrtt'; use \"sqrt\" (1/sqrt(head_dim)), \"none\" (1) or a positive number; "
                             "did you mean 'sqrt'?"),
        ({"scale": [1]}, "scale is an array; use \"sqrt\", \"none\" or a positive number"),
        ({"mask": [[1, 1], [1, 1]]}, "mask has shape 2×2 but the scores need 3×3 (q_len, k_len)"),
        ({"mask": [[[1, 1, 1]] * 3] * 2}, "mask has shape 2×3×3 but the scores need 1×3×3 (batch, q_len, k_len)"),
        ({"mask": [[1, 0, 2]] * 3}, "mask[0][2] is 2; a mask holds 0/1 or false/true (1 = may attend)"),
        ({"mask": [1, 0, 1]}, "mask must be 2-D (q_len, k_len), 3-D (batch, q_len, k_len) or 4-D "
                              "(batch, heads, q_len, k_len), got shape 3"),
        ({"mask": "casual"}, "mask is 'casual'; use \"causal\", \"causal_lower_right\" or an array of 0/1 "
                             "(1 = may attend); "
                             "did you mean 'causal'?"),
        ({"x": [[1, 10**400, 3, 4]]}, "x[0][1] is an integer too large for float64 (beyond ±1.8e308)"),
        ({"mask": [[1, 1, 1], [1, -(10**309), 1], [1, 1, 1]]},
         "mask[1][1] is an integer too large for float64 (beyond ±1.8e308)"),
        ({"heads": float("nan")}, "heads is nan; it must be a whole number of at least 1"),
        ({"heads": float("inf")}, "heads is inf; it must be a whole number of at least 1"),
        ({"scale": 10**400}, "scale is a number beyond ±1.8e308; it must be a positive finite number"),
        ({"scale": float("nan")}, "scale is nan; it must be a positive finite number"),
        ({"heads": 2, "w_query": [[1]] * 4, "w_key": [[1]] * 4},
         "w_query has 1 column, which do not split into 2 heads (head counts that would: 1)"),
        ({"w_quer": [[1]]}, "unknown key 'w_quer'; did you mean 'w_query'?"),
        ({"Heads": 2, "zzz": 1}, "unknown key 'Heads' (and 'zzz'); did you mean 'heads'?"),
        ({"Wq": [[1]]}, "unknown key 'Wq'; did you mean 'w_query'?"),
        ({"W_O": [[1]], "bo": [1]}, "unknown key 'W_O' (and 'bo'); did you mean 'w_out'?"),
        ({"q_proj": [[1]]}, "unknown key 'q_proj'; did you mean 'w_query'?"),
        ({"\n": 1, "\x1e": 2}, "unknown key '\\n' (and '\\x1e')"),
        ({"b_out": [1, 2]}, "b_out is given without w_out"),
        ({"w_out": [[1, 2], [3, 4], [5, 6]]},
         "w_out has 3 rows but the heads concatenated have width 2 (heads × head_dim_v = 1 × 2)"),
        ({"w_out": [[1, 2], [3, 4]], "b_out": [1, 2, 3]}, "b_out has 3 values but w_out has 2 columns"),
        ({"b_query": [1, 2, 3]}, "b_query has 3 values but w_query has 2 columns"),
        ({"context": [[[1, 2, 3, 4]]]}, "context has 3 axes but x has 2: give both a batch axis or neither"),
        ({"context": [[1, 2, 3]]}, "w_key has 4 rows but context has 3 columns"),
        ({"w_query": [[[1]] * 4] * 2, "heads": 3}, "heads is 3 but w_query holds 2 heads"),
        ({"w_query": [[[1]] * 4] * 2, "w_key": [[[1]] * 4] * 1},
         "w_key holds 1 head but w_query holds 2; for grouped-query attention give kv_heads: 1"),
    ],
)
def test_bad_document(changes, message):
    assert error_for({**BASE, **changes}) == message


def test_missing_matrix_names_its_role():
    document = dict(BASE)
    del document["w_key"]
    assert error_for(document) == "missing w_key (the key weights, (d_model, heads*head_dim))"


def test_document_must_be_an_object():
    assert error_for([1, 2]) == "expected a JSON object with x, w_query, w_key and w_value, got an array"


def test_context_batch_must_match():
    document = {**BASE, "x": [BASE["x"]] * 2, "context": [BASE["x"]] * 3}
    assert error_for(document) == "context has a batch of 3 but x has 2"


def test_error_carries_the_shapes_involved():
    with pytest.raises(ProblemError) as caught:
        problem_from_document({**BASE, "w_query": [[1, 0], [1, 0], [0, 0]]})
    assert caught.value.shapes == {"w_query": (3, 2), "x": (1, 3, 4)}


def test_overrides_replace_the_document():
    problem = problem_from_document({**BASE, "heads": 1, "scale": "none"}, heads=2, scale="0.25", causal=True)
    assert (problem.heads, problem.scale, problem.mask_rule) == (2, 0.25, "causal")
    np.testing.assert_array_equal(problem.mask[0, 0], np.tri(3, dtype=bool))


@pytest.mark.parametrize(
    ("value", "parsed"), [("sqrt", "sqrt"), ("NONE", "none"), (" 0.5 ", 0.5), (2, 2.0), (1e-3, 0.001)]
)
def test_parse_scale(value, parsed):
    assert parse_scale(value) == parsed


def test_scale_factor_follows_the_rule():
    heads2 = {**BASE, "heads": 2}
    assert problem_from_document(heads2).scale_factor == 1.0  # head_dim 1: 1/sqrt(1)
    assert problem_from_document(BASE).scale_factor == 1 / np.sqrt(2)
    assert problem_from_document(BASE, scale="none").scale_factor == 1.0
    assert problem_from_document(BASE, scale=3).scale_factor == 3.0


def test_about_is_allowed_and_ignored():
    problem = problem_from_document({**BASE, "about": "a note"})
    assert problem.x.shape == (1, 3, 4)


def test_a_value_beyond_float32_is_refused_by_name_when_computing_in_float32():
    problem = problem_from_document({"x": [[1.0, 1e39]], "w_query": [[1], [1]], "w_key": [[1], [1]],
                                     "w_value": [[1], [1]]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "overflow encountered in cast" beside the error
        with pytest.raises(ProblemError) as caught:
            problem.astype("float32")
    assert caught.value.message == "x[0][1] is beyond float32's range (±3.4e38); compute in float64"
    assert problem_from_document({"x": [[1.0, 2.0]], "w_query": [[1], [1]], "w_key": [[1], [1]],
                                  "w_value": [[1], [1]]}).astype("float32").x.tolist() == [[[1.0, 2.0]]]


def test_float32_names_the_cell_of_a_variant_beyond_its_range_and_keeps_minus_infinity():
    base = {"x": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], **{name: [[1.0, 0.0], [0.0, 1.0]]
                                                         for name in ("w_query", "w_key", "w_value")}}
    cases = [({"bias": [[None, 1, 1e300], [0, 0, 0], [0, 0, 0]]}, "bias[0][2]"), ({"sinks": [1e300]}, "sinks[0]"),
             ({"qk_norm": {"q_weight": [1, 1e300], "k_weight": [1, 1]}}, "qk_norm.q_weight[1]"),
             ({"softcap": 1e300}, "softcap")]
    for keys, name in cases:
        with pytest.raises(ProblemError) as caught:
            problem_from_document({**base, **keys}).astype(np.float32)
        assert caught.value.message == f"{name} is beyond float32's range (±3.4e38); compute in float64"
    kept = problem_from_document({**base, "sinks": [None]}).astype(np.float32)
    assert kept.sinks.dtype == np.float32 and np.isneginf(kept.sinks[0])


def test_a_window_wider_than_any_positions_span_is_unlimited():
    base = {"x": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], **{name: [[1.0, 0.0], [0.0, 1.0]]
                                                         for name in ("w_query", "w_key", "w_value")}}
    huge = problem_from_document({**base, "window": 1e19})
    np.testing.assert_array_equal(huge.mask, problem_from_document({**base, "mask": "causal"}).mask)
