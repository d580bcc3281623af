"""The shape flow (shapes.py): every row for given sizes, and the rows of a real problem, which are
its trace's steps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from test_properties import problems

from attncli.errors import ProblemError
from attncli.generate import random_document
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.shapes import ShapeRow, shape_flow
from attncli.sizes import Sizes, sizes_of

SCORES = ("batch", "heads", "q_len", "k_len")


def test_the_flow_of_a_batched_multi_head_self_attention():
    assert shape_flow(Sizes(seq_len=10, d_model=512, heads=8, batch=2)) == [
        ShapeRow("x", "given", (2, 10, 512), ("batch", "q_len", "d_model"), "the input"),
        ShapeRow("q", "Q = x·W_Q", (2, 8, 10, 64), ("batch", "heads", "q_len", "head_dim"),
                 "times W_Q (512×512), split into 8 heads × 64"),
        ShapeRow("k", "K = x·W_K", (2, 8, 10, 64), ("batch", "heads", "k_len", "head_dim"),
                 "times W_K (512×512), split into 8 heads × 64"),
        ShapeRow("v", "V = x·W_V", (2, 8, 10, 64), ("batch", "heads", "k_len", "head_dim_v"),
                 "times W_V (512×512), split into 8 heads × 64"),
        ShapeRow("scores", "scores = Q·Kᵀ", (2, 8, 10, 10), SCORES,
                 "each query·each key, per head: 64 dims summed away"),
        ShapeRow("logits", "logits = scores × scale", (2, 8, 10, 10), SCORES, "scaled cell by cell"),
        ShapeRow("softmax", "softmax over keys", (2, 8, 10, 10), SCORES, "along k_len: each row sums to 1"),
        ShapeRow("output", "output = [softmax·V for each head]", (2, 10, 512), ("batch", "q_len", "d_out"),
                 "softmax·V per head, heads joined: 8×64 = 512"),
    ]


def test_the_flow_of_a_cross_attention_with_w_out():
    assert shape_flow(Sizes(seq_len=4, d_model=6, heads=3, context_len=7, d_context=5, d_out=2)) == [
        ShapeRow("x", "given", (4, 6), ("q_len", "d_model"), "the input"),
        ShapeRow("context", "given", (7, 5), ("k_len", "d_context"), "the input keys and values are computed from"),
        ShapeRow("q", "Q = x·W_Q", (3, 4, 2), ("heads", "q_len", "head_dim"),
                 "times W_Q (6×6), split into 3 heads × 2"),
        ShapeRow("k", "K = context·W_K", (3, 7, 2), ("heads", "k_len", "head_dim"),
                 "times W_K (5×6), split into 3 heads × 2"),
        ShapeRow("v", "V = context·W_V", (3, 7, 2), ("heads", "k_len", "head_dim_v"),
                 "times W_V (5×6), split into 3 heads × 2"),
        ShapeRow("scores", "scores = Q·Kᵀ", (3, 4, 7), SCORES[1:], "each query·each key, per head: 2 dims summed away"),
        ShapeRow("logits", "logits = scores × scale", (3, 4, 7), SCORES[1:], "scaled cell by cell"),
        ShapeRow("softmax", "softmax over keys", (3, 4, 7), SCORES[1:], "along k_len: each row sums to 1"),
        ShapeRow("concat", "concat = [softmax·V for each head]", (4, 6), ("q_len", "heads*head_dim_v"),
                 "softmax·V per head, heads joined: 3×2 = 6"),
        ShapeRow("output", "output = concat·W_O", (4, 2), ("q_len", "d_out"), "times W_O (6×2)"),
    ]


def test_a_single_head_has_no_heads_axis_and_no_split():
    rows = {row.step: row for row in shape_flow(Sizes(seq_len=3, d_model=4))}
    assert (rows["q"].shape, rows["q"].axes, rows["q"].how) == ((3, 4), ("q_len", "head_dim"), "times W_Q (4×4)")
    assert rows["scores"].how == "each query·each key: 4 dims summed away"
    assert (rows["output"].formula, rows["output"].how) == (
        "output = softmax·V", "softmax·V: weighted sums of V's rows")


def test_head_widths_given_need_not_split_d_model():
    rows = {row.step: row for row in shape_flow(Sizes(seq_len=2, d_model=5, heads=2, head_dim=3, head_dim_v=4))}
    assert rows["q"].shape == (2, 2, 3) and rows["q"].how == "times W_Q (5×6), split into 2 heads × 3"
    assert rows["v"].shape == (2, 2, 4) and rows["output"].shape == (2, 8)


def problem_of(**options):
    return problem_from_document({**random_document(3, 4, seed=7), **options})


def test_logits_are_a_row_only_when_the_problem_scales_or_masks():
    steps = [row.step for row in shape_flow(sizes_of(problem_of(scale="none")))]
    assert steps == ["x", "q", "k", "v", "scores", "softmax", "output"]
    masked = {row.step: row for row in shape_flow(sizes_of(problem_of(scale="none", mask="causal")))}
    assert (masked["logits"].formula, masked["logits"].how) == ("logits = scores, masked → −∞", "masked cell by cell")
    both = {row.step: row for row in shape_flow(sizes_of(problem_of(mask="causal")))}
    assert (both["logits"].formula, both["logits"].how) == (
        "logits = scores / √head_dim, masked → −∞", "scaled and masked cell by cell")


def test_d_model_that_does_not_split_names_the_head_counts_that_would():
    with pytest.raises(ProblemError) as caught:
        shape_flow(Sizes(seq_len=3, d_model=12, heads=5))
    assert str(caught.value) == "d_model 12 does not split into 5 heads (head counts that would: 1, 2, 3, 4, 6, 12)"


@settings(max_examples=50, deadline=None)
@given(problems())
def test_the_rows_of_a_problem_are_its_traces_steps(document):
    problem = problem_from_document(document)
    trace = attention(problem)
    rows = shape_flow(sizes_of(problem))
    inputs = ["x", "context"] if problem.cross else ["x"]
    assert [row.step for row in rows[:len(inputs)]] == inputs
    assert rows[0].shape == np.shape(document["x"])
    assert [(row.step, row.formula, row.shape, row.axes) for row in rows[len(inputs):]] == [
        (step.name, step.formula, step.shape, step.axes) for step in trace.steps.values()]
