"""One query's numbers (explain.py): read from the trace and the stage functions, never recomputed
apart; and the index errors, naming the field for the CLI to show as a flag."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SAMPLES

from attncli.errors import ProblemError
from attncli.explain import explain_query
from attncli.generate import random_document
from attncli.pipeline import attention
from attncli.problem import problem_from_document

CLASSIC = problem_from_document(json.loads((SAMPLES / "classic.json").read_text()))


def explained(problem, **where):
    return explain_query(problem, attention(problem), **where)


def test_the_classic_first_query_worked_out_by_hand():
    row = explained(CLASSIC, query=0)
    np.testing.assert_array_equal(row.query_vector, [1.0, 0.0, 2.0])
    np.testing.assert_array_equal(row.key_vectors, [[0.0, 1.0, 1.0], [4.0, 4.0, 0.0], [2.0, 3.0, 1.0]])
    np.testing.assert_array_equal(row.scores, [2.0, 4.0, 4.0])
    assert row.logits is None  # unscaled and unmasked: no logits step
    assert row.shift == 4.0
    np.testing.assert_array_equal(row.exponentials, [math.exp(-2.0), 1.0, 1.0])
    assert row.total == 2.0 + math.exp(-2.0)
    np.testing.assert_array_equal(row.values, [[1.0, 2.0, 3.0], [2.0, 8.0, 0.0], [2.0, 6.0, 3.0]])
    np.testing.assert_array_equal(row.output, [1.9366210616669624, 6.683105308334811, 1.5950684074995565])
    assert (row.query, row.batch, row.head, row.keys, row.visible) == (0, None, None, (0, 1, 2), [0, 1, 2])
    assert (row.scale_rule, row.scale_factor, row.head_dim, row.heads, row.w_out, row.b_out) == (
        "none", 1.0, 3, 1, False, False)


def test_one_key_asked_for():
    assert explained(CLASSIC, query=2, key=1).keys == (1,)


def test_the_numbers_are_the_traces_in_a_batched_multi_head_problem():
    document = random_document(seq_len=4, d_model=6, heads=2, batch=2, causal=True, bias=True, out_proj=True, seed=11)
    problem = problem_from_document(document)
    trace = attention(problem)
    row = explain_query(problem, trace, query=2, head=1, batch=1)
    steps = {name: step.array for name, step in trace.steps.items()}
    np.testing.assert_array_equal(row.query_vector, steps["q"][1, 1, 2])
    np.testing.assert_array_equal(row.key_vectors, steps["k"][1, 1])
    np.testing.assert_array_equal(row.values, steps["v"][1, 1])
    np.testing.assert_array_equal(row.scores, steps["scores"][1, 1, 2])
    np.testing.assert_array_equal(row.logits, steps["logits"][1, 1, 2])
    np.testing.assert_array_equal(row.weights, steps["softmax"][1, 1, 2])
    # this head's block of the heads side by side
    np.testing.assert_array_equal(row.output, steps["concat"][1, 2, 3:6])
    np.testing.assert_allclose(row.output, row.weights @ row.values, rtol=1e-12)
    np.testing.assert_array_equal(row.allowed, [True, True, True, False])
    assert row.visible == [0, 1, 2] and row.shift == row.logits[:3].max()
    assert row.exponentials[3] == 0.0
    np.testing.assert_allclose(row.exponentials / row.total, row.weights, rtol=1e-15)
    assert (row.batch, row.head, row.heads, row.w_out, row.b_out) == (1, 1, 2, True, True)
    assert (row.scale_rule, row.scale_factor, row.head_dim) == ("sqrt", 1 / math.sqrt(3), 3)


def test_without_w_out_the_row_is_read_from_the_output():
    problem = problem_from_document(random_document(seq_len=3, d_model=4, heads=2, seed=12))
    trace = attention(problem)
    row = explain_query(problem, trace, query=1, head=1)
    assert "concat" not in trace.steps
    np.testing.assert_array_equal(row.output, trace.steps["output"].array[1, 2:4])
    assert (row.batch, row.head) == (None, 1)


def test_a_query_that_may_see_no_key():
    problem = problem_from_document({**random_document(seq_len=2, d_model=2, seed=13), "mask": [[1, 1], [0, 0]]})
    row = explained(problem, query=1)
    assert row.shift is None and row.total == 0.0 and row.visible == []
    np.testing.assert_array_equal(row.logits, [-np.inf, -np.inf])
    np.testing.assert_array_equal(row.exponentials, [0.0, 0.0])
    np.testing.assert_array_equal(row.weights, [0.0, 0.0])
    np.testing.assert_array_equal(row.output, [0.0, 0.0])


def index_error(problem, **where) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        explained(problem, **where)
    return caught.value


def test_an_index_out_of_range_names_the_field_and_the_range():
    error = index_error(CLASSIC, query=3)
    assert error.render(lambda field: f"--{field}") == "--query 3 is out of range: there are 3 queries (0 to 2)"
    assert str(error) == "query 3 is out of range: there are 3 queries (0 to 2)"
    assert str(index_error(CLASSIC, query=0, key=5)) == "key 5 is out of range: there are 3 keys (0 to 2)"
    assert str(index_error(CLASSIC, query=-1)) == "query -1 is out of range: there are 3 queries (0 to 2)"
    assert str(index_error(CLASSIC, query=0, head=1)) == "head 1 is out of range: there is 1 head (0)"
    assert str(index_error(CLASSIC, query=0, batch=2)) == "batch 2 is out of range: there is 1 batch item (0)"


def test_one_query_is_named_in_the_singular():
    one_token = problem_from_document(random_document(seq_len=1, d_model=2, seed=14))
    assert str(index_error(one_token, query=1)) == "query 1 is out of range: there is 1 query (0)"
