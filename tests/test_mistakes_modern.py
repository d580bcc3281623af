"""check names the mistakes of masks and of modern attention's variants: each test makes a user's
wrong numbers with plain numpy (users_attention.py, the bug written where a user's code has it),
and check_step must name that mistake first (or tied first with one that gives the same numbers
here), measuring the difference from attncli's right numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli import assert_one_line_error, run, write
from test_mistakes import verdict_on

from attncli.generate import random_document
from attncli.known_mistakes import MISTAKES, alibi_heads_mistake
from attncli.pipeline import attention
from attncli.problem import problem_from_document


def assert_named(verdict, theirs, right, mistake, tied=()):
    """``mistake`` named first, or right after the ``tied`` ones (the same numbers here), and the
    verdict measures the real difference."""
    assert not verdict.agree and verdict.mistakes[:len(tied) + 1] == (*tied, mistake), verdict.mistakes
    finite = np.isfinite(theirs)
    assert verdict.max_error == pytest.approx(np.abs(theirs - right)[finite].max(), rel=1e-12)
    assert verdict.wrong_cells == int((~np.isclose(theirs, right, atol=1e-6, rtol=1e-5)).sum())
    assert verdict.max_error > 1e-3


# --- masks -------------------------------------------------------------------------------------

EMPTY_ROW = [[0, 0, 0, 0], [1, 1, 0, 0], [1, 0, 1, 0], [1, 1, 1, 1]]  # query 0 sees no key


def test_a_fully_masked_row_given_uniform_weights_is_named():
    document = {**random_document(seq_len=4, d_model=8, heads=2, batch=2, seed=41), "mask": EMPTY_ROW}
    verdict, theirs, right = verdict_on(document, "empty_row_uniform", step="softmax")
    assert_named(verdict, theirs, right, MISTAKES["empty_row_uniform"])
    # only query 0's row differs: a quarter on each key where attncli has 0
    assert verdict.wrong_cells == 2 * 2 * 4 and verdict.max_error == 0.25 and verdict.worst[2] == 0
    assert (verdict.yours, verdict.attncli) == (0.25, 0.0)


def test_a_fully_masked_row_of_nan_is_named_and_its_nan_said_as_such():
    document = {**random_document(seq_len=4, d_model=8, heads=2, batch=2, seed=42), "mask": EMPTY_ROW}
    verdict, theirs, right = verdict_on(document, "empty_row_nan")
    assert verdict.mistakes[0] == MISTAKES["empty_row_nan"]
    # query 0's outputs are NaN in yours and 0 in attncli's: said as NaN, not a difference of ∞
    assert verdict.not_finite.index == (0, 0, 0) and np.isnan(verdict.not_finite.yours)
    assert verdict.not_finite.attncli == 0.0 and verdict.not_finite.cells == verdict.wrong_cells == 2 * 8
    assert verdict.max_error == 0.0  # every other cell is right


@pytest.mark.parametrize(("rule", "bug"), [("causal_lower_right", "causal_top_left"),
                                           ("causal", "causal_bottom_right")])
def test_the_causal_diagonal_on_the_wrong_corner_is_named(rule, bug):
    document = {**random_document(seq_len=3, d_model=8, heads=2, batch=2, context_len=6, seed=43), "mask": rule}
    verdict, theirs, right = verdict_on(document, bug, step="softmax")
    assert_named(verdict, theirs, right, MISTAKES[bug])
    # 3 queries × 6 keys: the diagonals are 3 keys apart, so every query's row differs
    assert verdict.wrong_cells == int((~np.isclose(theirs, right, atol=1e-6, rtol=1e-5)).sum()) >= 2 * 2 * 3


@pytest.mark.parametrize("bug", ["window_wider", "window_narrower"])
def test_a_window_off_by_one_is_named(bug):
    document = random_document(seq_len=6, d_model=8, heads=2, batch=2, window=3, seed=44)
    verdict, theirs, right = verdict_on(document, bug, step="softmax")
    assert_named(verdict, theirs, right, MISTAKES[bug])
    # the key at distance 3 is seen (wider) or the one at distance 2 is not (narrower)
    query, key = verdict.worst[2:]
    assert query - key == (3 if bug == "window_wider" else 2)


def test_padding_ignored_is_named():
    document = {**random_document(seq_len=5, d_model=8, heads=2, batch=2, seed=45), "mask": "causal",
                "padding": [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]}
    verdict, theirs, right = verdict_on(document, "padding_ignored", step="softmax")
    assert_named(verdict, theirs, right, MISTAKES["padding_ignored"])
    # the last query of item 1 gave its padded keys 3 and 4 weight, where attncli gives them none
    assert (right[1, :, 4, 3:] == 0).all() and (theirs[1, :, 4, 3:] > 0.01).all()


def test_padding_ignored_when_it_is_the_only_rule_ties_with_the_mask_ignored():
    document = {**random_document(seq_len=4, d_model=8, heads=2, batch=2, seed=46),
                "padding": [[1, 1, 1, 1], [1, 1, 0, 0]]}
    verdict, theirs, right = verdict_on(document, "padding_ignored")
    assert_named(verdict, theirs, right, MISTAKES["padding_ignored"], tied=(MISTAKES["mask_ignored"],))


# --- RoPE ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["neox", "gptj"])
def test_rope_of_the_other_style_is_named(style):
    document = random_document(seq_len=4, d_model=16, heads=2, batch=2, rope=style, seed=47)
    verdict, theirs, right = verdict_on(document, "rope_style_swapped", step="scores")
    assert_named(verdict, theirs, right, MISTAKES["rope_style_swapped"])
    assert verdict.worst[2] != verdict.worst[3]  # a query and key at the same position turn alike: same score


@pytest.mark.parametrize("bug", ["rope_q_only", "rope_left_out"])
def test_rope_on_q_only_or_left_out_is_named(bug):
    document = random_document(seq_len=4, d_model=8, heads=2, batch=2, rope="neox", seed=48)
    verdict, theirs, right = verdict_on(document, bug)
    assert_named(verdict, theirs, right, MISTAKES[bug])


def test_rope_positions_from_zero_with_a_cache_offset_is_named():
    # 3 new queries after 5 cached keys: the queries sit at positions 5, 6, 7 (offset k_len − q_len)
    document = random_document(seq_len=3, d_model=8, heads=2, batch=2, context_len=8, rope="neox",
                               causal_lower_right=True, seed=49)
    verdict, theirs, right = verdict_on(document, "rope_from_zero", step="scores")
    assert_named(verdict, theirs, right, MISTAKES["rope_from_zero"])


def test_rope_positions_from_zero_with_positions_given_is_named():
    document = {**random_document(seq_len=3, d_model=8, heads=2, batch=1, rope="gptj", seed=50),
                "positions": {"query": [10, 11, 12], "key": [10, 11, 12]}}
    verdict, theirs, right = verdict_on(document, "rope_from_zero")
    assert_named(verdict, theirs, right, MISTAKES["rope_from_zero"])


# --- grouped heads, soft-capping, sinks, ALiBi, QK-norm --------------------------------------------

def test_key_value_heads_tiled_instead_of_repeated_is_named():
    document = random_document(seq_len=4, d_model=8, heads=4, kv_heads=2, batch=2, seed=51)
    verdict, theirs, right = verdict_on(document, "kv_tiled", step="scores")
    assert_named(verdict, theirs, right, MISTAKES["kv_tiled"])
    # heads 0 and 3 read the same key/value head either way; heads 1 and 2 swap theirs
    wrong_heads = np.flatnonzero(~np.isclose(theirs, right).all(axis=(0, 2, 3)))
    assert wrong_heads.tolist() == [1, 2]


def test_soft_capping_after_the_mask_is_named():
    document = random_document(seq_len=4, d_model=8, heads=2, batch=2, softcap=2.0, causal=True, seed=52)
    verdict, theirs, right = verdict_on(document, "softcap_after_mask", step="softmax")
    assert_named(verdict, theirs, right, MISTAKES["softcap_after_mask"])
    # query 0 sees key 0 alone; capped after the mask, the keys after it (at −cap) kept some weight
    assert (right[:, :, 0, 0] == 1).all() and (right[:, :, 0, 1:] == 0).all() and (theirs[:, :, 0, 1:] > 0.01).all()


def test_soft_capping_before_the_scale_is_named():
    document = random_document(seq_len=4, d_model=8, heads=2, batch=2, softcap=1.0, seed=53)
    verdict, theirs, right = verdict_on(document, "softcap_before_scale")
    assert_named(verdict, theirs, right, MISTAKES["softcap_before_scale"])


@pytest.mark.parametrize("bug", ["sink_left_out", "sink_kept"])
def test_the_sinks_mishandled_are_named(bug):
    document = random_document(seq_len=4, d_model=8, heads=2, batch=2, sinks=True, causal=True, seed=54)
    verdict, theirs, right = verdict_on(document, bug, step="softmax")
    assert_named(verdict, theirs, right, MISTAKES[bug])
    if bug == "sink_left_out":  # each of the user's rows sums to 1; attncli's to less
        np.testing.assert_allclose(theirs.sum(-1), 1.0)
        assert (right.sum(-1) < 1).all()


def test_weights_with_the_sinks_column_kept_are_a_one_line_error_that_says_so(tmp_path):
    document = random_document(seq_len=3, d_model=4, heads=2, sinks=True, seed=59)
    trace = attention(problem_from_document(document))
    weights, logits = trace.steps["softmax"].array, trace.steps["logits"].array  # (heads, q_len, k_len)
    kept = np.concatenate([weights, 1 - weights.sum(-1, keepdims=True)], axis=-1)  # softmax([keys | sink]) whole
    sinks = np.exp(np.asarray(document["sinks"]))[:, None, None]
    np.testing.assert_allclose(kept[..., -1:], sinks / (sinks + np.exp(logits).sum(-1, keepdims=True)), rtol=1e-12)
    problem_path = write(tmp_path, "p.json", json.dumps(document))
    theirs = write(tmp_path, "t.json", json.dumps(kept.tolist()))
    assert_one_line_error(run("check", problem_path, "-e", theirs, "-s", "softmax"),
                          f"{theirs}: has shape 2×3×4 but softmax is 2×3×3; one column more than the keys: the "
                          "sink's weight kept? Drop its column (probs[..., :-1])")


def test_alibi_with_its_sign_flipped_is_named():
    document = random_document(seq_len=5, d_model=8, heads=2, batch=2, alibi=True, causal=True, seed=55)
    verdict, theirs, right = verdict_on(document, "alibi_sign", step="softmax")
    assert_named(verdict, theirs, right, MISTAKES["alibi_sign"])


def test_alibi_slopes_of_another_head_count_are_named():
    document = random_document(seq_len=5, d_model=8, heads=2, batch=2, alibi=True, seed=56)
    verdict, theirs, right = verdict_on(document, "alibi_slopes_of_twice_the_heads")
    assert_named(verdict, theirs, right, alibi_heads_mistake(4, 2))
    assert verdict.mistakes[0].name == "ALiBi slopes of 4 heads"


def test_qk_norm_left_out_is_named():
    document = random_document(seq_len=4, d_model=8, heads=2, batch=2, qk_norm=True, rope="neox", seed=57)
    verdict, theirs, right = verdict_on(document, "qk_norm_left_out")
    assert_named(verdict, theirs, right, MISTAKES["qk_norm_left_out"])


@pytest.mark.parametrize(("first", "second"), [("rope_q_only", "kv_tiled"), ("rope_q_only", "qk_norm_left_out"),
                                               ("window_wider", "sink_left_out")])
def test_two_modern_mistakes_at_once_are_named_as_a_pair(first, second):
    document = random_document(seq_len=5, d_model=8, heads=4, kv_heads=2, batch=2, rope="neox", qk_norm=True,
                               sinks=True, window=2, seed=58)
    verdict, theirs, right = verdict_on(document, first, second)
    assert len(verdict.mistakes) == 1, verdict.mistakes
    assert verdict.mistakes[0].parts == (MISTAKES[first].name, MISTAKES[second].name)
    assert verdict.mistakes[0].name == f"{MISTAKES[first].name}, and {MISTAKES[second].name}"
    assert verdict.max_error == pytest.approx(np.abs(theirs - right).max(), rel=1e-12) and verdict.max_error > 1e-3
