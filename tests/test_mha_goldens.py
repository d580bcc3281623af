"""nn.MultiheadAttention's own numbers (models/mha_goldens.json, state_dicts as safetensors), read under
PyTorch's names: forward's query/key/value, batch_first false or true, attn_mask (bool True = blocked,
or float added) and key_padding_mask (True = padded). attncli's output is the module's attn_output
(batch-first: attncli's output stays batch-first whatever the layout read) and its per-head softmax
the module's per-head weights, to 1e-12. What attncli does not compute yet is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import DATA

from attncli.errors import ProblemError
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.safetensors import SafeTensorsFile

GOLDENS = json.loads((DATA / "models" / "mha_goldens.json").read_text())
CASES = {case["name"]: case for case in GOLDENS["cases"]}
SUPPORTED = ["seq_first", "batch_first", "self_attention_seq_first", "kdim_vdim_seq_first", "kdim_vdim_batch_first",
             "bool_attn_mask", "float_attn_mask", "key_padding_mask"]
NOT_YET = {
    "add_bias_kv": "bias_k (nn.MultiheadAttention's add_bias_kv) is not supported",
    "add_zero_attn": "add_zero_attn (nn.MultiheadAttention's extra zero key and value) is not supported yet "
                     "(issue 12's wish)",
    "everything": "bias_k (nn.MultiheadAttention's add_bias_kv) is not supported",
}


def document_of(case: dict) -> dict:
    """What a user saves: the state_dict, the module's heads and layout, forward's inputs and masks."""
    state = SafeTensorsFile(DATA / "models" / case["state_dict"])
    document = {name: state.read(name) for name in state.names}
    module = case["module"]
    document.update(heads=module["num_heads"], batch_first=module["batch_first"])
    if module["add_zero_attn"]:
        document["add_zero_attn"] = True
    for name in ("query", "key", "value", "attn_mask", "key_padding_mask"):
        if name in case:
            document[name] = case[name]
    return document


def batch_first(case: dict, array: list) -> np.ndarray:
    array = np.array(array)
    return array if case["module"]["batch_first"] else array.transpose(1, 0, 2)


def test_the_goldens_are_all_named():
    assert sorted(SUPPORTED + list(NOT_YET)) == sorted(CASES)


@pytest.mark.parametrize("name", SUPPORTED)
def test_agrees_with_multihead_attention(name):
    case = CASES[name]
    trace = attention(problem_from_document(document_of(case)))
    expected = batch_first(case, case["attn_output"])
    assert trace.steps["output"].shape == expected.shape
    np.testing.assert_allclose(trace.steps["output"].array, expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(trace.steps["softmax"].array, case["attn_output_weights_per_head"], rtol=1e-12,
                               atol=1e-13)
    # the module's averaged weights are the heads' mean
    np.testing.assert_allclose(trace.steps["softmax"].array.mean(axis=1), case["attn_output_weights"], rtol=1e-12,
                               atol=1e-13)


@pytest.mark.parametrize("name", sorted(NOT_YET))
def test_not_yet_supported_is_one_clear_line(name):
    with pytest.raises(ProblemError) as caught:
        problem_from_document(document_of(CASES[name]))
    assert caught.value.message == NOT_YET[name]
    assert "\n" not in str(caught.value)


def test_masks_mean_what_they_mean_in_pytorch():
    """A blocked cell (bool) and a −∞ (null) cell get weight 0; a padded key gets weight 0 from every query."""
    bool_case, float_case, padded = CASES["bool_attn_mask"], CASES["float_attn_mask"], CASES["key_padding_mask"]
    softmax = attention(problem_from_document(document_of(bool_case))).steps["softmax"].array
    assert (softmax[:, :, np.array(bool_case["attn_mask"])] == 0).all()
    softmax = attention(problem_from_document(document_of(float_case))).steps["softmax"].array
    blocked = np.array([[cell is None for cell in row] for row in float_case["attn_mask"]])
    assert (softmax[:, :, blocked] == 0).all() and (softmax[:, :, ~blocked] > 0).all()
    softmax = attention(problem_from_document(document_of(padded))).steps["softmax"].array
    ignored = np.array(padded["key_padding_mask"])
    assert (softmax.transpose(0, 3, 1, 2)[ignored] == 0).all()


def test_the_layout_is_read_from_batch_first():
    """The same numbers in both layouts give the same problem; saying the wrong layout changes it."""
    case = CASES["seq_first"]
    seq_first = attention(problem_from_document(document_of(case))).steps["output"].array
    document = {**document_of(case), "batch_first": True}
    for name in ("query", "key", "value"):
        document[name] = batch_first(case, case[name]).tolist()
    np.testing.assert_array_equal(attention(problem_from_document(document)).steps["output"].array, seq_first)
