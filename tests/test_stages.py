"""The stages (stages.py): their order, names, axes and units, which a problem has, and their formulas
for given sizes."""

from __future__ import annotations

import numpy as np
import pytest

from attncli.generate import random_document
from attncli.keys import STEP_NAMES
from attncli.problem import problem_from_document
from attncli.sizes import Sizes, sizes_of
from attncli.stages import STAGE, STAGES, STEP_AXES


def test_the_shown_stages_are_the_step_names_in_order():
    assert tuple(stage.name for stage in STAGES if stage.shown) == STEP_NAMES
    assert [stage.name for stage in STAGES] == ["q", "k", "v", "q_normed", "k_normed", "q_rotated", "k_rotated",
                                                "scores", "logits", "capped", "biased", "softmax", "averaged",
                                                "weighted", "concat", "output"]
    assert STAGE == {stage.name: stage for stage in STAGES}


def test_each_stage_names_the_axes_of_its_array():
    assert STEP_AXES == {
        "q": ("batch", "heads", "q_len", "head_dim"),
        "k": ("batch", "kv_heads", "k_len", "head_dim"),
        "v": ("batch", "kv_heads", "k_len", "head_dim_v"),
        "q_normed": ("batch", "heads", "q_len", "head_dim"),
        "k_normed": ("batch", "kv_heads", "k_len", "head_dim"),
        "q_rotated": ("batch", "heads", "q_len", "head_dim"),
        "k_rotated": ("batch", "kv_heads", "k_len", "head_dim"),
        "scores": ("batch", "heads", "q_len", "k_len"),
        "logits": ("batch", "heads", "q_len", "k_len"),
        "capped": ("batch", "heads", "q_len", "k_len"),
        "biased": ("batch", "heads", "q_len", "k_len"),
        "softmax": ("batch", "heads", "q_len", "k_len"),
        "averaged": ("batch", "q_len", "k_len"),
        "concat": ("batch", "q_len", "heads*head_dim_v"),
        "output": ("batch", "q_len", "d_out"),
    }
    assert STAGE["weighted"].axes == ("batch", "heads", "q_len", "head_dim_v")


def test_the_blocked_path_makes_keys_and_values_once_and_the_output_from_every_head():
    assert {stage.name: stage.unit for stage in STAGES} == {
        "q": "block", "k": "problem", "v": "problem", "q_normed": "block", "k_normed": "problem",
        "q_rotated": "block", "k_rotated": "problem", "scores": "block", "logits": "block", "capped": "block",
        "biased": "block", "softmax": "block", "averaged": "heads", "weighted": "block", "concat": "block",
        "output": "heads"}


def test_which_values_are_checked_for_overflow():
    assert {stage.name: stage.checked for stage in STAGES} == {
        "q": "all", "k": "all", "v": "all", "q_normed": "all", "k_normed": "all", "q_rotated": "all",
        "k_rotated": "all", "scores": "allowed", "logits": "allowed", "capped": "allowed", "biased": "allowed",
        "softmax": None, "averaged": None, "weighted": None, "concat": None, "output": "all"}


@pytest.mark.parametrize(("sizes", "present"), [
    (Sizes(seq_len=3, d_model=4), ["q", "k", "v", "scores", "logits", "softmax", "averaged", "weighted", "output"]),
    (Sizes(seq_len=3, d_model=4, scaled=False), ["q", "k", "v", "scores", "softmax", "averaged", "weighted", "output"]),
    (Sizes(seq_len=3, d_model=4, scaled=False, masked=True, d_out=2),
     ["q", "k", "v", "scores", "logits", "softmax", "averaged", "weighted", "concat", "output"]),
])
def test_logits_are_there_when_scaled_or_masked_and_concat_with_w_out(sizes, present):
    assert [stage.name for stage in STAGES if stage.present(sizes)] == present


def formulas(sizes):
    """The formulas of the steps a trace of every step shows (not those made only when named)."""
    return {stage.name: stage.formula(sizes) for stage in STAGES
            if stage.shown and not stage.requested and stage.present(sizes)}


def test_the_heads_mean_is_made_only_when_named():
    assert [stage.name for stage in STAGES if stage.requested] == ["averaged"]
    assert STAGE["averaged"].formula(Sizes(seq_len=3, d_model=4, heads=2)) == "averaged = mean of softmax over heads"
    assert STAGE["averaged"].formula(Sizes(seq_len=3, d_model=4)) == "averaged = softmax"


def test_formulas_in_their_general_form_for_sizes_alone():
    assert formulas(Sizes(seq_len=3, d_model=4)) == {
        "q": "Q = x·W_Q", "k": "K = x·W_K", "v": "V = x·W_V", "scores": "scores = Q·Kᵀ",
        "logits": "logits = scores × scale", "softmax": "softmax over keys", "output": "output = softmax·V"}
    general = formulas(Sizes(seq_len=3, d_model=4, heads=2, context_len=5, d_context=6, d_out=2))
    assert (general["k"], general["v"]) == ("K = context·W_K", "V = context·W_V")
    assert (general["concat"], general["output"]) == ("concat = [softmax·V for each head]", "output = concat·W_O")
    assert formulas(Sizes(seq_len=3, d_model=4, heads=2))["output"] == "output = [softmax·V for each head]"


def problem_of(**options):
    return problem_from_document({**random_document(3, 4, seed=5), **options})


def test_formulas_of_a_real_problem_name_its_scale_mask_and_biases():
    document = random_document(3, 4, heads=2, context_len=5, out_proj=True, bias=True, causal=True, seed=5)
    full = problem_from_document({key: value for key, value in document.items() if key != "b_value"})
    assert formulas(sizes_of(full)) == {
        "q": "Q = x·W_Q + b_Q", "k": "K = context·W_K + b_K", "v": "V = context·W_V", "scores": "scores = Q·Kᵀ",
        "logits": "logits = scores / √head_dim, masked → −∞", "softmax": "softmax = softmax(logits) over keys",
        "concat": "concat = [softmax·V for each head]", "output": "output = concat·W_O + b_O"}
    plain = formulas(sizes_of(problem_of(scale="none")))
    assert "logits" not in plain and plain["softmax"] == "softmax = softmax(scores) over keys"
    assert plain["output"] == "output = softmax·V"
    assert formulas(sizes_of(problem_of(scale=0.5)))["logits"] == "logits = scores × 0.5"
    assert formulas(sizes_of(problem_of(scale="none", mask="causal")))["logits"] == "logits = scores, masked → −∞"
    one_head = formulas(sizes_of(problem_of(w_out=np.eye(4).tolist())))
    assert (one_head["concat"], one_head["output"]) == ("concat = softmax·V", "output = concat·W_O")


def test_a_new_stage_is_one_entry_in_the_list(monkeypatch):
    # A stage that transforms Q (as a rotation would) goes in after q and fills q's slot: the full
    # path and the blocked path run it with no change of their own, and the scores read its Q.
    import dataclasses

    from attncli import blocked, pipeline, stages

    problem = problem_from_document(random_document(seq_len=40, d_model=8, heads=2, bias=True, causal=True,
                                                    out_proj=True, seed=5))
    negated_weights = dataclasses.replace(problem, w_query=-problem.w_query, b_query=-problem.b_query)
    plain = pipeline.full_attention(problem)
    expected = pipeline.full_attention(negated_weights).steps["output"].array
    assert not np.allclose(expected, plain.steps["output"].array)

    negated = stages.Stage("q_negated", STAGE["q"].axes, lambda flow: -flow.arrays["q"], lambda sizes: "−Q",
                           lambda sizes: "negated", checked=None, shown=False, transforms="q")
    with_new_stage = (STAGES[0], negated, *STAGES[1:])
    monkeypatch.setattr(stages, "STAGES", with_new_stage)
    monkeypatch.setattr(pipeline, "STAGES", with_new_stage)
    monkeypatch.setattr(blocked, "STAGES", with_new_stage)
    monkeypatch.setattr(pipeline, "_LAYOUTS", {})  # the stages a layout runs are kept with it
    full = pipeline.full_attention(problem)
    monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)
    monkeypatch.setattr(pipeline, "BLOCK_ROWS", 7)
    blocked = pipeline.attention(problem, ["output"])

    # the q step is still the projection's; every step after it saw the negated Q
    np.testing.assert_array_equal(full.steps["q"].array, plain.steps["q"].array)
    np.testing.assert_allclose(full.steps["output"].array, expected, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(blocked.steps["output"].array, expected, rtol=1e-12, atol=1e-14)


def test_the_architecture_notes_list_the_stages_as_they_are():
    from pathlib import Path

    notes = (Path(__file__).resolve().parent.parent / "docs" / "architecture.md").read_text()
    rows = [line.split("|")[1:-1] for line in notes.splitlines() if line.startswith("| `")]
    listed = [(name.strip().strip("`"), axes.strip(), unit.strip(), shown.strip() == "yes")
              for name, _, axes, unit, shown in rows]
    assert listed == [(stage.name, "(" + ", ".join(stage.axes) + ")", stage.unit, stage.shown) for stage in STAGES]
