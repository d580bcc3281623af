"""Keys and values appended after the projections (appended.py): add_bias_kv's bias_k/bias_v and
add_zero_attn, under attncli's names; their masks, the blocked path, and what the trace says."""

from __future__ import annotations

import numpy as np
import pytest

from attncli import pipeline
from attncli.appended import Appended, appended_rows, extended_rules, joined
from attncli.errors import ProblemError
from attncli.generate import random_document
from attncli.problem import problem_from_document
from attncli.sizes import sizes_of
from attncli.stages import STAGE


def document(**changes):
    return {**random_document(seq_len=4, d_model=6, heads=2, seed=3), **changes}


BIAS_K = [0.5, -1.0, 2.0, 0.25, 1.5, -0.75]
BIAS_V = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_rows_in_order_bias_then_zero():
    rows = appended_rows({"bias_k": [[BIAS_K]], "bias_v": BIAS_V, "add_zero_attn": True}, {}, 6, 6, None)
    assert rows.names == ("bias_k", "zero") and rows.count == 2
    np.testing.assert_array_equal(rows.keys, [BIAS_K, [0.0] * 6])
    np.testing.assert_array_equal(rows.values, [BIAS_V, [0.0] * 6])
    assert appended_rows({"add_zero_attn": False}, {}, 6, 6, None) is None
    assert appended_rows({"add_zero_attn": np.array(True)}, {}, 2, 3, "array").values.shape == (1, 3)


def test_joined_after_every_batch_items_keys():
    projected = np.arange(12.0).reshape(2, 3, 2)
    result = joined(projected, np.array([[7.0, 8.0]]))
    assert result.shape == (2, 4, 2)
    np.testing.assert_array_equal(result[:, :3], projected)
    np.testing.assert_array_equal(result[:, 3], [[7.0, 8.0], [7.0, 8.0]])


def test_masks_of_the_source_keys_get_a_visible_column_each():
    mask = np.array([[[[True, False]]]])
    fields = {"padding": np.array([[False, True]]), "bias": np.array([[[[-np.inf, 1.0]]]]), "window": None}
    extended_mask, extended = extended_rules(mask, fields, 2)
    np.testing.assert_array_equal(extended_mask, [[[[True, False, True, True]]]])
    np.testing.assert_array_equal(extended["padding"], [[False, True, True, True]])
    np.testing.assert_array_equal(extended["bias"], [[[[-np.inf, 1.0, 0.0, 0.0]]]])
    assert extended["window"] is None


def test_k_and_v_carry_the_rows_and_every_query_sees_them():
    problem = problem_from_document(document(bias_k=BIAS_K, bias_v=BIAS_V, add_zero_attn=True,
                                             mask=np.tril(np.ones((4, 4))).tolist()))
    assert problem.k_len == 6 and problem.context.shape[1] == 4
    assert problem.mask.shape == (1, 1, 4, 6) and problem.mask[..., 4:].all()
    trace = pipeline.full_attention(problem)
    keys, values, weights = trace.steps["k"].array, trace.steps["v"].array, trace.steps["softmax"].array
    np.testing.assert_array_equal(keys[:, 4], np.reshape(BIAS_K, (2, 3)))  # (heads, k_len, head_dim)
    np.testing.assert_array_equal(values[:, 4], np.reshape(BIAS_V, (2, 3)))
    assert (keys[:, 5] == 0).all() and (values[:, 5] == 0).all()
    # the causal array still hides the source's later keys; the appended two are seen by all
    assert (weights[:, 0, 1:4] == 0).all() and (weights[..., 4:] > 0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-15)
    # the zero key's logit is 0: its weight is 1 / Σ_j e^(logit_j)
    logits = trace.steps["logits"].array
    np.testing.assert_allclose(weights[..., 5], 1 / np.exp(logits).sum(-1), rtol=1e-14)
    assert trace.meta.as_dict()["appended"] == ["bias_k", "zero"]
    assert trace.steps["k"].formula == "K = [x·W_K; bias_k; 0]"
    assert STAGE["v"].how(sizes_of(problem)) == "times W_V (6×6), 2 rows appended, split into 2 heads × 3"


def test_without_them_the_meta_says_nothing_and_k_len_is_the_sources():
    problem = problem_from_document(document())
    assert problem.appended is None and problem.k_len == 4
    assert "appended" not in pipeline.full_attention(problem).meta.as_dict()


def test_the_blocked_path_gives_the_full_paths_output(monkeypatch):
    padding = [[1] * 20 + [0] * 4]
    problem = problem_from_document({**random_document(seq_len=24, d_model=8, heads=2, batch=1, out_proj=True,
                                                       seed=9),
                                     "bias_k": np.linspace(-1, 1, 8).tolist(), "bias_v": np.linspace(2, 3, 8).tolist(),
                                     "add_zero_attn": True, "padding": padding})
    full = pipeline.full_attention(problem).steps["output"].array
    monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)
    monkeypatch.setattr(pipeline, "BLOCK_ROWS", 5)
    assert pipeline.blocked_path(problem, ["output"])
    blocked = pipeline.attention(problem, ["output"]).steps["output"].array
    np.testing.assert_allclose(blocked, full, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize(("changes", "message"), [
    ({"bias_v": BIAS_V}, "bias_v is given without bias_k: add_bias_kv appends a key and a value, give both"),
    ({"bias_k": BIAS_K, "bias_v": BIAS_V[:4]},
     "bias_v has shape 4; it is one row of 6 values (w_value's columns), (1, 1, 6) as PyTorch keeps it"),
    ({"add_zero_attn": 1}, "add_zero_attn is 1; it is true (a key and a value of zeros appended, as "
                           "nn.MultiheadAttention(add_zero_attn=True)) or false"),
    ({"add_zero_attn": True, "window": 2},
     "window is given with add_zero_attn: an appended key has no position (nn.MultiheadAttention has neither)"),
    ({"bias_k": BIAS_K, "bias_v": BIAS_V, "alibi": True},
     "alibi is given with bias_k/bias_v: an appended key has no position (nn.MultiheadAttention has neither)"),
    ({"add_zero_attn": True, "alibi": np.array([0.5, 0.25])},  # slopes as an NPZ gives them
     "alibi is given with add_zero_attn: an appended key has no position (nn.MultiheadAttention has neither)"),
    ({"add_zero_attn": True, "mask": "causal_lower_right"},
     "mask 'causal_lower_right' is given with add_zero_attn: give the mask as an array (attn_mask), which PyTorch "
     "pads with a visible column for each appended key"),
])
def test_what_cannot_be_appended_is_one_line(changes, message):
    with pytest.raises(ProblemError) as caught:
        problem_from_document(document(**changes))
    assert caught.value.message == message


def test_a_classic_problem_stays_as_it_was():
    """add_zero_attn: false appends nothing: the same numbers, bit for bit, and the source's keys alone."""
    plain = pipeline.full_attention(problem_from_document(document())).steps["output"].array
    zero_only_seen = problem_from_document(document(add_zero_attn=False))
    np.testing.assert_array_equal(pipeline.full_attention(zero_only_seen).steps["output"].array, plain)
    assert zero_only_seen.appended is None and zero_only_seen.k_len == 4
    without_rope = problem_from_document(document(add_zero_attn=True, rope=False, alibi=False))
    assert without_rope.appended.names == ("zero",) and without_rope.k_len == 5
    assert Appended(np.zeros((2, 6)), np.zeros((2, 6)), ("bias_k", "zero")).count == 2
