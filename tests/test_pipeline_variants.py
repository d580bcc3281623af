"""The blocked output-only path (pipeline.py) with every variant of issue 11: the same numbers as the
full path (to 1e-12 in float64), and blocks that touch only the keys their queries may see."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import attncli.pipeline as pipeline
from attncli.flow import keys_needed
from attncli.generate import random_document
from attncli.pipeline import attention
from attncli.problem import problem_from_document

GOLDEN = json.loads((Path(__file__).resolve().parent / "data" / "modern_golden.json").read_text())["cases"]


def blocked(problem, monkeypatch, rows, workers=2):
    monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)
    monkeypatch.setattr(pipeline, "BLOCK_ROWS", rows)
    return attention(problem, ["output"], workers=workers)


@pytest.mark.parametrize("case", GOLDEN, ids=[case["name"] for case in GOLDEN])
@pytest.mark.parametrize("rows", [1, 2, 5])
def test_blocks_give_the_full_paths_output_for_every_golden_problem(case, rows, monkeypatch):
    problem = problem_from_document(case["document"])
    full = attention(problem).steps["output"].array
    output = blocked(problem, monkeypatch, rows, workers=1 if rows == 5 else 2).steps["output"].array
    np.testing.assert_allclose(output, full, rtol=1e-12, atol=1e-13, equal_nan=True)
    expected = np.array(case["expected"]["output"], dtype=float)  # null: NaN
    np.testing.assert_allclose(output, expected, rtol=1e-12, atol=1e-13, equal_nan=True)


def llama_like(seq_len=96, **keys):
    document = random_document(seq_len=seq_len, d_model=16, heads=4, batch=2, seed=11, out_proj=True)
    document["w_key"] = [row[:8] for row in document["w_key"]]
    document["w_value"] = [row[:8] for row in document["w_value"]]
    return {**document, "kv_heads": 2, "rope": "neox", "mask": "causal", **keys}


@pytest.mark.parametrize("keys", [
    {},
    {"window": 7},
    {"window": 7, "qk_norm": {"q_weight": [1.5] * 4, "k_weight": [0.5] * 4}},
    {"qk_norm": {"q_weight": list(np.linspace(0.5, 2, 16)), "k_weight": list(np.linspace(2, 0.5, 8)), "over": "all"}},
    {"softcap": 2.0, "window": 9, "rope": "gptj"},
    {"alibi": True, "padding": [[1] * 96, [0] * 10 + [1] * 86]},
    {"sinks": [0.5, -1.0, 2.0, 0.0], "window": 5, "mask": "causal_lower_right"},
    {"masked_rows": "nan", "padding": [[1] * 96, [1] * 50 + [0] * 46], "mask": None},
])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_blocks_of_a_model_like_layer_agree_with_the_full_path(keys, dtype, monkeypatch):
    document = {key: value for key, value in llama_like(**keys).items() if value is not None}
    problem = problem_from_document(document)
    if dtype == "float32":
        problem = problem.astype(np.float32)
    full = attention(problem).steps["output"].array
    output = blocked(problem, monkeypatch, rows=16).steps["output"].array
    tolerance = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(output, full, rtol=tolerance, atol=tolerance, equal_nan=True)


def test_a_window_block_touches_only_the_keys_inside_its_queries_windows():
    problem = problem_from_document(llama_like(seq_len=400, window=16))
    spans = [keys_needed(problem, 0, 0, start, start + 32) for start in range(0, 400, 32)]
    # queries start..start+31 see keys start-15 .. start+31: 47 keys, not up to 400
    assert spans[0] == (0, 32)
    assert all(stop - start <= 16 + 32 - 1 for start, stop in spans)
    assert spans[5] == (160 - 15, 192)


def test_the_blocked_path_reads_each_query_heads_key_value_head(monkeypatch):
    # kv_heads 1 (multi-query): every query head reads the one key/value head
    document = random_document(seq_len=40, d_model=8, heads=4, seed=5)
    document["w_key"] = [row[:2] for row in document["w_key"]]
    document["w_value"] = [row[:2] for row in document["w_value"]]
    problem = problem_from_document({**document, "kv_heads": 1})
    trace = attention(problem)
    assert trace.steps["k"].array.shape == (40, 2)  # one key/value head: no heads axis
    assert trace.steps["q"].array.shape == (4, 40, 2)
    np.testing.assert_allclose(blocked(problem, monkeypatch, rows=3).steps["output"].array,
                               trace.steps["output"].array, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(("sinks", "said"), [
    (None, "NaN"), ([None, None], "NaN"), ([0.5, -1.0], "0"), ([None, -1.0], "NaN (0 in the heads with a sink)")])
def test_the_warning_says_what_a_blind_query_gets(sinks, said):
    document = {"x": [[1.0, 0.0], [0.0, 1.0]], "w_query": [[1.0, 0.0], [0.0, 1.0]], "w_key": [[1.0, 0.0], [0.0, 1.0]],
                "w_value": [[2.0, 0.0], [0.0, 3.0]], "heads": 2, "padding": [0, 1], "mask": "causal",
                "masked_rows": "nan", **({"sinks": sinks} if sinks else {})}
    trace = attention(problem_from_document(document))
    assert trace.warnings == (f"every key is masked for query 0, every head: its weights are {said} and its "
                              f"per-head output is {said}",)


@pytest.mark.parametrize("wanted", [["q_rotated"], ["q_normed"], ["q", "q_rotated"], ["q_normed", "output"],
                                    ["k_rotated", "q_rotated", "output"]])
def test_the_blocked_path_makes_the_per_query_steps_asked_for_from_the_stages_before_them(wanted, monkeypatch):
    document = llama_like(seq_len=40, qk_norm={"q_weight": [1.5, 0.5, 2.0, 1.0], "k_weight": [0.5] * 4})
    problem = problem_from_document(document)
    full = attention(problem)
    monkeypatch.setattr(pipeline, "BLOCKED_MIN_CELLS", 0)
    monkeypatch.setattr(pipeline, "BLOCK_ROWS", 7)
    assert pipeline.blocked_path(problem, wanted)
    trace = attention(problem, wanted)
    assert list(trace.steps) == [name for name in full.steps if name in wanted]
    for name in wanted:
        np.testing.assert_allclose(trace.steps[name].array, full.steps[name].array, rtol=1e-12, atol=1e-14)
