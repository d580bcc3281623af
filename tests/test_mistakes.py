"""check's comparison and its known mistakes (mistakes.py): each slip gives the numbers of a wrong
implementation written out here in plain numpy, and check_step names it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SAMPLES
from test_cli import run, write
from users_attention import users_attention

from attncli.errors import ProblemError
from attncli.generate import random_document
from attncli.mistakes import MISTAKES, NotFinite, check_step, variants
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
                              "Q and K swapped", "scores scaled though the problem says scale: none",
                              "causal mask applied"]
    document = random_document(seq_len=3, d_model=4, heads=2, out_proj=True, bias=True, causal=True, seed=22)
    assert names(problem_from_document(document)) == [
        "weighted values summed over the query axis", "softmax over the wrong axis", "Q and K swapped",
        "heads split with the wrong reshape", "heads split without the transpose",
        "heads merged without moving them back", "scores not scaled", "scaled twice",
        "scaled by √d_model instead of √head_dim", "divided by head_dim instead of √head_dim", "mask inverted",
        "mask ignored", "weights used as (out, in) without transposing", "output projection left out",
        "b_query left out", "b_key left out", "b_value left out", "b_out left out", "every bias left out"]


def test_a_slip_that_does_not_fit_the_shapes_gives_no_numbers():
    cross = problem_from_document(random_document(seq_len=2, d_model=4, context_len=3, seed=23))
    arrays = {mistake.name: found for mistake, found in variants(cross)}
    assert arrays["Q and K swapped"] == {} and arrays["weighted values summed over the query axis"] == {}
    assert set(arrays["softmax over the wrong axis"]) == {"q", "k", "v", "scores", "logits", "softmax", "averaged",
                                                          "output"}


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
    # yours +∞ where attncli has a number: said as such, not as a difference of ∞; the other cells agree
    assert data["max_error"] == 0.0 and data["not_finite"] == {
        "index": [0, 0], "yours": "inf", "attncli": TRACE.steps["output"].array[0, 0], "cells": 1}
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


# --- NaN and ±∞ in your numbers ---------------------------------------------------------------------

def test_nan_and_infinity_in_yours_are_said_as_such_not_as_a_difference_of_infinity():
    right = TRACE.steps["output"].array
    yours = right.copy()
    yours[1, 2], yours[3, 0], yours[0, 1] = np.nan, -np.inf, yours[0, 1] + 0.25
    verdict = check_step(PROBLEM, TRACE, "output", yours)
    assert verdict.not_finite == NotFinite((1, 2), verdict.not_finite.yours, right[1, 2], 2)
    assert math.isnan(verdict.not_finite.yours)
    # the largest difference is of the cells that are numbers in yours: the one off by 0.25
    assert (verdict.agree, verdict.wrong_cells, verdict.worst) == (False, 3, (0, 1))
    assert verdict.max_error == pytest.approx(0.25)
    data = verdict.as_dict()
    assert data["not_finite"] == {"index": [1, 2], "yours": "nan", "attncli": right[1, 2], "cells": 2}
    assert data["max_error"] == pytest.approx(0.25)


def test_nan_in_yours_is_said_in_the_cli_words_and_json(tmp_path):
    right = attention(CLASSIC).steps["output"].array
    yours = right.copy()
    yours[2, 1] = np.nan
    theirs = write(tmp_path, "theirs.json", json.dumps(yours.tolist()))  # Python's json writes NaN
    words = run("check", SAMPLES / "classic.json", "-e", theirs)
    assert words.exit_code == 1 and "Traceback" not in words.output
    assert f"yours is NaN at [2, 1] where attncli has {float(right[2, 1])!r}" in words.stdout
    assert "inf" not in words.stdout and "largest difference" not in words.stdout
    data = json.loads(run("check", SAMPLES / "classic.json", "-e", theirs, "-f", "json").stdout)
    assert data["not_finite"] == {"index": [2, 1], "yours": "nan", "attncli": right[2, 1], "cells": 1}
    assert (data["max_error"], data["wrong_cells"]) == (0.0, 1)


# --- more classic mistakes, each written wrong in plain numpy (users_attention.py) ------------------

# 2 items, 3 tokens, d_model 8 in 2 heads of 4: √d_model, √head_dim and head_dim all differ
FULL = random_document(seq_len=3, d_model=8, heads=2, batch=2, out_proj=True, bias=True, seed=31)


def verdict_on(document, *bugs, step="output"):
    """The verdict on a user's ``step`` made with ``bugs`` (users_attention.py), the user's numbers
    and attncli's."""
    problem = problem_from_document(document)
    trace = attention(problem)
    right = trace.steps[step].array
    # the user's code without the bugs is right: the bugs are all that differ
    assert check_step(problem, trace, step, users_attention(document)[step]).agree
    theirs = users_attention(document, *bugs)[step]  # in the user's layout, which check reads
    return check_step(problem, trace, step, theirs), theirs.reshape(right.shape), right


def checked(document, *bugs, step="output"):
    """verdict_on's verdict, which measures the real difference."""
    verdict, theirs, right = verdict_on(document, *bugs, step=step)
    assert not verdict.agree and verdict.max_error == pytest.approx(np.abs(theirs - right).max(), rel=1e-12)
    assert verdict.max_error > 1e-3 and verdict.yours == theirs[verdict.worst]
    return verdict


@pytest.mark.parametrize("bug", ["split_untransposed", "merge_untransposed", "no_biases"])
def test_more_classic_mistakes_are_named(bug):
    assert checked(FULL, bug).mistakes[0] == MISTAKES[bug]


def test_scaling_though_the_problem_says_none_is_named():
    verdict = checked({**FULL, "scale": "none"}, "scaled_not_asked", step="softmax")
    assert verdict.mistakes[0] == MISTAKES["scaled_not_asked"]


def test_dividing_by_head_dim_is_named_tied_with_scaling_twice():
    # 1/√4 twice is 1/4: the two mistakes give the same numbers, and both are listed
    verdict = checked(FULL, "divided_by_d", step="softmax")
    assert verdict.mistakes[:2] == (MISTAKES["scaled_twice"], MISTAKES["divided_by_d"])


def test_the_weights_direction_is_said_for_the_names_the_file_uses(tmp_path):
    # PyTorch's names hold (out, in) weights: used as (in, out), each is applied untransposed
    problem = problem_from_document(FULL)
    right = attention(problem).steps["output"].array
    torch_document = {"query": FULL["x"], "heads": 2, "batch_first": True,
                      "in_proj_weight": np.vstack([np.array(FULL[name]).T for name in ("w_query", "w_key", "w_value")]),
                      "in_proj_bias": np.concatenate([FULL[name] for name in ("b_query", "b_key", "b_value")]),
                      "out_proj.weight": np.array(FULL["w_out"]).T, "out_proj.bias": FULL["b_out"]}
    theirs = users_attention(FULL, "untransposed_weights")["output"]  # x·W of the (out, in) weights: the slip
    assert np.abs(theirs - right).max() > 1e-2
    paths = {}
    for name, document in (("torch", torch_document), ("ours", FULL)):
        text = json.dumps({key: np.asarray(value).tolist() if key not in ("heads", "batch_first") else value
                           for key, value in document.items()})
        paths[name] = write(tmp_path, f"{name}.json", text)
    expected = write(tmp_path, "theirs.json", json.dumps(theirs.tolist()))
    for name, means in (("torch", "in_proj_weight, out_proj.weight are stored (out, in), as nn.Linear stores "
                                  "weights, and were applied as x·W"),
                        ("ours", MISTAKES["weights_not_transposed"].means)):
        result = run("check", paths[name], "-e", expected, "-f", "json")
        verdict = json.loads(result.stdout)
        assert result.exit_code == 1 and verdict["max_error"] == pytest.approx(np.abs(theirs - right).max())
        assert verdict["mistakes"][0]["means"] == means, verdict["mistakes"]
    assert verdict["mistakes"][0]["name"] == "weights used as (out, in) without transposing"
    words = run("check", paths["torch"], "-e", expected)
    assert "Likely mistake: PyTorch's (out, in) weights applied without transposing: " in words.stdout
    assert "  Fix: apply PyTorch's weights as x·Wᵀ + b (F.linear(x, W, b))" in words.stdout


@pytest.mark.parametrize(("first", "second"), [("split_untransposed", "merge_untransposed"),
                                               ("no_scaling", "no_biases")])
def test_two_mistakes_at_once_are_named_as_a_pair(first, second):
    verdict = checked(FULL, first, second)
    assert len(verdict.mistakes) == 1 and verdict.mistakes[0].parts == (MISTAKES[first].name, MISTAKES[second].name)
    assert verdict.mistakes[0].name == f"{MISTAKES[first].name}, and {MISTAKES[second].name}"


def test_a_pair_is_said_in_the_cli_words(tmp_path):
    theirs = users_attention(FULL, "split_untransposed", "merge_untransposed")["output"]
    problem_path = write(tmp_path, "p.json", json.dumps(FULL))
    words = run("check", problem_path, "-e", write(tmp_path, "t.json", json.dumps(theirs.tolist())))
    assert words.exit_code == 1
    assert ("Likely mistake (two at once): heads split without the transpose, and heads merged without moving "
            "them back: two mistakes at once: ") in words.stdout


def test_pairs_are_tried_only_within_the_budget(monkeypatch):
    import attncli.mistakes as mistakes

    theirs = users_attention(FULL, "split_untransposed", "merge_untransposed")["output"]
    problem = problem_from_document(FULL)
    trace = attention(problem)
    monkeypatch.setattr(mistakes, "PAIR_CELLS", 2 * 2 * 3 * 3 * 3)  # three pairs of this problem's 36 scores
    verdict = check_step(problem, trace, "output", theirs)
    assert not verdict.agree and verdict.mistakes == ()
