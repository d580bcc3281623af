"""attncli against the reference implementations for the attention variants of issue 11.

tests/data/modern_golden.json was made by tests/data/make_modern_golden.py with PyTorch and Hugging Face
transformers in float64 (its docstring says how, and which float32 steps were run in float64); these
tests need neither. A JSON null in an expected step is a NaN (masked_rows "nan"); in a bias, -inf.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attncli.pipeline import attention
from attncli.problem import problem_from_document

DATA = Path(__file__).parent / "data"
GOLDEN = json.loads((DATA / "modern_golden.json").read_text())
CASES = GOLDEN["cases"]
IDS = [case["name"] for case in CASES]
SHIPPED = [case for case in CASES if "output_as_shipped" in case]


def expected_array(values) -> np.ndarray:
    return np.array(values, dtype=float)  # null -> NaN


@pytest.fixture(scope="module")
def traces() -> dict:
    """Each case's trace, computed once by attncli for both tests that read it."""
    return {}


def trace_of(case, traces):
    if case["name"] not in traces:
        traces[case["name"]] = attention(problem_from_document(case["document"]))
    return traces[case["name"]]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_agrees_with_the_reference(case, traces):
    trace = trace_of(case, traces)
    for name, values in case["expected"].items():
        expected = expected_array(values)
        assert name in trace.steps, f"attncli has no step {name}; it has {list(trace.steps)}"
        actual = np.asarray(trace.steps[name].array)
        assert actual.shape == expected.shape, name
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-13, equal_nan=True,
                                   err_msg=f"{case['name']}: {name}")


@pytest.mark.parametrize("case", SHIPPED, ids=[case["name"] for case in SHIPPED])
def test_close_to_the_reference_as_shipped(case, traces):
    # transformers as shipped computes RoPE's cos/sin, RMSNorm and Gemma 2's softmax in float32
    trace = trace_of(case, traces)
    np.testing.assert_allclose(trace.steps["output"].array, expected_array(case["output_as_shipped"]),
                               rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- what the golden file holds


def heads(doc) -> int:
    return doc.get("heads", 1)


def kv_heads(doc) -> int:
    return doc.get("kv_heads", heads(doc))


def gqa(doc) -> bool:
    return kv_heads(doc) < heads(doc)


def rope(doc) -> dict:
    value = doc.get("rope")
    return {"style": value} if isinstance(value, str) else (value or {})


def q_len(doc) -> int:
    return np.shape(doc["x"])[-2]


def k_len(doc) -> int:
    return np.shape(doc["context"])[-2] if "context" in doc else q_len(doc)


def batched(doc) -> bool:
    return np.ndim(doc["x"]) == 3


def has_neg_inf(values) -> bool:
    return any(has_neg_inf(item) for item in values) if isinstance(values, list) else values is None


def has_nan_row(case) -> bool:
    weights = expected_array(case["expected"]["softmax"])
    return bool(np.isnan(weights).all(axis=-1).any())


def causal(doc) -> bool:
    return doc.get("mask") in ("causal", "causal_lower_right")


VARIANTS = {
    "GQA": gqa,
    "MQA (kv_heads 1)": lambda d: kv_heads(d) == 1 < heads(d),
    "rope neox": lambda d: rope(d).get("style") == "neox",
    "rope gptj": lambda d: rope(d).get("style") == "gptj",
    "rope partial rotary_dim, neox": lambda d: rope(d).get("style") == "neox" and "rotary_dim" in rope(d),
    "rope partial rotary_dim, gptj": lambda d: rope(d).get("style") == "gptj" and "rotary_dim" in rope(d),
    "rope inv_freq": lambda d: "inv_freq" in rope(d),
    "rope theta": lambda d: "theta" in rope(d),
    "rope explicit positions": lambda d: "rope" in d and "positions" in d,
    "rope q_len < k_len default alignment": lambda d: "rope" in d and "positions" not in d and q_len(d) < k_len(d),
    "qk_norm head": lambda d: d.get("qk_norm", {}).get("over", "head") == "head" and "qk_norm" in d,
    "qk_norm all": lambda d: d.get("qk_norm", {}).get("over") == "all",
    "softcap": lambda d: "softcap" in d,
    "alibi true, heads 4": lambda d: d.get("alibi") is True and heads(d) == 4,
    "alibi true, heads 6": lambda d: d.get("alibi") is True and heads(d) == 6,
    "alibi list": lambda d: isinstance(d.get("alibi"), list),
    "bias 2-D": lambda d: np.ndim(d.get("bias")) == 2,
    "bias 3-D": lambda d: np.ndim(d.get("bias")) == 3,
    "bias 4-D": lambda d: np.ndim(d.get("bias")) == 4,
    "bias -inf cell": lambda d: "bias" in d and has_neg_inf(d["bias"]),
    "padding 1-D": lambda d: np.ndim(d.get("padding")) == 1,
    "padding 2-D": lambda d: np.ndim(d.get("padding")) == 2,
    "window with causal": lambda d: "window" in d and causal(d),
    "causal_lower_right q_len < k_len": lambda d: d.get("mask") == "causal_lower_right" and q_len(d) < k_len(d),
    "sinks": lambda d: "sinks" in d,
    "masked_rows nan": lambda d: d.get("masked_rows") == "nan",
}

COMBINATIONS = {
    "GQA + RoPE + window": lambda d: gqa(d) and "rope" in d and "window" in d,
    "GQA + RoPE + QK-norm": lambda d: gqa(d) and "rope" in d and "qk_norm" in d,
    "softcap + window + GQA": lambda d: "softcap" in d and "window" in d and gqa(d),
    "sinks + window + GQA + biases": lambda d: "sinks" in d and "window" in d and gqa(d)
    and {"b_query", "b_key", "b_value"} <= set(d),
    "ALiBi + causal + padding": lambda d: "alibi" in d and causal(d) and "padding" in d,
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_is_covered(variant):
    assert any(VARIANTS[variant](case["document"]) for case in CASES), variant


@pytest.mark.parametrize("key", ["kv_heads", "rope", "positions", "qk_norm", "softcap", "alibi", "bias", "padding",
                                 "window", "sinks", "masked_rows"])
def test_each_new_key_is_covered_batched_and_unbatched(key):
    assert {batched(case["document"]) for case in CASES if key in case["document"]} == {True, False}, key


def test_causal_lower_right_is_covered_batched_and_unbatched():
    documents = [case["document"] for case in CASES if case["document"].get("mask") == "causal_lower_right"]
    assert {batched(d) for d in documents} == {True, False}


@pytest.mark.parametrize("combination", COMBINATIONS)
def test_each_combination_real_models_use_is_covered(combination):
    assert any(COMBINATIONS[combination](case["document"]) for case in CASES), combination


def test_the_file_is_large_enough_and_says_where_it_came_from():
    assert len(CASES) >= 40 and len(set(IDS)) == len(IDS)
    assert GOLDEN["transformers_version"] and GOLDEN["torch_version"]
    assert any(has_nan_row(case) for case in CASES if case["document"].get("masked_rows") == "nan")


def test_empty_rows_only_where_labelled():
    # Hugging Face masks with finfo.min, which gives an empty row uniform weights: only the SDPA-bool case
    # labelled so, and the masked_rows "nan" case, have a query that sees no key
    for case in CASES:
        weights = expected_array(case["expected"]["softmax"])
        sums = weights.sum(axis=-1)
        empty = np.isnan(sums) | (sums == 0)
        if case["document"].get("masked_rows") == "nan":
            assert not (sums == 0).any(), case["name"]
        elif "LABELLED" not in case["about"]:
            assert not empty.any(), case["name"]
        else:
            assert case["reference"] == "sdpa" and empty.any() and not np.isnan(sums).any(), case["name"]


def test_sink_rows_sum_below_one_and_others_to_one():
    for case in CASES:
        sums = expected_array(case["expected"]["softmax"]).sum(axis=-1)
        sums = sums[np.isfinite(sums) & (sums != 0)]
        if "sinks" in case["document"]:
            assert (sums < 1).all(), case["name"]
        else:
            np.testing.assert_allclose(sums, 1.0, rtol=1e-14, err_msg=case["name"])
