"""The warning for queries that see no key: ranges, not every query one by one."""

from __future__ import annotations

import numpy as np

from attncli.pipeline import attention
from attncli.problem import problem_from_document

TAIL = ": their weights are 0 and their per-head outputs are 0"


def warnings_of(mask, batch=2, seq_len=6, heads=1):
    rng = np.random.default_rng(1)
    document = {"x": rng.normal(size=(batch, seq_len, 4)).tolist(), "heads": heads, "mask": mask, **{
        name: rng.normal(size=(4, 4)).tolist() for name in ("w_query", "w_key", "w_value")}}
    return attention(problem_from_document(document)).warnings


def test_a_whole_masked_batch_item_is_one_range():
    mask = np.ones((2, 512, 512), dtype=int)
    mask[1] = 0
    (warning,) = warnings_of(mask.tolist(), seq_len=512)
    assert warning == "every key is masked for queries 0–511 of batch item 1" + TAIL


def test_ranges_and_single_queries_per_batch_item_and_head():
    mask = np.ones((2, 2, 6, 6), dtype=int)
    mask[0, 1, [0, 1, 2, 4]] = 0
    mask[1, 0, 5] = 0
    (warning,) = warnings_of(mask.tolist(), heads=2)
    assert warning == ("every key is masked for queries 0–2, 4 of batch item 0, head 1; "
                       "query 5 of batch item 1, head 0" + TAIL)


def test_many_places_are_counted_not_listed():
    mask = np.ones((2, 4, 6, 6), dtype=int)
    mask[:, :, ::2] = 0
    (warning,) = warnings_of(mask.tolist(), heads=4)
    assert warning.startswith("every key is masked for queries 0, 2, 4 of batch item 0, head 0; ")
    assert warning.endswith("; queries 0, 2, 4 of batch item 0, head 3 and 4 more places" + TAIL)
    assert len(warning) < 300
