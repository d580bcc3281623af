"""What a run of the stages shares (flow.py): a block's part of each array, the keys a block needs,
and what a Flow hands the stages on a block."""

from __future__ import annotations

import numpy as np

from attncli.flow import RIGHT, Block, Flow, Slip, keys_needed, share_values_with_ones
from attncli.generate import random_document
from attncli.problem import problem_from_document

# batch item 1, head 2 of 3, queries 1:3, keys 0:4
BLOCK = Block(batch=1, head=2, heads=3, start=1, stop=3, k_stop=4)


def test_right_is_no_slip():
    assert RIGHT == Slip(interleaved_heads=False, scores_transposed=False, softmax_axis=-1, weights_transposed=False)


def test_two_slips_join_unless_they_set_the_same_field():
    assert Slip(kv_tiled=True).joined(Slip(softmax_axis=-2)) == Slip(kv_tiled=True, softmax_axis=-2)
    # the stages each leaves out are left out together; the same field set twice cannot be joined
    assert Slip(skipped=("k_rotated",)).joined(Slip(skipped=("q_normed", "k_normed"))).skipped == (
        "k_rotated", "q_normed", "k_normed")
    assert Slip(skipped=("k_rotated",)).joined(Slip(skipped=("q_rotated", "k_rotated"))) is None
    assert Slip(softcap_order="after_mask").joined(Slip(softcap_order="before_scale")) is None
    assert RIGHT.joined(RIGHT) == RIGHT


def test_a_block_takes_its_batch_item_head_queries_and_keys_keeping_every_axis():
    scores = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    np.testing.assert_array_equal(BLOCK.take(scores, ("batch", "heads", "q_len", "k_len")), scores[1:2, 2:3, 1:3, :4])
    # a mask's axes of size 1 are shared by every batch item and head
    mask = np.arange(4 * 5).reshape(1, 1, 4, 5)
    np.testing.assert_array_equal(BLOCK.take(mask, ("batch", "heads", "q_len", "k_len")), mask[:, :, 1:3, :4])
    # its head's columns of the heads side by side; an axis it does not know is taken whole
    concat = np.arange(2 * 4 * 6).reshape(2, 4, 6)
    assert BLOCK.slices(concat.shape, ("batch", "q_len", "heads*head_dim_v")) == (
        slice(1, 2), slice(1, 3), slice(4, 6))
    assert BLOCK.slices((2, 4, 7), ("batch", "q_len", "d_model")) == (slice(1, 2), slice(1, 3), slice(None))


def test_where_a_block_starts():
    assert BLOCK.offset(("batch", "heads", "q_len", "k_len")) == (1, 2, 1, 0)
    assert BLOCK.offset(("batch", "q_len", "d_out")) == (1, 1, 0)


def test_a_causal_block_needs_the_keys_up_to_its_last_query_only():
    causal = problem_from_document(random_document(seq_len=5, d_model=2, causal=True, seed=31))
    assert [keys_needed(causal, 0, 0, start, stop) for start, stop in ((0, 2), (2, 4), (4, 5))] == [
        (0, 2), (0, 4), (0, 5)]
    plain = problem_from_document(random_document(seq_len=5, d_model=2, context_len=3, seed=31))
    assert keys_needed(plain, 0, 0, 0, 2) == (0, 3)


def test_a_window_block_needs_only_the_keys_of_its_queries_windows():
    document = {**random_document(seq_len=8, d_model=2, seed=31), "window": 3}
    windowed = problem_from_document(document)
    # queries 4:6 see keys 2..4 and 3..5
    assert keys_needed(windowed, 0, 0, 4, 6) == (2, 6)
    padding = [[1] * 8, [0, 0, 0, 0, 1, 1, 1, 1]]
    padded = problem_from_document({**document, "x": [document["x"]] * 2, "padding": padding})
    assert keys_needed(padded, 0, 0, 0, 2) == (0, 2)
    # batch item 1's first queries see only padding: one (masked) key still makes a block
    assert keys_needed(padded, 1, 0, 0, 2) == (0, 1)
    assert keys_needed(padded, 1, 0, 4, 6) == (4, 6)


def test_values_and_a_column_of_ones_are_one_array():
    shared = {"v": np.array([[[[1.0, 2.0], [3.0, 4.0]]]])}
    share_values_with_ones(shared)
    np.testing.assert_array_equal(shared["v+1"], [[[[1.0, 2.0, 1.0], [3.0, 4.0, 1.0]]]])
    np.testing.assert_array_equal(shared["v"], [[[[1.0, 2.0], [3.0, 4.0]]]])
    assert np.shares_memory(shared["v"], shared["v+1"])


def test_a_flow_on_a_block_hands_the_stages_the_blocks_inputs():
    document = random_document(seq_len=4, d_model=6, heads=3, batch=2, bias=True, seed=32)
    problem = problem_from_document({**document, "mask": np.tri(4, dtype=int).tolist()})
    whole = Flow(problem)
    assert whole.allowed is problem.mask
    assert whole.projection("x", "w_query", "b_query", "q_len")[3] == 3  # the whole problem: every head
    flow = Flow(problem, block=BLOCK)
    np.testing.assert_array_equal(flow.allowed, problem.mask[:, :, 1:3, :4])
    source, weight, bias, heads = flow.projection("x", "w_query", "b_query", "q_len")
    np.testing.assert_array_equal(source, problem.x[1:2, 1:3])
    np.testing.assert_array_equal(weight, problem.w_query[:, 4:6])  # head 2's columns
    np.testing.assert_array_equal(bias, problem.b_query[4:6])
    assert heads == 1 and np.shares_memory(weight, problem.w_query)  # a view: BLAS reads its columns in place
