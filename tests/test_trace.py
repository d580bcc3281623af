"""The Trace (trace.py): the axes a step shows, its metadata, and choosing steps by name."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLES

from attncli.errors import ProblemError
from attncli.problem import problem_from_document
from attncli.trace import Step, Trace, TraceMeta, present_axes, present_shape

CLASSIC = json.loads((SAMPLES / "classic.json").read_text())


@pytest.mark.parametrize(("name", "batched", "heads", "axes"), [
    ("scores", False, 1, ("q_len", "k_len")),
    ("scores", True, 2, ("batch", "heads", "q_len", "k_len")),
    ("q", True, 1, ("batch", "q_len", "head_dim")),
    ("v", False, 4, ("heads", "k_len", "head_dim_v")),
    ("concat", False, 3, ("q_len", "heads*head_dim_v")),
    ("output", True, 3, ("batch", "q_len", "d_out")),
])
def test_present_axes_drop_batch_without_one_and_heads_for_a_single_head(name, batched, heads, axes):
    assert present_axes(name, batched, heads) == axes


def test_present_shape_drops_the_same_axes():
    assert present_shape((2, 1, 3, 4), "scores", True, 1) == (2, 3, 4)
    assert present_shape((1, 2, 3, 4), "scores", False, 2) == (2, 3, 4)
    assert present_shape((1, 3, 6), "concat", False, 2) == (3, 6)


def test_the_meta_of_the_classic_sample():
    assert TraceMeta.of(problem_from_document(CLASSIC)).as_dict() == {
        "heads": 1, "head_dim": 3, "head_dim_v": 3, "batched": False, "cross_attention": False,
        "scale": {"rule": "none", "factor": 1.0}, "mask": None, "dtype": "float64",
    }


def test_the_meta_of_a_batched_cross_attention_problem_in_float32():
    rng = np.random.default_rng(1)
    problem = problem_from_document({
        "x": rng.normal(size=(2, 3, 4)).tolist(), "context": rng.normal(size=(2, 5, 4)).tolist(),
        "w_query": rng.normal(size=(4, 6)).tolist(), "w_key": rng.normal(size=(4, 6)).tolist(),
        "w_value": rng.normal(size=(4, 4)).tolist(), "heads": 2, "scale": 0.5, "mask": np.ones((3, 5)).tolist(),
    })
    meta = TraceMeta.of(problem.astype(np.float32))
    assert meta.as_dict() == {
        "heads": 2, "head_dim": 3, "head_dim_v": 2, "batched": True, "cross_attention": True,
        "scale": {"rule": "number", "factor": 0.5}, "mask": "array", "dtype": "float32",
    }
    assert TraceMeta.of(problem_from_document({**CLASSIC, "scale": "sqrt", "mask": "causal"})).as_dict()["scale"] == {
        "rule": "sqrt", "factor": 1 / 3 ** 0.5}


def test_the_meta_names_the_variants_a_problem_uses_and_only_those():
    from attncli.generate import random_document

    document = random_document(4, 8, heads=4, kv_heads=2, rope="gptj", window=2, softcap=30.0, alibi=True,
                               sinks=True, qk_norm=True, padding=True, causal_lower_right=True, seed=1)
    meta = TraceMeta.of(problem_from_document({**document, "bias": np.zeros((4, 4)).tolist(), "masked_rows": "nan"}))
    assert meta.as_dict() == {
        "heads": 4, "kv_heads": 2, "head_dim": 2, "head_dim_v": 2, "batched": False, "cross_attention": False,
        "scale": {"rule": "sqrt", "factor": 1 / 2 ** 0.5}, "mask": "causal_lower_right", "qk_norm": {"over": "head"},
        "rope": {"style": "gptj", "theta": 10000.0, "rotary_dim": 2}, "softcap": 30.0, "alibi": True, "bias": True,
        "window": 2, "padding": True, "sinks": True, "masked_rows": "nan", "dtype": "float64",
    }
    # as many key/value heads as heads, frequencies given, masked_rows "zero": nothing to say
    plain = TraceMeta.of(problem_from_document({**document, "kv_heads": 4, "w_key": np.zeros((8, 8)).tolist(),
                                                "w_value": np.zeros((8, 8)).tolist(), "rope": {"inv_freq": [0.5]},
                                                "masked_rows": "zero"})).as_dict()
    assert "kv_heads" not in plain and "masked_rows" not in plain
    assert plain["rope"] == {"style": "neox", "theta": None, "rotary_dim": 2}


def test_the_meta_holds_only_what_a_streams_layout_key_holds():
    # a JSON Lines stream makes the meta once per sizes.layout_key: problems of one key differing in
    # what it leaves out (ALiBi's slopes, the positions) must not show each other's
    from attncli.generate import random_document
    from attncli.pipeline import attention

    document = random_document(5, 8, heads=4, kv_heads=2, rope="neox", seed=2)
    metas = [attention(problem_from_document({**document, **variant})).meta.as_dict() for variant in (
        {"alibi": [1.0, 2.0, 3.0, 4.0]}, {"alibi": True}, {"alibi": True, "positions": {"query": [9] * 5}})]
    assert metas[0] == metas[1] == metas[2] and metas[0]["alibi"] is True and "positions" not in metas[0]


def step(name):
    return Step(name=name, formula=f"{name} = …", array=np.zeros((2, 2)), axes=("q_len", "k_len"))


META = TraceMeta.of(problem_from_document(CLASSIC))
TRACE = Trace(steps={name: step(name) for name in ("q", "k", "v", "scores", "softmax", "output")}, meta=META)


def test_a_step_has_the_shape_of_its_array():
    assert step("scores").shape == (2, 2)


def test_select_gives_the_named_steps_in_pipeline_order():
    assert TRACE.select(None) == TRACE.select([]) == list(TRACE.steps.values())
    assert [chosen.name for chosen in TRACE.select(["output", "q", "output"])] == ["q", "output"]


def error_of(trace, names):
    with pytest.raises(ProblemError) as caught:
        trace.select(names)
    return str(caught.value)


def test_select_says_which_steps_there_are():
    assert error_of(TRACE, ["attn"]) == (
        "step 'attn': there is no such step; the steps are q, k, v, scores, softmax, output")
    assert error_of(TRACE, ["q", "logits"]) == (
        "step 'logits': this problem has no such step; the steps are q, k, v, scores, softmax, output")


def test_a_trace_of_chosen_steps_lists_every_step_its_problem_has():
    chosen = Trace(steps={"output": step("output")}, meta=META,
                   available=("q", "k", "v", "scores", "softmax", "output"))
    assert error_of(chosen, ["logits"]) == (
        "step 'logits': this problem has no such step; the steps are q, k, v, scores, softmax, output")
    assert [found.name for found in chosen.select(["output"])] == ["output"]


def test_masked_cells_come_from_the_problems_mask_in_each_steps_shape():
    from attncli.pipeline import attention

    rng = np.random.default_rng(3)
    mask = rng.integers(0, 2, size=(2, 3, 3)).astype(bool)
    mask[..., 0] = True
    weights = {name: rng.normal(size=(4, 4)).tolist() for name in ("w_query", "w_key", "w_value")}
    problem = problem_from_document({"x": rng.normal(size=(2, 3, 4)).tolist(), **weights, "heads": 2,
                                     "mask": mask.tolist()})
    trace = attention(problem)
    softmax = trace.steps["softmax"]
    expected = np.broadcast_to(~mask[:, None], softmax.shape)  # (batch, heads, q_len, k_len)
    np.testing.assert_array_equal(trace.masked(softmax), expected)
    np.testing.assert_array_equal(trace.masked(trace.steps["logits"]), np.isneginf(trace.steps["logits"].array))
    assert trace.masked(trace.steps["q"]) is None
    single = attention(problem_from_document({"x": [[1.0, 2.0], [3.0, 4.0]], "w_query": [[1, 0], [0, 1]],
                                              "w_key": [[1, 0], [0, 1]], "w_value": [[1, 0], [0, 1]],
                                              "mask": "causal"}))
    np.testing.assert_array_equal(single.masked(single.steps["softmax"]), [[False, True], [False, False]])
    assert attention(problem_from_document({"x": [[1.0]], "w_query": [[1]], "w_key": [[1]], "w_value": [[1]]})) \
        .masked(single.steps["softmax"]) is None
