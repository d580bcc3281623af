"""The pipeline (pipeline.py): problem → stages → trace, against published and PyTorch-made numbers, a
plain reference over random problems (hypothesis), the blocked path against the full one, and the
memory estimate."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import DATA, SAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st
from test_properties import full_axes, problems, reference

from attncli.demo import CLASSIC_DOCUMENT
from attncli.errors import ProblemError
from attncli.pipeline import attention, blocked_path, check_finite, formula, full_trace_bytes, problem_steps
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


def test_the_memory_estimate_counts_the_score_matrices():
    problem = problem_from_document({"x": np.zeros((2, 100, 8)).tolist(), "w_query": np.eye(8).tolist(),
                                     "w_key": np.eye(8).tolist(), "w_value": np.eye(8).tolist(), "heads": 2})
    scores = 2 * 2 * 100 * 100
    assert full_trace_bytes(problem) == 8 * (2 * (100 * 8 + 100 * 16 + 100 * 16) + 4 * scores)


def test_problem_steps_and_formulas_follow_the_problem(seed_example):
    problem = problem_from_document(seed_example["problem"], scale="none")
    assert problem_steps(problem) == ("q", "k", "v", "scores", "softmax", "averaged", "output")
    assert formula("output", problem) == "output = softmax·V"
    masked = problem_from_document({**seed_example["problem"], "mask": "causal", "w_out": np.eye(3).tolist()})
    assert problem_steps(masked) == ("q", "k", "v", "scores", "logits", "softmax", "averaged", "concat", "output")
    assert formula("logits", masked) == "logits = scores / √head_dim, masked → −∞"


def test_light_steps_of_a_large_problem_are_computed_in_blocks(seed_example, monkeypatch):
    import attncli.pipeline as pipeline

    problem = problem_from_document(seed_example["problem"])
    assert not blocked_path(problem, ["output"])  # 9 scores: too few to pay
    monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)
    assert blocked_path(problem, ["output"]) and blocked_path(problem, ("q", "k", "v", "concat"))
    assert not any(blocked_path(problem, steps) for steps in (None, [], ["output", "softmax"], ["scores"]))
    monkeypatch.setattr(pipeline, "BLOCK_ROWS", 1)
    done = []
    trace = attention(problem, ["output"], progress=lambda *counts: done.append(counts), workers=1)
    assert done == [(1, 3), (2, 3), (3, 3)]
    assert list(trace.steps) == ["output"] and trace.available == ("q", "k", "v", "scores", "logits", "softmax",
                                                                   "averaged", "output")
    np.testing.assert_allclose(trace.steps["output"].array, seed_example["expected_scaled"]["output"], rtol=1e-14)


def test_check_finite_names_the_first_cell_that_overflowed_unless_it_is_masked():
    problem = problem_from_document({"x": [[1.0], [2.0]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[1.0]],
                                     "heads": 1})
    scores = np.array([[[[1.0, 2.0], [np.inf, 3.0]]]])  # full axes: (batch, heads, q_len, k_len)
    with pytest.raises(ProblemError) as caught:
        check_finite("scores", scores, problem)
    assert (caught.value.message, caught.value.shapes) == (
        "scores overflows float64 at (q_len 1, k_len 0): beyond ±1.8e308; scale the inputs or weights down",
        {"scores": (2, 2)})
    check_finite("scores", scores, problem, allowed=np.array([[[[True, True], [False, True]]]]))
    with np.errstate(over="ignore"):  # as the pipeline calls it
        check_finite("scores", np.array([[[[1e308, 1e308], [1e308, 1e308]]]]), problem)  # only the sum overflows


def test_blocked_path_near_the_float64_maximum_gives_the_full_paths_output(monkeypatch):
    import attncli.pipeline as pipeline

    biggest = np.finfo(np.float64).max
    # three keys of equal score: the output is the mean of the values biggest, biggest and -biggest/2
    problem = problem_from_document({"x": [[1.0]], "context": [[1.0], [1.0], [-0.5]], "w_query": [[0.0]],
                                     "w_key": [[1.0]], "w_value": [[biggest]], "scale": "none"})
    full = pipeline.full_attention(problem).steps["output"].array
    np.testing.assert_allclose(full, [[biggest / 2]], rtol=1e-15)
    monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)
    np.testing.assert_allclose(attention(problem, ["output"]).steps["output"].array, full, rtol=1e-12)


# --- properties over random problems (hypothesis) ------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(problems())
def test_agrees_with_a_plain_reference(document):
    trace = attention(problem_from_document(document))
    output, weights, _ = reference(document)
    np.testing.assert_allclose(full_axes(trace, "softmax"), weights, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(full_axes(trace, "output"), output, rtol=1e-9, atol=1e-9)


@settings(max_examples=150, deadline=None)
@given(problems())
def test_softmax_rows_are_distributions_and_masked_weights_are_zero(document):
    trace = attention(problem_from_document(document))
    weights = full_axes(trace, "softmax")
    _, _, allowed = reference(document)
    allowed = np.broadcast_to(allowed, weights.shape)
    assert (weights >= 0).all()
    assert (weights[~allowed] == 0).all()
    sums = weights.sum(-1)
    seeing = allowed.any(-1)
    np.testing.assert_allclose(sums[seeing], 1.0, rtol=0, atol=1e-12)
    assert (sums[~seeing] == 0).all()


@settings(max_examples=150, deadline=None)
@given(problems())
def test_each_head_output_lies_in_the_convex_hull_of_its_values(document):
    document = {key: value for key, value in document.items() if key not in ("w_out", "b_out")}
    trace = attention(problem_from_document(document))
    weights, values = full_axes(trace, "softmax"), full_axes(trace, "v")  # (b, h, q, k), (b, h, k, d_v)
    output = full_axes(trace, "output")
    heads, d_v = values.shape[1], values.shape[3]
    per_head = output.reshape(output.shape[0], output.shape[1], heads, d_v).transpose(0, 2, 1, 3)
    low, high = values.min(axis=2, keepdims=True), values.max(axis=2, keepdims=True)
    seeing = weights.sum(-1) > 0
    slack = 1e-12 * (1 + np.abs(values).max())
    inside = (per_head >= low - slack) & (per_head <= high + slack)
    assert inside[seeing].all()


@settings(max_examples=150, deadline=None)
@given(problems(), st.integers(1, 3), st.sampled_from([1, 2]))
def test_blocked_path_gives_the_full_paths_numbers(document, block_rows, workers):
    import attncli.pipeline as pipeline

    problem = problem_from_document(document)
    full = pipeline.full_attention(problem)
    saved = pipeline.BLOCK_ROWS, pipeline.BLOCKED_MIN_CELLS
    pipeline.BLOCK_ROWS, pipeline.BLOCKED_MIN_CELLS = block_rows, 0  # blocks of a few rows, even here
    try:
        blocked = pipeline.attention(problem, steps=["q", "k", "v", "concat", "output"], workers=workers)
    finally:
        pipeline.BLOCK_ROWS, pipeline.BLOCKED_MIN_CELLS = saved
    assert "scores" not in blocked.steps
    # a trace of every step leaves out the heads' mean, made only when named
    assert pipeline.problem_steps(problem) == (*tuple(full.steps)[:-1 - ("concat" in full.steps)], "averaged",
                                              *tuple(full.steps)[-1 - ("concat" in full.steps):])
    # the blocked path rounds the scale at Q, the full path at the scores: a logit of size L moves
    # by about L·ε, and each weight by that much relative, so the agreement is bounded by L·ε·max|V|
    # (an ill-conditioned problem, logits ~2000 apart by 1e-4, shows it: 1.5e-12 in 0.5)
    logits = full.steps["logits" if "logits" in full.steps else "scores"].array
    largest_logit = float(np.abs(logits[np.isfinite(logits)]).max(initial=0.0))
    weighted_bound = 1e-12 + 16 * np.finfo(float).eps * largest_logit * float(np.abs(full.steps["v"].array).max())
    out_gain = 1.0 if problem.w_out is None else float(np.abs(problem.w_out).sum(axis=0).max())
    for name, step in blocked.steps.items():
        atol = {"concat": weighted_bound, "output": 1e-12 + weighted_bound * out_gain}.get(name, 1e-12)
        np.testing.assert_allclose(step.array, full.steps[name].array, rtol=1e-12, atol=atol, err_msg=name)
    assert blocked.warnings == full.warnings


def _without_mask_rule(document):
    # a causal mask is not a set of pairs that travels with a permutation
    if document.get("mask") == "causal":
        return {key: value for key, value in document.items() if key != "mask"}
    return document


@settings(max_examples=100, deadline=None)
@given(problems(), st.randoms(use_true_random=False))
def test_permuting_keys_with_their_values_changes_nothing(document, random):
    document = _without_mask_rule(document)
    source = "context" if "context" in document else "x"
    length = np.shape(document[source])[-2]
    order = list(range(length))
    random.shuffle(order)
    permuted = dict(document)
    if source == "context":
        permuted["context"] = np.take(np.array(document["context"]), order, axis=-2).tolist()
        if isinstance(document.get("mask"), list):
            permuted["mask"] = np.take(np.array(document["mask"]), order, axis=-1).tolist()
        before = attention(problem_from_document(document)).steps["output"].array
        after = attention(problem_from_document(permuted)).steps["output"].array
        np.testing.assert_allclose(after, before, rtol=1e-9, atol=1e-9)
    else:
        # self-attention: the tokens are queries too, so the output rows move with them
        permuted["x"] = np.take(np.array(document["x"]), order, axis=-2).tolist()
        if isinstance(document.get("mask"), list):
            mask = np.take(np.take(np.array(document["mask"]), order, axis=-1), order, axis=-2)
            permuted["mask"] = mask.tolist()
        before = attention(problem_from_document(document)).steps["output"].array
        after = attention(problem_from_document(permuted)).steps["output"].array
        np.testing.assert_allclose(after, np.take(before, order, axis=-2), rtol=1e-9, atol=1e-9)


@settings(max_examples=100, deadline=None)
@given(problems())
def test_inputs_a_thousand_times_larger_neither_overflow_nor_give_nan(document):
    scaled = {**document, "x": (np.array(document["x"]) * 1000).tolist()}
    if "context" in document:
        scaled["context"] = (np.array(document["context"]) * 1000).tolist()
    trace = attention(problem_from_document(scaled))
    for step in trace.steps.values():
        assert not np.isnan(step.array).any()
    assert np.isfinite(trace.steps["output"].array).all()


@settings(max_examples=100, deadline=None)
@given(problems())
def test_each_batch_item_is_computed_as_if_alone(document):
    if np.ndim(document["x"]) != 3:
        return
    batched = attention(problem_from_document(document)).steps["output"].array
    for item in range(len(document["x"])):
        alone = {**document, "x": document["x"][item]}
        if "context" in document:
            alone["context"] = document["context"][item]
        if isinstance(document.get("mask"), list):
            mask = np.array(document["mask"])
            chosen = min(item, len(mask) - 1)
            # (batch, q, k) -> (q, k); (batch, heads, q, k) -> (1, heads, q, k); (q, k) stays
            alone["mask"] = {2: mask, 3: mask[chosen], 4: mask[chosen:chosen + 1]}[mask.ndim].tolist()
        single = attention(problem_from_document(alone)).steps["output"].array
        np.testing.assert_allclose(single, batched[item], rtol=1e-12, atol=1e-12)


# --- the blocked path near the edges of the float range (from review) -----------------------------

def _blocked(problem, monkeypatch, rows=7):
    import attncli.pipeline as pipeline

    monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)
    monkeypatch.setattr(pipeline, "BLOCK_ROWS", rows)
    return pipeline.attention(problem, ["output"], workers=2)


def _overflow_message(run):
    with pytest.raises(ProblemError) as caught:
        run()
    return caught.value.message


def test_blocked_workers_print_no_numpy_warnings(monkeypatch):
    # numpy's error state is per thread: each worker sets its own, or values near ±1.8e308 warn
    rng = np.random.default_rng(2)
    problem = problem_from_document({
        "x": rng.uniform(0.5, 1.0, (40, 4)).tolist(), "w_query": rng.normal(size=(4, 4)).tolist(),
        "w_key": rng.normal(size=(4, 4)).tolist(), "w_value": np.full((4, 4), 1e305).tolist(), "heads": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        blocked = _blocked(problem, monkeypatch)
    np.testing.assert_allclose(blocked.steps["output"].array, attention(problem).steps["output"].array, rtol=1e-12)


def test_an_overflow_of_the_fast_arithmetic_alone_gives_the_plain_numbers(monkeypatch):
    # float32 Q near its largest value: Q × log2(e) overflows where Q·K and the scale do not
    rng = np.random.default_rng(9)
    problem = problem_from_document({"x": rng.uniform(0.9, 1.0, (40, 1)).tolist(), "w_query": [[3.0e38]],
                                     "w_key": [[1e-30]], "w_value": [[1.0]]}).astype("float32")
    full = attention(problem).steps["output"].array
    blocked = _blocked(problem, monkeypatch).steps["output"].array
    assert np.isfinite(full).all() and full.min() > 0.9
    np.testing.assert_allclose(blocked, full, rtol=1e-6)


def test_an_allowed_score_overflowing_to_minus_infinity_is_an_error_on_both_paths(monkeypatch):
    rng = np.random.default_rng(5)
    context = rng.uniform(0.5, 1.0, (30, 2))
    context[::2] *= -1e3  # even keys: scores of −1e310
    problem = problem_from_document({
        "x": rng.uniform(0.5, 1.0, (30, 2)).tolist(), "context": context.tolist(),
        "w_query": np.full((2, 2), 1e154).tolist(), "w_key": np.full((2, 2), 1e153).tolist(),
        "w_value": rng.normal(size=(2, 2)).tolist()})
    full = _overflow_message(lambda: attention(problem))
    assert full == ("scores overflows float64 at (q_len 0, k_len 0): beyond ±1.8e308; "
                    "scale the inputs or weights down")
    assert _overflow_message(lambda: _blocked(problem, monkeypatch)) == full


def test_the_blocked_path_names_the_full_paths_cell_whichever_block_fails_first(monkeypatch):
    rng = np.random.default_rng(4)
    problem = problem_from_document({
        "x": rng.normal(size=(60, 4)).tolist(), "w_query": np.full((4, 4), 1e154).tolist(),
        "w_key": np.full((4, 4), 1e154).tolist(), "w_value": rng.normal(size=(4, 4)).tolist(), "heads": 2})
    full = _overflow_message(lambda: attention(problem))
    assert full.startswith("scores overflows float64 at (heads 0, q_len 0, k_len 0)")
    for _ in range(5):
        assert _overflow_message(lambda: _blocked(problem, monkeypatch, rows=4)) == full
