"""nn.MultiheadAttention's own numbers (models/mha_goldens.json, state_dicts as safetensors), read under
PyTorch's names: forward's query/key/value, batch_first false or true, attn_mask (bool True = blocked,
or float added) and key_padding_mask (True = padded). attncli's output is the module's attn_output,
in the layout read ((L, N, E) when batch_first is false), its per-head softmax the module's
per-head weights and its step averaged the module's averaged weights, to 1e-12."""

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
             "bool_attn_mask", "float_attn_mask", "key_padding_mask", "add_bias_kv", "add_zero_attn", "everything"]


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
    assert sorted(SUPPORTED) == sorted(CASES)


@pytest.mark.parametrize("name", SUPPORTED)
def test_agrees_with_multihead_attention(name):
    case = CASES[name]
    trace = attention(problem_from_document(document_of(case)), ["softmax", "averaged", "output"])
    expected = np.array(case["attn_output"])  # in the module's layout: (L, N, E) when batch_first is false
    assert trace.steps["output"].shape == expected.shape
    assert trace.steps["output"].axes == (("batch", "q_len") if case["module"]["batch_first"] else
                                          ("q_len", "batch")) + ("d_out",)
    np.testing.assert_allclose(trace.steps["output"].array, expected, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(trace.steps["softmax"].array, case["attn_output_weights_per_head"], rtol=1e-12,
                               atol=1e-13)
    # the module's averaged weights (need_weights=True, average_attn_weights=True) are the step averaged
    np.testing.assert_allclose(trace.steps["averaged"].array, case["attn_output_weights"], rtol=1e-12, atol=1e-13)


def test_appended_keys_are_seen_by_every_query_and_the_zero_key_takes_its_share():
    """add_bias_kv and add_zero_attn: two more keys, after the key_padding_mask's and attn_mask's, never masked;
    the zero key's logit is 0, so its weight is e^0 over the row's total."""
    case = CASES["everything"]
    trace = attention(problem_from_document(document_of(case)), ["k", "v", "logits", "softmax"])
    keys, values, softmax = trace.steps["k"].array, trace.steps["v"].array, trace.steps["softmax"].array
    source_len = np.array(case["key"]).shape[0]
    assert keys.shape[-2] == values.shape[-2] == softmax.shape[-1] == source_len + 2
    state = SafeTensorsFile(DATA / "models" / case["state_dict"])
    bias_k, bias_v = state.read("bias_k").reshape(-1), state.read("bias_v").reshape(-1)
    heads, head_dim = keys.shape[1], keys.shape[-1]
    np.testing.assert_array_equal(keys[:, :, source_len], np.broadcast_to(bias_k.reshape(heads, head_dim),
                                                                          keys[:, :, source_len].shape))
    np.testing.assert_array_equal(values[:, :, source_len], np.broadcast_to(bias_v.reshape(heads, -1),
                                                                            values[:, :, source_len].shape))
    assert (keys[:, :, -1] == 0).all() and (values[:, :, -1] == 0).all()
    assert (softmax[..., source_len:] > 0).all()
    logits = trace.steps["logits"].array
    np.testing.assert_allclose(softmax[..., -1], 1 / np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)
                               * np.exp(-logits.max(-1)), rtol=1e-13)


def test_a_float_key_padding_mask_is_added():
    """PyTorch adds a float key_padding_mask to the logits: −∞ where the bool one says True gives its numbers."""
    case = CASES["key_padding_mask"]
    document = document_of(case)
    padded = np.array(case["key_padding_mask"])
    as_float = document | {"key_padding_mask": np.where(padded, -np.inf, 0.0)}
    expected = attention(problem_from_document(document)).steps["output"].array
    np.testing.assert_array_equal(attention(problem_from_document(as_float)).steps["output"].array, expected)
    # a finite float is a bias: 0.5 on one key shifts that key's logits for every query of its batch item
    shifted = np.zeros(padded.shape)
    shifted[0, 1] = 0.5
    biased = attention(problem_from_document(document | {"key_padding_mask": shifted}), ["biased"]).steps
    plain = attention(problem_from_document(document | {"key_padding_mask": np.zeros(padded.shape)}), ["biased"])
    difference = biased["biased"].array - plain.steps["biased"].array
    np.testing.assert_allclose(difference[0, :, :, 1], 0.5, rtol=1e-15)
    assert (difference[1] == 0).all() and (np.delete(difference[0], 1, axis=-1) == 0).all()


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
    batch_first_output = attention(problem_from_document(document)).steps["output"].array
    np.testing.assert_array_equal(batch_first_output, seq_first.transpose(1, 0, 2))


def test_a_layout_nothing_tells_gets_a_warning_and_masks_tell_it():
    """Without batch_first, 3-D inputs of shape (4, 2, E) could be either layout: read batch-first, with
    a warning that says how to tell; a key_padding_mask (batch, S) tells the layout, and no warning."""
    case = CASES["key_padding_mask"]  # seq-first, query (L 4, N 2, E)
    document = {key: value for key, value in document_of(case).items() if key != "batch_first"}
    told = attention(problem_from_document(document))
    assert told.warnings == () and told.meta.as_dict()["batch_first"] is False
    np.testing.assert_allclose(told.steps["output"].array, case["attn_output"], rtol=1e-12, atol=1e-13)
    # a key of another length than the query tells it too
    keyed = {key: value for key, value in document.items() if key != "key_padding_mask"}
    assert attention(problem_from_document(keyed)).meta.as_dict()["batch_first"] is False
    self_attention = CASES["self_attention_seq_first"]
    untold = {key: value for key, value in document_of(self_attention).items() if key != "batch_first"}
    trace = attention(problem_from_document(untold))
    shape = np.shape(self_attention["query"])
    assert trace.warnings == (
        f"query {shape[0]}×{shape[1]}×{shape[2]} is read batch-first, (batch, seq, E) = ({shape[0]}, {shape[1]}, "
        f"{shape[2]}); nn.MultiheadAttention's default is batch_first=False, (seq, batch, E): say batch_first: true "
        "or false in the file",)
    assert "batch_first" not in trace.meta.as_dict() and trace.steps["output"].shape == shape


def test_attncli_names_take_batch_first_too():
    """batch_first: false with attncli's own names: x (seq, batch, d_model) in, output (seq, batch, d_out) out."""
    from attncli.generate import random_document

    document = random_document(seq_len=3, d_model=4, heads=2, batch=2, seed=1)
    expected = attention(problem_from_document(document)).steps["output"].array
    seq_first = {**document, "x": np.array(document["x"]).transpose(1, 0, 2), "batch_first": False}
    trace = attention(problem_from_document(seq_first))
    assert trace.steps["output"].axes == ("q_len", "batch", "d_out")
    np.testing.assert_array_equal(trace.steps["output"].array, expected.transpose(1, 0, 2))
    # an unbatched x is (seq, d_model) in either layout
    unbatched = {**document, "x": document["x"][0], "batch_first": False}
    assert attention(problem_from_document(unbatched)).steps["output"].axes == ("q_len", "d_out")


def test_check_reads_the_modules_averaged_weights(tmp_path):
    """attn_output_weights as the module returns them agree with the step averaged; with the masks
    left out they do not, and check names the mistake."""
    from test_cli import run

    case = CASES["everything"]
    problem_path = tmp_path / "layer.npz"
    np.savez(problem_path, **{name: np.asarray(value) for name, value in document_of(case).items()})
    right = tmp_path / "weights.json"
    right.write_text(json.dumps(case["attn_output_weights"]))
    result = run("check", problem_path, "--expected", right, "--step", "averaged", "--format", "json")
    verdict = json.loads(result.stdout)
    assert result.exit_code == 0 and verdict["agree"] and verdict["max_error"] < 1e-15
    document = document_of(case)
    unmasked = {name: value for name, value in document.items() if name not in ("attn_mask", "key_padding_mask")}
    wrong = tmp_path / "unmasked.json"
    wrong.write_text(json.dumps(attention(problem_from_document(unmasked), ["averaged"]).steps["averaged"].array
                                .tolist()))
    result = run("check", problem_path, "--expected", wrong, "--step", "averaged", "--format", "json")
    verdict = json.loads(result.stdout)
    assert result.exit_code == 1 and not verdict["agree"] and verdict["max_error"] > 0.1
    assert [mistake["name"] for mistake in verdict["mistakes"]][:1] == ["mask ignored"]


def test_as_many_queries_as_batch_items_the_key_still_tells_the_layout():
    """query (L 2, N 2, E): only a key of another length says seq-first; with none, a warning."""
    case = CASES["kdim_vdim_seq_first"]
    document = {key: value for key, value in document_of(case).items() if key != "batch_first"}
    query = np.asarray(document["query"])
    square = {**document, "query": query[:2, :2], "attn_mask": None}  # (2, 2, E) against a key (S, 2, kdim)
    square = {key: value for key, value in square.items() if value is not None and key != "key_padding_mask"}
    trace = attention(problem_from_document(square))
    assert trace.warnings == () and trace.meta.as_dict()["batch_first"] is False
    assert trace.steps["output"].axes == ("q_len", "batch", "d_out")


@pytest.mark.parametrize("name", ["key_padding_mask", "attn_mask"])
def test_a_mask_of_0s_and_1s_is_refused_not_added(name):
    """PyTorch takes bool or float masks: 0/1 numbers would raise logits by 1, not hide keys."""
    case = CASES["key_padding_mask" if name == "key_padding_mask" else "bool_attn_mask"]
    document = document_of(case)
    document[name] = np.asarray(case[name], dtype=np.float64).tolist()
    with pytest.raises(ProblemError) as caught:
        problem_from_document(document)
    meaning = "padded" if name == "key_padding_mask" else "blocked"
    assert caught.value.message == (f"{name} holds 0s and 1s; PyTorch takes a bool mask (True = {meaning}) or a "
                                    f"float one, added to the logits (-inf = {meaning}): give true/false")


def test_shapes_shows_a_seq_first_document_as_compute_gives_it(tmp_path):
    """shapes of a batch_first: false layer: x, concat and output sequence first, as compute gives them."""
    from test_cli import run

    case = CASES["seq_first"]
    path = tmp_path / "layer.npz"
    np.savez(path, **{name: np.asarray(value) for name, value in document_of(case).items()})
    rows = {row["step"]: row for row in json.loads(run("shapes", path, "--format", "json").stdout)["steps"]}
    length, batch, embed = np.shape(case["query"])
    assert (rows["x"]["shape"], rows["x"]["axes"]) == ([length, batch, embed], ["q_len", "batch", "d_model"])
    assert (rows["output"]["shape"], rows["output"]["axes"]) == ([length, batch, embed], ["q_len", "batch", "d_out"])
    assert rows["q"]["axes"] == ["batch", "heads", "q_len", "head_dim"]
    output = json.loads(run("compute", path, "--step", "output", "--format", "json").stdout)["output"]
    assert np.shape(output) == (length, batch, embed)
