"""visibility.py: every rule that hides keys, as one mask, and in parts for blocks of queries
(their part of the mask, the span of keys they need, the queries that see no key), without the
whole mask being made."""

from __future__ import annotations

import numpy as np
import pytest

from attncli import variants
from attncli.visibility import visibility


def test_visibility_folds_window_padding_and_minus_infinity_bias_into_one_mask():
    query, key = variants.default_positions(4, 4)
    padding = variants.padding([1, 0, 1, 1], 1, 4)  # key 1 is padding
    bias = np.zeros((1, 1, 4, 4))
    bias[0, 0, 3, 3] = -np.inf  # query 3 may not see key 3
    allowed = visibility(None, None, 2, padding, bias, query, key).full()
    # a window of 2: the query at p sees keys p-1 and p
    expected = [[1, 0, 0, 0],
                [1, 0, 0, 0],
                [0, 0, 1, 0],
                [0, 0, 1, 0]]
    assert allowed.shape == (1, 1, 4, 4) and allowed.dtype == bool
    np.testing.assert_array_equal(allowed[0, 0], np.array(expected, dtype=bool))


def test_visibility_keeps_a_batch_of_padding_and_hides_nothing_without_rules():
    query, key = variants.default_positions(3, 3)
    assert visibility(None, None, None, None, np.zeros((1, 1, 3, 3)), query, key) is None
    padding = variants.padding([[1, 1, 1], [1, 1, 0]], 2, 3)
    allowed = visibility(None, "causal", None, padding, None, query, key).full()
    assert allowed.shape == (2, 1, 3, 3)
    np.testing.assert_array_equal(allowed[0, 0], np.tri(3, dtype=bool))
    np.testing.assert_array_equal(allowed[1, 0], [[1, 0, 0], [1, 1, 0], [1, 1, 0]])


def test_the_window_counts_positions_not_indices():
    query, key = np.array([10, 11]), np.array([7, 8, 9, 10, 11])
    allowed = visibility(None, None, 3, None, None, query, key).full()
    np.testing.assert_array_equal(allowed[0, 0], [[0, 1, 1, 1, 0], [0, 0, 1, 1, 1]])


def test_causal_lower_right_aligns_the_last_query_with_the_last_key():
    query, key = variants.default_positions(2, 4)
    allowed = visibility(None, "causal_lower_right", None, None, None, query, key).full()
    assert allowed.shape == (1, 1, 2, 4)
    np.testing.assert_array_equal(allowed[0, 0], [[1, 1, 1, 0], [1, 1, 1, 1]])
    # SDPA's is_causal counts from the top left
    top_left = visibility(None, "causal", None, None, None, query, key).full()
    np.testing.assert_array_equal(top_left[0, 0], [[1, 0, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(top_left, np.tri(2, 4, dtype=bool)[None, None])



def rules(q_len=12, k_len=12, window=None, rule=None, padding=None, array=None):
    query, key = variants.default_positions(q_len, k_len)
    return visibility(array, rule, window, padding, None, query, key)


@pytest.mark.parametrize("seen", [
    rules(rule="causal"), rules(rule="causal", window=3), rules(window=4), rules(q_len=5, rule="causal_lower_right"),
    rules(rule="causal", padding=np.array([[True] * 12, [False] * 4 + [True] * 8])),
    rules(array=np.random.default_rng(1).random((2, 3, 12, 12)) < 0.3, window=5),
], ids=["causal", "causal+window", "window", "lower-right", "causal+padding", "array+window"])
def test_parts_and_spans_agree_with_the_whole_mask(seen):
    whole = seen.full()
    batches, heads = seen.extent
    for batch in range(batches):
        for head in range(heads):
            plane = whole[min(batch, whole.shape[0] - 1), min(head, whole.shape[1] - 1)]
            q_len = seen.q_len
            for start, stop in ((0, 3), (3, min(7, q_len)), (min(7, q_len - 1), q_len), (0, q_len)):
                np.testing.assert_array_equal(seen.part(batch, head, start, stop, 2, 9)[0, 0], plane[start:stop, 2:9])
                k_start, k_stop = seen.key_span(batch, head, start, stop)
                visible = np.flatnonzero(plane[start:stop].any(axis=0))
                if len(visible):
                    assert (k_start, k_stop) == (visible[0], visible[-1] + 1)
                else:
                    assert k_stop - k_start == 1
            np.testing.assert_array_equal(seen.blind()[min(batch, batches - 1), min(head, heads - 1)],
                                          ~plane.any(axis=1))


def test_a_long_windowed_sequence_never_makes_its_whole_mask():
    seen = rules(q_len=1 << 20, k_len=1 << 20, window=256, rule="causal")  # a whole mask would be 1 TiB
    assert seen.key_span(0, 0, 500_000, 500_512) == (500_000 - 255, 500_512)
    assert seen.part(0, 0, 500_000, 500_512, 500_000 - 255, 500_512).shape == (1, 1, 512, 767)
