"""check's comparison and its known mistakes (mistakes.py): each slip gives the numbers of a wrong
implementation written out here in plain numpy, and check_step names it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SAMPLES

from attncli.errors import ProblemError
from attncli.generate import random_document
from attncli.mistakes import MISTAKES, check_step, variants
from attncli.pipeline import attention
from attncli.problem import problem_from_document

# self-attention (q_len = k_len, so every slip fits), 2 heads of width 2, scaled by 1/√2, no mask
DOCUMENT = random_document(seq_len=4, d_model=4, heads=2, seed=21)
PROBLEM = problem_from_document(DOCUMENT)
TRACE = attention(PROBLEM)
CLASSIC = problem_from_document(json.loads((SAMPLES / "classic.json").read_text()))


def written_wrong(slip):
    """Attention as a learner might write it, head by head, with one slip: "heads_interleaved" (head h
    takes every second column from h), "scores_transposed" (K·Qᵀ), "softmax_over_queries" (each
    column sums to 1), "transposed_weighted_sum" (softmaxᵀ·V). Returns its scores, softmax and output."""
    x = np.array(DOCUMENT["x"])
    q, k, v = (x @ np.array(DOCUMENT[name]) for name in ("w_query", "w_key", "w_value"))
    all_scores, all_weights, outputs = [], [], []
    for head in (0, 1):
        columns = slice(head, None, 2) if slip == "heads_interleaved" else slice(2 * head, 2 * head + 2)
        q_h, k_h, v_h = q[:, columns], k[:, columns], v[:, columns]
        scores = np.einsum("jd,id->ij", q_h, k_h) if slip == "scores_transposed" else np.einsum(
            "id,jd->ij", q_h, k_h)
        axis = 0 if slip == "softmax_over_queries" else 1
        exps = np.exp(scores / math.sqrt(2) - (scores / math.sqrt(2)).max(axis=axis, keepdims=True))
        weights = exps / exps.sum(axis=axis, keepdims=True)
        outputs.append(np.einsum("ji,jd->id" if slip == "transposed_weighted_sum" else "ij,jd->id", weights, v_h))
        all_scores.append(scores)
        all_weights.append(weights)
    return {"scores": np.array(all_scores), "softmax": np.array(all_weights), "output": np.hstack(outputs)}


STRUCTURAL = ["heads_interleaved", "scores_transposed", "softmax_over_queries", "transposed_weighted_sum"]


@pytest.mark.parametrize("slip", STRUCTURAL)
def test_each_slip_gives_the_numbers_of_the_wrong_implementation(slip):
    arrays = dict(variants(PROBLEM))[MISTAKES[slip]]
    wrong = written_wrong(slip)
    for name in ("scores", "softmax", "output"):
        np.testing.assert_allclose(arrays[name], wrong[name], rtol=1e-12, atol=1e-14, err_msg=name)
    right = {name: TRACE.steps[name].array for name in ("scores", "softmax", "output")}
    assert not np.allclose(wrong["output"], right["output"])


@pytest.mark.parametrize("slip", STRUCTURAL)
def test_check_step_names_the_slip_from_the_output(slip):
    verdict = check_step(PROBLEM, TRACE, "output", written_wrong(slip)["output"])
    assert not verdict.agree and verdict.wrong_cells > 0
    assert verdict.mistakes[0] == MISTAKES[slip]


@pytest.mark.parametrize(("slip", "step"), [("scores_transposed", "scores"), ("softmax_over_queries", "softmax"),
                                            ("heads_interleaved", "scores")])
def test_check_step_names_the_slip_from_an_earlier_step(slip, step):
    assert check_step(PROBLEM, TRACE, step, written_wrong(slip)[step]).mistakes[0] == MISTAKES[slip]


def names(problem):
    return [mistake.name for mistake, _ in variants(problem)]


def test_the_mistakes_tried_follow_the_problem():
    assert names(CLASSIC) == ["weighted values summed over the query axis", "softmax over the wrong axis",
                              "Q and K swapped", "causal mask applied"]
    document = random_document(seq_len=3, d_model=4, heads=2, out_proj=True, bias=True, causal=True, seed=22)
    assert names(problem_from_document(document)) == [
        "weighted values summed over the query axis", "softmax over the wrong axis", "Q and K swapped",
        "heads split with the wrong reshape", "scores not scaled", "scaled twice",
        "scaled by √d_model instead of √head_dim", "mask inverted", "mask ignored",
        "weights used as (out, in) without transposing", "output projection left out", "b_query left out",
        "b_key left out", "b_value left out", "b_out left out"]


def test_a_slip_that_does_not_fit_the_shapes_gives_no_numbers():
    cross = problem_from_document(random_document(seq_len=2, d_model=4, context_len=3, seed=23))
    arrays = {mistake.name: found for mistake, found in variants(cross)}
    assert arrays["Q and K swapped"] == {} and arrays["weighted values summed over the query axis"] == {}
    assert set(arrays["softmax over the wrong axis"]) == {"q", "k", "v", "scores", "logits", "softmax", "output"}


def test_check_step_of_the_traces_own_numbers_agrees():
    verdict = check_step(PROBLEM, TRACE, "softmax", TRACE.steps["softmax"].array)
    assert (verdict.agree, verdict.max_error, verdict.wrong_cells, verdict.cells, verdict.mistakes) == (
        True, 0.0, 0, 32, ())


def test_check_step_measures_the_largest_difference_and_where():
    yours = TRACE.steps["output"].array.copy()
    yours[2, 1] += 1e-3
    verdict = check_step(PROBLEM, TRACE, "output", yours)
    assert not verdict.agree and verdict.worst == (2, 1) and verdict.wrong_cells == 1 and verdict.mistakes == ()
    assert verdict.max_error == pytest.approx(1e-3)
    assert (verdict.yours, verdict.attncli) == (yours[2, 1], TRACE.steps["output"].array[2, 1])


def test_your_numbers_may_carry_extra_axes_of_size_1_but_no_other_shape():
    classic = attention(CLASSIC)
    assert check_step(CLASSIC, classic, "output", classic.steps["output"].array[None]).agree
    with pytest.raises(ProblemError) as caught:
        check_step(CLASSIC, classic, "output", np.zeros((2, 2)))
    assert (caught.value.message, caught.value.shapes) == ("has shape 2×2 but output is 3×3", {"output": (3, 3)})


def test_a_logit_of_minus_a_billion_is_masked_as_well_as_minus_infinity():
    masked = problem_from_document({**DOCUMENT, "mask": "causal"})
    trace = attention(masked)
    logits = trace.steps["logits"].array
    assert check_step(masked, trace, "logits", np.where(np.isneginf(logits), -1e9, logits)).agree


def test_a_verdict_as_json_data_writes_what_is_not_finite_as_text():
    yours = TRACE.steps["output"].array.copy()
    yours[0, 0] = np.inf
    data = check_step(PROBLEM, TRACE, "output", yours).as_dict()
    assert data["max_error"] == "inf" and data["worst"] == {
        "index": [0, 0], "yours": "inf", "attncli": TRACE.steps["output"].array[0, 0]}
    assert (data["step"], data["agree"], data["wrong_cells"], data["cells"], data["mistakes"]) == (
        "output", False, 1, 16, [])


def test_nan_rows_agree_with_nan_or_null_in_yours():
    # masked_rows "nan": the query that sees no key has NaN outputs; yours may say NaN or null (read as −∞)
    document = {"x": [[1.0, 0.0], [0.0, 1.0]], "w_query": [[1.0, 0.0], [0.0, 1.0]], "w_key": [[1.0, 0.0], [0.0, 1.0]],
                "w_value": [[2.0, 0.0], [0.0, 3.0]], "padding": [0, 1], "mask": "causal", "masked_rows": "nan"}
    problem = problem_from_document(document)
    trace = attention(problem)
    output = trace.steps["output"].array
    assert np.isnan(output[0]).all() and np.isfinite(output[1]).all()
    for blank in (np.nan, -np.inf):
        yours = output.copy()
        yours[0] = blank
        assert check_step(problem, trace, "output", yours).agree
    finite = np.nan_to_num(output)
    verdict = check_step(problem, trace, "output", finite)
    assert not verdict.agree and verdict.wrong_cells == 2
