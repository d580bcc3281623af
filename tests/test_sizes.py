"""Sizes (sizes.py): the sizes derived from the given ones, and the Sizes of a real problem."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
from conftest import SAMPLES
from hypothesis import given, settings
from test_properties import problems

from attncli.problem import problem_from_document
from attncli.sizes import Sizes, sizes_of


def derived(sizes):
    return {"exact": sizes.exact, "batched": sizes.batched, "source": sizes.source, "k_len": sizes.k_len,
            "d_source": sizes.d_source, "dim": sizes.dim, "dim_v": sizes.dim_v, "width_v": sizes.width_v}


def test_self_attention_sizes_split_d_model_into_the_heads():
    sizes = Sizes(seq_len=5, d_model=8, heads=2)
    assert derived(sizes) == {"exact": False, "batched": False, "source": "x", "k_len": 5, "d_source": 8, "dim": 4,
                              "dim_v": 4, "width_v": 8}
    assert sizes.axis_sizes() == {"batch": 1, "heads": 2, "kv_heads": 2, "q_len": 5, "k_len": 5, "head_dim": 4,
                                  "head_dim_v": 4, "heads*head_dim_v": 8, "d_out": 8}


def test_cross_attention_sizes_with_their_own_head_widths_and_w_out():
    sizes = Sizes(seq_len=3, d_model=4, heads=2, batch=6, context_len=7, d_context=9, head_dim=3, head_dim_v=5,
                  d_out=11)
    assert derived(sizes) == {"exact": False, "batched": True, "source": "context", "k_len": 7, "d_source": 9,
                              "dim": 3, "dim_v": 5, "width_v": 10}
    assert sizes.axis_sizes() == {"batch": 6, "heads": 2, "kv_heads": 2, "q_len": 3, "k_len": 7, "head_dim": 3,
                                  "head_dim_v": 5, "heads*head_dim_v": 10, "d_out": 11}


def test_the_sizes_of_the_classic_sample():
    problem = problem_from_document(json.loads((SAMPLES / "classic.json").read_text()))
    assert sizes_of(problem) == Sizes(seq_len=3, d_model=4, heads=1, batch=None, context_len=None, d_context=None,
                                      head_dim=3, head_dim_v=3, d_out=None, scaled=False, masked=False,
                                      scale="none", factor=1.0, biases=frozenset())
    assert sizes_of(problem).exact


def test_the_sizes_of_a_batched_cross_attention_problem_with_everything():
    rng = np.random.default_rng(0)
    problem = problem_from_document({
        "x": rng.normal(size=(2, 3, 4)).tolist(), "context": rng.normal(size=(2, 5, 6)).tolist(),
        "w_query": rng.normal(size=(2, 4, 3)).tolist(), "w_key": rng.normal(size=(2, 6, 3)).tolist(),
        "w_value": rng.normal(size=(2, 6, 7)).tolist(), "b_query": np.zeros((2, 3)).tolist(),
        "b_value": np.zeros((2, 7)).tolist(), "w_out": rng.normal(size=(14, 8)).tolist(), "b_out": [0.0] * 8,
        "scale": 0.25, "mask": "causal",
    })
    assert sizes_of(problem) == Sizes(seq_len=3, d_model=4, heads=2, batch=2, context_len=5, d_context=6,
                                      head_dim=3, head_dim_v=7, d_out=8, scaled=True, masked=True, scale=0.25,
                                      factor=0.25, biases=frozenset({"b_query", "b_value", "b_out"}))


def test_a_sqrt_scale_of_one_head_dim_is_no_scaling():
    problem = problem_from_document({"x": [[1.0, 2.0]], "w_query": [[1.0], [0.0]], "w_key": [[1.0], [1.0]],
                                     "w_value": [[2.0], [1.0]]})
    sizes = sizes_of(problem)
    assert (sizes.scale, sizes.factor, sizes.scaled, sizes.head_dim) == ("sqrt", 1.0, False, 1)


@settings(max_examples=60, deadline=None)
@given(problems())
def test_problems_of_one_layout_key_have_one_sizes_and_metadata(document):
    # JSON Lines plans a stream's steps once per layout_key: what the key leaves out must not matter
    from attncli.pipeline import _layout, _steps_plan
    from attncli.sizes import layout_key
    from attncli.trace import TraceMeta

    problem = problem_from_document(document)
    for changed in (problem, dataclasses.replace(problem, x=problem.x * 2.0, context=problem.context * 2.0)):
        assert layout_key(changed) == layout_key(problem)
        assert _layout(changed)[:2] == (_steps_plan(sizes_of(changed)), TraceMeta.of(changed))
