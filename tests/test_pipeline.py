"""The core: problem → pipeline → trace, against published and PyTorch-made numbers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA, SAMPLES

from attncli.demo import CLASSIC_DOCUMENT
from attncli.errors import ProblemError
from attncli.pipeline import attention
from attncli.stages import masked_softmax
from attncli.problem import problem_from_document

GOLDEN_CASES = json.loads((DATA / "torch_golden.json").read_text())["cases"]


def trace_of(document, **overrides):
    return attention(problem_from_document(document, **overrides))


def test_classic_example_unscaled_matches_published_numbers_exactly(seed_example):
    trace = trace_of(seed_example["problem"], scale="none")
    expected = seed_example["expected"]
    assert list(trace.steps) == ["q", "k", "v", "scores", "softmax", "output"]
    for name in ("q", "k", "v", "scores", "softmax", "output"):
        np.testing.assert_array_equal(trace.steps[name].array, np.array(expected[name]), err_msg=name)
    np.testing.assert_allclose(trace.steps["output"].array[0], [1.9366210616669624, 6.683105308334811,
                                                                1.5950684074995565], rtol=0, atol=0)


def test_classic_example_scaled_by_one_over_sqrt_three(seed_example):
    trace = trace_of(seed_example["problem"])
    scaled = seed_example["expected_scaled"]
    assert list(trace.steps) == ["q", "k", "v", "scores", "logits", "softmax", "output"]
    assert trace.meta.as_dict()["scale"] == {"rule": "sqrt", "factor": scaled["factor"]}
    np.testing.assert_allclose(trace.steps["logits"].array,
                               np.array(seed_example["expected"]["scores"]) / np.sqrt(3), rtol=1e-15)
    np.testing.assert_allclose(trace.steps["softmax"].array, scaled["softmax"], rtol=1e-14)
    np.testing.assert_allclose(trace.steps["output"].array, scaled["output"], rtol=1e-14)


def test_classic_example_is_not_the_transposed_mistake(seed_example):
    trace = trace_of(seed_example["problem"], scale="none")
    mistaken = np.array(seed_example["common_mistake_transposed"]["output"])
    np.testing.assert_allclose(trace.steps["softmax"].array.T @ trace.steps["v"].array, mistaken, rtol=1e-14)
    assert np.abs(trace.steps["output"].array - mistaken).max() > 1.0


def test_shipped_classic_sample_is_the_demo_document():
    assert json.loads((SAMPLES / "classic.json").read_text()) == CLASSIC_DOCUMENT


@pytest.mark.parametrize("case", GOLDEN_CASES, ids=[case["name"] for case in GOLDEN_CASES])
def test_agrees_with_pytorch(case):
    trace = trace_of(case["document"])
    for name, expected in case["expected"].items():
        expected = np.array(expected)
        assert trace.steps[name].shape == expected.shape, name
        np.testing.assert_allclose(trace.steps[name].array, expected, rtol=1e-12, atol=1e-13, err_msg=name)


def test_golden_cases_cover_what_the_issue_lists():
    documents = [case["document"] for case in GOLDEN_CASES]
    assert any(np.ndim(d["x"]) == 3 and d.get("heads", 1) > 1 for d in documents)  # batch and heads
    assert any("b_query" in d for d in documents) and any("w_out" in d for d in documents)
    assert any("context" in d for d in documents)
    assert any(d.get("mask") == "causal" for d in documents)
    assert any(isinstance(d.get("mask"), list) for d in documents)


def test_fully_masked_row_gets_zero_weights_and_output_is_the_bias():
    case = next(c for c in GOLDEN_CASES if c["name"] == "sdpa_fully_masked_row")
    trace = trace_of(case["document"])
    weights = trace.steps["softmax"].array  # (batch, heads, q_len, k_len)
    assert np.all(weights[1, :, 1] == 0.0)
    assert np.all(trace.steps["concat"].array[1, 1] == 0.0)
    np.testing.assert_array_equal(trace.steps["output"].array[1, 1], case["document"]["b_out"])
    np.testing.assert_allclose(weights.sum(-1)[0], 1.0, rtol=1e-15)
    assert trace.warnings == (
        "every key is masked for query 1 of batch item 1, every head: its weights are 0 and its per-head output is 0",
    )
    assert np.isneginf(trace.steps["logits"].array[1, 0, 1]).all()


def test_logits_in_the_thousands_do_not_overflow():
    document = {
        "x": [[40.0, -35.0], [-50.0, 45.0], [30.0, 30.0]],
        "w_query": [[30.0, 0.0], [0.0, 30.0]],
        "w_key": [[2.0, 1.0], [1.0, 2.0]],
        "w_value": [[1.0, 0.0], [0.0, 1.0]],
        "scale": "none",
    }
    trace = trace_of(document)
    scores = trace.steps["scores"].array
    assert np.abs(scores).max() > 1000
    weights = trace.steps["softmax"].array
    assert np.isfinite(weights).all()
    # the winning key of each row takes all the weight: the others are e^(−hundreds) below it
    np.testing.assert_array_equal(weights, np.eye(3)[scores.argmax(-1)])
    np.testing.assert_array_equal(trace.steps["output"].array, np.array(document["x"])[scores.argmax(-1)])


def test_overflowing_inputs_are_an_error_naming_the_step():
    document = {"x": [[1e200, 1e200]], "w_query": [[1.0], [1.0]], "w_key": [[1.0], [1.0]], "w_value": [[1.0], [1.0]]}
    with pytest.raises(ProblemError) as caught:
        trace_of(document)
    assert caught.value.message == (
        "scores overflows float64 at (q_len 0, k_len 0): beyond ±1.8e308; scale the inputs or weights down"
    )
    assert caught.value.shapes == {"scores": (1, 1)}


def test_overflow_in_a_projection_is_named_too():
    document = {"x": [[1e300, 1e300]], "w_query": [[1e10], [1.0]], "w_key": [[1.0], [1.0]], "w_value": [[1.0], [1.0]]}
    with pytest.raises(ProblemError, match=r"^q overflows float64"):
        trace_of(document)


def test_steps_present_depend_on_scale_mask_and_w_out():
    base = {"x": [[1.0, 2.0]], "w_query": [[1.0], [0.0]], "w_key": [[1.0], [1.0]], "w_value": [[2.0], [1.0]]}
    assert list(trace_of(base, scale="none").steps) == ["q", "k", "v", "scores", "softmax", "output"]
    assert "logits" in trace_of(base, scale=2.0).steps
    # scale 1 but a mask: the masked logits are a step of their own
    assert "logits" in trace_of({**base, "mask": [[1]]}, scale="none").steps
    with_out = trace_of({**base, "w_out": [[3.0]], "b_out": [0.5]}, scale="none")
    assert list(with_out.steps)[-2:] == ["concat", "output"]
    assert with_out.steps["output"].array[0, 0] == with_out.steps["concat"].array[0, 0] * 3.0 + 0.5


def test_axes_follow_batch_and_heads():
    rng = np.random.default_rng(0)
    document = {
        "x": rng.normal(size=(2, 3, 4)).tolist(),
        "context": rng.normal(size=(2, 5, 6)).tolist(),
        "w_query": rng.normal(size=(4, 4)).tolist(),
        "w_key": rng.normal(size=(6, 4)).tolist(),
        "w_value": rng.normal(size=(6, 6)).tolist(),
        "w_out": rng.normal(size=(6, 7)).tolist(),
        "heads": 2,
    }
    steps = trace_of(document).steps
    expected = {
        "q": ((2, 2, 3, 2), ("batch", "heads", "q_len", "head_dim")),
        "k": ((2, 2, 5, 2), ("batch", "heads", "k_len", "head_dim")),
        "v": ((2, 2, 5, 3), ("batch", "heads", "k_len", "head_dim_v")),
        "scores": ((2, 2, 3, 5), ("batch", "heads", "q_len", "k_len")),
        "logits": ((2, 2, 3, 5), ("batch", "heads", "q_len", "k_len")),
        "softmax": ((2, 2, 3, 5), ("batch", "heads", "q_len", "k_len")),
        "concat": ((2, 3, 6), ("batch", "q_len", "heads*head_dim_v")),
        "output": ((2, 3, 7), ("batch", "q_len", "d_out")),
    }
    assert {name: (step.shape, step.axes) for name, step in steps.items()} == expected
    unbatched = trace_of({**document, "x": document["x"][0], "context": document["context"][0], "heads": 1}).steps
    assert (unbatched["scores"].shape, unbatched["scores"].axes) == ((3, 5), ("q_len", "k_len"))
    assert (unbatched["output"].shape, unbatched["output"].axes) == ((3, 7), ("q_len", "d_out"))


def test_heads_use_contiguous_blocks_of_columns():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 6))
    weights = {name: rng.normal(size=(6, 6)) for name in ("w_query", "w_key", "w_value")}
    trace = trace_of({"x": x.tolist(), **{k: v.tolist() for k, v in weights.items()}, "heads": 3})
    for head in range(3):
        block = slice(2 * head, 2 * head + 2)
        q, k, v = (x @ weights[name][:, block] for name in ("w_query", "w_key", "w_value"))
        logits = q @ k.T / np.sqrt(2)
        expected = np.exp(logits - logits.max(1, keepdims=True))
        expected /= expected.sum(1, keepdims=True)
        np.testing.assert_allclose(trace.steps["softmax"].array[head], expected, rtol=1e-13)
        np.testing.assert_allclose(trace.steps["output"].array[:, block], expected @ v, rtol=1e-13)


def test_per_head_weights_equal_side_by_side_weights():
    rng = np.random.default_rng(2)
    per_head = {name: rng.normal(size=(2, 5, 3)) for name in ("w_query", "w_key", "w_value")}
    x = rng.normal(size=(4, 5)).tolist()
    side_by_side = {name: np.concatenate(list(w), axis=1).tolist() for name, w in per_head.items()}
    a = trace_of({"x": x, **{k: v.tolist() for k, v in per_head.items()}})
    b = trace_of({"x": x, **side_by_side, "heads": 2})
    assert a.meta.heads == 2
    for name in a.steps:
        np.testing.assert_array_equal(a.steps[name].array, b.steps[name].array)


def test_causal_mask_is_aligned_top_left_for_unequal_lengths():
    rng = np.random.default_rng(3)
    document = {
        "x": rng.normal(size=(2, 3)).tolist(), "context": rng.normal(size=(4, 3)).tolist(),
        "w_query": np.eye(3).tolist(), "w_key": np.eye(3).tolist(), "w_value": np.eye(3).tolist(),
        "mask": "causal",
    }
    weights = trace_of(document).steps["softmax"].array
    assert (weights > 0).tolist() == [[True, False, False, False], [True, True, False, False]]


def test_mask_one_means_may_attend():
    document = {"x": [[1.0], [2.0]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[1.0]],
                "mask": [[0, 1], [True, False]]}
    weights = trace_of(document).steps["softmax"].array
    np.testing.assert_array_equal(weights, [[0.0, 1.0], [1.0, 0.0]])


def test_masked_softmax_rows_sum_to_one_and_empty_rows_are_zero():
    logits = np.array([[1.0, 2.0, -np.inf], [-np.inf, -np.inf, -np.inf], [1000.0, 999.0, 998.0]])
    allowed = np.isfinite(logits)
    weights = masked_softmax(logits, allowed)
    np.testing.assert_allclose(weights.sum(-1), [1.0, 0.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(weights[0, :2], np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum(), rtol=1e-15)
    assert weights[0, 2] == 0.0 and not np.isnan(weights).any()


def test_an_overflow_at_a_masked_position_is_harmless():
    # scores[0, 1] = 1e150 · 1e10 · 1e150 overflows, but query 0 may not see key 1
    document = {"x": [[1e150], [1.0]], "context": [[1.0], [1e150]], "w_query": [[1e10]], "w_key": [[1.0]],
                "w_value": [[1.0]], "mask": [[1, 0], [1, 1]], "scale": "none"}
    trace = trace_of(document)
    np.testing.assert_array_equal(trace.steps["softmax"].array, [[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_array_equal(trace.steps["output"].array, [[1.0], [1e150]])


def test_weighted_values_near_the_float64_maximum_stay_finite():
    biggest = np.finfo(np.float64).max
    # both keys carry the largest value: any weighting of them is exactly that value, though the
    # rounded products sum to inf
    document = {"x": [[1.0]], "context": [[0.0, biggest], [0.35, biggest]], "w_query": [[1.0]],
                "w_key": [[1.0], [0.0]], "w_value": [[0.0], [1.0]], "scale": "none"}
    np.testing.assert_array_equal(trace_of(document).steps["output"].array, [[biggest]])
    projected = trace_of({**document, "w_out": [[1e-300]]}).steps["output"].array
    np.testing.assert_allclose(projected, [[biggest * 1e-300]], rtol=1e-15)


def test_an_overflowing_value_projection_is_named_before_anything_uses_it():
    document = {"x": [[1.0]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[1e308, 1e308]],
                "w_out": [[1.0], [1.0]], "b_value": [1e308, 1e308]}
    with pytest.raises(ProblemError, match=r"^v overflows float64 at \(k_len 0, head_dim_v 0\)"):
        trace_of(document)
