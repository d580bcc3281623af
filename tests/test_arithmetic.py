"""The arithmetic of the stages (arithmetic.py): each function on small examples worked out by hand,
and the properties they promise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra import numpy as hnp
from test_properties import VALUES

from attncli.arithmetic import (
    dot_scores,
    exponentials,
    masked,
    masked_softmax,
    merge_heads,
    output_projection,
    project,
    row_shift,
    scaled,
    split_heads,
    weighted_values,
)
from attncli.errors import ProblemError
from attncli.problem import problem_from_document

BIGGEST = np.finfo(np.float64).max


def problem_with(scale="sqrt", head_dim=3, heads=1, **extra):
    """A one-token problem whose Q is `heads` heads of `head_dim`: what scaled() and output_projection() read."""
    width = heads * head_dim
    return problem_from_document({"x": [[1.0, 2.0]], "w_query": np.ones((2, width)).tolist(),
                                  "w_key": np.ones((2, width)).tolist(), "w_value": np.ones((2, width)).tolist(),
                                  "heads": heads, "scale": scale, **extra})


# --- projections and heads -------------------------------------------------------------------------

def test_project_multiplies_and_adds_the_bias_to_every_row():
    source = np.array([[1.0, 2.0], [3.0, 4.0]])
    weight = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    np.testing.assert_array_equal(project(source, weight, None), [[1.0, 2.0, 0.0], [3.0, 4.0, 2.0]])
    np.testing.assert_array_equal(project(source, weight, np.array([10.0, 20.0, 30.0])),
                                  [[11.0, 22.0, 30.0], [13.0, 24.0, 32.0]])


PROJECTED = np.arange(12.0).reshape(1, 2, 6)  # one batch item, two tokens, 3 heads × 2 columns


def test_split_heads_gives_head_h_the_columns_h_times_dim_to_the_next():
    heads = split_heads(PROJECTED, 3)
    assert heads.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(heads[0], [[[0, 1], [6, 7]], [[2, 3], [8, 9]], [[4, 5], [10, 11]]])


def test_interleaved_split_picks_every_heads_th_column():
    heads = split_heads(PROJECTED, 3, interleaved=True)
    assert heads.shape == (1, 3, 2, 2)
    np.testing.assert_array_equal(heads[0], [[[0, 3], [6, 9]], [[1, 4], [7, 10]], [[2, 5], [8, 11]]])
    for head in range(3):
        np.testing.assert_array_equal(heads[0, head], PROJECTED[0][:, head::3])


@pytest.mark.parametrize("heads", [1, 2, 3, 6])
def test_merge_heads_undoes_split_heads(heads):
    split = split_heads(PROJECTED, heads)
    assert split.shape == (1, heads, 2, 6 // heads)
    np.testing.assert_array_equal(merge_heads(split), PROJECTED)
    np.testing.assert_array_equal(split_heads(merge_heads(split), heads), split)


def test_merge_heads_puts_the_heads_side_by_side():
    per_head = np.array([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (batch 1, heads 2, seq 1, dim 2)
    np.testing.assert_array_equal(merge_heads(per_head), [[[1.0, 2.0, 3.0, 4.0]]])


# --- scores and logits -------------------------------------------------------------------------------

QUERIES = np.array([[1.0, 2.0], [3.0, 4.0]])
KEYS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])


def test_dot_scores_is_each_query_dot_each_key():
    np.testing.assert_array_equal(dot_scores(QUERIES, KEYS), [[1.0, 2.0, 3.0], [3.0, 4.0, 7.0]])


def test_transposed_scores_are_k_times_q_transposed_and_need_equal_lengths():
    keys = KEYS[:2]
    np.testing.assert_array_equal(dot_scores(QUERIES, keys, transposed=True), [[1.0, 3.0], [2.0, 4.0]])
    np.testing.assert_array_equal(dot_scores(QUERIES, keys, transposed=True), dot_scores(QUERIES, keys).T)
    with pytest.raises(ProblemError) as caught:
        dot_scores(QUERIES, KEYS, transposed=True)
    assert caught.value.message == "K·Qᵀ does not fit the mask or values when q_len != k_len"


@pytest.mark.parametrize("head_dim", [2, 3, 7])
def test_sqrt_scale_divides_by_the_root_of_head_dim(head_dim):
    scores = np.array([[1.0, -2.5, 3.0], [0.1, 1e10, -7.0]])
    # one division, not a multiplication by 1/√d: the same bits as this
    assert scaled(scores, problem_with("sqrt", head_dim)).tobytes() == (scores / math.sqrt(head_dim)).tobytes()


def test_a_given_scale_multiplies():
    scores = np.array([[1.0, -2.5, 3.0]])
    np.testing.assert_array_equal(scaled(scores, problem_with(0.5)), [[0.5, -1.25, 1.5]])


@pytest.mark.parametrize(("scale", "head_dim"), [("none", 3), (1.0, 3), ("sqrt", 1)])
def test_a_scale_of_one_returns_the_scores_themselves(scale, head_dim):
    scores = np.array([[1.0, 2.0]])
    assert scaled(scores, problem_with(scale, head_dim)) is scores


def test_masked_sets_minus_infinity_where_not_allowed_and_leaves_its_input_alone():
    logits = np.array([[1.0, 2.0], [3.0, 4.0]])
    allowed = np.array([[True, False], [True, True]])
    result = masked(logits, allowed)
    np.testing.assert_array_equal(result, [[1.0, -np.inf], [3.0, 4.0]])
    assert result is not logits
    np.testing.assert_array_equal(logits, [[1.0, 2.0], [3.0, 4.0]])


def test_masked_in_place_writes_into_the_logits():
    logits = np.array([[[[1.0, 2.0], [3.0, 4.0]]], [[[5.0, 6.0], [7.0, 8.0]]]])  # (batch 2, heads 1, 2, 2)
    allowed = np.array([[[[True, False], [False, True]]]])  # (1, 1, 2, 2): broadcast over the batch
    result = masked(logits, allowed, in_place=True)
    assert result is logits
    np.testing.assert_array_equal(logits, [[[[1.0, -np.inf], [-np.inf, 4.0]]], [[[5.0, -np.inf], [-np.inf, 8.0]]]])


def test_no_mask_returns_the_logits_themselves():
    logits = np.array([[1.0, 2.0]])
    assert masked(logits, None) is logits and masked(logits, None, in_place=True) is logits


# --- the softmax ------------------------------------------------------------------------------------

def test_row_shift_is_each_rows_largest_logit_and_0_for_a_fully_masked_row():
    logits = np.array([[1.0, 5.0, -2.0], [-np.inf, -np.inf, -np.inf], [-np.inf, -3.0, -np.inf]])
    np.testing.assert_array_equal(row_shift(logits, any_masked=True), [[5.0], [0.0], [-3.0]])
    # a problem without a mask has no such row and skips the check
    np.testing.assert_array_equal(row_shift(logits, any_masked=False), [[5.0], [-np.inf], [-3.0]])


def test_exponentials_of_the_shifted_logits_into_out_when_given():
    logits = np.array([[1.0, 2.0, -np.inf]])
    shift = np.array([[2.0]])
    np.testing.assert_array_equal(exponentials(logits, shift), [[math.exp(-1.0), 1.0, 0.0]])
    np.testing.assert_array_equal(logits, [[1.0, 2.0, -np.inf]])
    reused = exponentials(logits, shift, power=np.exp2, out=logits)
    assert reused is logits
    np.testing.assert_array_equal(logits, [[0.5, 1.0, 0.0]])


def test_softmax_of_a_small_row_worked_out_by_hand():
    # e^0 : e^(ln 3) = 1 : 3
    np.testing.assert_array_equal(masked_softmax(np.array([[0.0, math.log(3.0)]]), None), [[0.25, 0.75]])
    weights = masked_softmax(np.array([[1.0, 2.0, -np.inf]]), np.array([[True, True, False]]))
    np.testing.assert_allclose(weights, [[1 / (1 + math.e), math.e / (1 + math.e), 0.0]], rtol=1e-15)


def test_masked_softmax_rows_sum_to_one_and_empty_rows_are_zero():
    logits = np.array([[1.0, 2.0, -np.inf], [-np.inf, -np.inf, -np.inf], [1000.0, 999.0, 998.0]])
    allowed = np.isfinite(logits)
    weights = masked_softmax(logits, allowed)
    np.testing.assert_allclose(weights.sum(-1), [1.0, 0.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(weights[0, :2], np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum(), rtol=1e-15)
    assert weights[0, 2] == 0.0 and not np.isnan(weights).any()


def test_softmax_over_the_queries_normalises_each_column():
    logits = np.array([[[[0.0, 1.0], [math.log(3.0), 1.0]]]])  # (1, 1, q_len 2, k_len 2)
    weights = masked_softmax(logits, None, axis=-2)
    np.testing.assert_allclose(weights[0, 0], [[0.25, 0.5], [0.75, 0.5]], rtol=1e-15)
    np.testing.assert_allclose(weights.sum(-2), 1.0, rtol=1e-15)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, (3, 5), elements=VALUES), hnp.arrays(np.float64, (3, 1), elements=VALUES),
       hnp.arrays(np.bool_, (3, 5)))
def test_a_constant_added_to_a_row_of_logits_changes_nothing(logits, shift, allowed):
    masked = np.where(allowed, logits, -np.inf)
    np.testing.assert_allclose(masked_softmax(masked + shift, allowed), masked_softmax(masked, allowed),
                               rtol=1e-12, atol=1e-15)


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, (2, 3, 4), elements=VALUES), hnp.arrays(np.bool_, (1, 3, 4)))
def test_softmax_over_the_queries_is_the_softmax_of_the_transpose(logits, allowed):
    logits = np.where(allowed, logits, -np.inf)
    over_queries = masked_softmax(logits.copy(), allowed, axis=-2)
    transposed = masked_softmax(logits.swapaxes(-1, -2).copy(), allowed.swapaxes(-1, -2)).swapaxes(-1, -2)
    np.testing.assert_array_equal(over_queries, transposed)


# --- weighted values and the output projection ------------------------------------------------------

WEIGHTS = np.array([[0.25, 0.75], [1.0, 0.0]])
VALUE_ROWS = np.array([[4.0, 8.0], [0.0, -4.0]])


def test_weighted_values_are_sums_of_value_rows():
    np.testing.assert_array_equal(weighted_values(WEIGHTS, VALUE_ROWS), [[1.0, -1.0], [4.0, 8.0]])


def test_transposed_weighted_values_use_the_columns_and_need_a_square():
    np.testing.assert_array_equal(weighted_values(WEIGHTS, VALUE_ROWS, transposed=True), WEIGHTS.T @ VALUE_ROWS)
    with pytest.raises(ProblemError) as caught:
        weighted_values(np.ones((1, 2)), VALUE_ROWS, transposed=True)
    assert caught.value.message == "softmaxᵀ·V does not fit when q_len != k_len"


def with_ones(values):
    return np.concatenate([values, np.ones(values.shape[:-1] + (1,))], axis=-1)


def test_totals_appended_divide_by_each_rows_total_and_give_0_without_weight():
    exps = np.array([[1.0, 3.0], [0.0, 0.0]])  # a row of weights 1:3, and a fully masked row
    np.testing.assert_array_equal(weighted_values(exps, with_ones(VALUE_ROWS), totals_appended=True),
                                  [[1.0, -1.0], [0.0, 0.0]])


@settings(max_examples=100, deadline=None)
@given(hnp.arrays(np.float64, (2, 3, 4), elements=VALUES), hnp.arrays(np.bool_, (2, 3, 4)),
       hnp.arrays(np.float64, (2, 4, 3), elements=VALUES))
def test_totals_appended_equal_normalising_first(logits, allowed, values):
    # the blocked path's exponentials: unnormalised, 1 at each row's largest logit, 0 where masked
    logits = masked(logits, allowed)
    exps = exponentials(logits, row_shift(logits, any_masked=True))
    np.testing.assert_allclose(weighted_values(exps, with_ones(values), totals_appended=True),
                               weighted_values(masked_softmax(logits, allowed), values), rtol=1e-12, atol=1e-12)


def test_a_row_that_rounds_past_the_largest_float_is_clipped_into_the_values_range():
    weights = masked_softmax(np.array([[0.0, 0.35]]), None)  # about 0.41 and 0.59
    values = np.array([[BIGGEST, -1.0], [BIGGEST, 2.0]])
    with np.errstate(over="ignore"):
        assert np.isinf(weights @ values[:, 0]).all()  # the products, rounded, sum to inf
        clipped = weighted_values(weights, values)
        np.testing.assert_array_equal(clipped[:, 0], [BIGGEST])
        np.testing.assert_allclose(clipped[:, 1], weights @ values[:, 1], rtol=1e-15)
        exps = exponentials(np.array([[0.0, 0.35]]), np.array([[0.35]]))
        appended = weighted_values(exps, with_ones(values), totals_appended=True)
        assert appended[0, 0] == BIGGEST
        np.testing.assert_allclose(appended, clipped, rtol=1e-15)


def test_totals_appended_equal_normalising_first_near_the_largest_float():
    values = np.array([[BIGGEST], [BIGGEST], [-BIGGEST / 2]])
    exps = np.ones((1, 3))
    with np.errstate(over="ignore", invalid="ignore"):
        np.testing.assert_allclose(weighted_values(exps / 3, values), [[BIGGEST / 2]], rtol=1e-15)
        np.testing.assert_allclose(weighted_values(exps, with_ones(values), totals_appended=True), [[BIGGEST / 2]],
                                   rtol=1e-15)


def test_output_projection_multiplies_by_w_out_and_adds_b_out():
    concat = np.array([[[1.0, 2.0]]])
    with_out = problem_with("none", 1, heads=2, w_out=[[1.0], [10.0]], b_out=[0.5])
    np.testing.assert_array_equal(output_projection(concat, with_out), [[[21.5]]])
    assert output_projection(concat, problem_with("none", 1, heads=2)) is concat
