"""PyTorch's nn.MultiheadAttention names, translated to attncli's: transposed, the packed weight cut
in thirds, and every way a state_dict can be given wrong. (The CLI's run of real state_dicts
against PyTorch's own outputs is in test_io.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from attncli.errors import ProblemError
from attncli.torchnames import from_pytorch_names, uses_pytorch_names

E = 4  # embed_dim
PACKED = np.arange(3 * E * E, dtype=np.float64).reshape(3 * E, E)  # (3E, E), as PyTorch stores it
PACKED_BIAS = np.arange(3 * E, dtype=np.float64) / 10
OUT = np.arange(E * E, dtype=np.float64).reshape(E, E) - 5


def as_flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def error_of(document) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        from_pytorch_names(document)
    return caught.value


def test_which_documents_use_pytorch_names():
    assert uses_pytorch_names({"in_proj_weight": [[1]]})
    assert uses_pytorch_names({"out_proj.weight": [[1]], "x": [[1]]})
    # add_bias_kv's and add_zero_attn's names are attncli's too: they alone do not make a PyTorch document
    assert not uses_pytorch_names({"bias_k": [1], "bias_v": [1], "add_zero_attn": True})
    assert not uses_pytorch_names({"x": [[1]], "w_query": [[1]], "heads": 2})


def test_packed_weights_are_cut_in_thirds_and_transposed():
    document = {"x": [[1.0] * E], "heads": 2, "in_proj_weight": PACKED.tolist(), "in_proj_bias": PACKED_BIAS.tolist(),
                "out_proj.weight": OUT.tolist(), "out_proj.bias": [1.0, 2.0, 3.0, 4.0]}
    converted = from_pytorch_names(document)
    assert sorted(converted) == ["b_key", "b_out", "b_query", "b_value", "heads", "w_key", "w_out", "w_query",
                                 "w_value", "x"]
    np.testing.assert_array_equal(converted["w_query"], PACKED[:E].T)
    np.testing.assert_array_equal(converted["w_key"], PACKED[E:2 * E].T)
    np.testing.assert_array_equal(converted["w_value"], PACKED[2 * E:].T)
    assert converted["w_query"][0].tolist() == [0.0, 4.0, 8.0, 12.0]  # row 0 of W_Q is column 0 of PyTorch's
    np.testing.assert_array_equal(converted["b_query"], [0.0, 0.1, 0.2, 0.3])
    np.testing.assert_array_equal(converted["b_value"], [0.8, 0.9, 1.0, 1.1])
    np.testing.assert_array_equal(converted["w_out"], OUT.T)
    np.testing.assert_array_equal(converted["b_out"], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(converted["x"], [[1.0] * E])
    assert converted["heads"] == 2


def test_separate_weights_may_have_other_widths():
    k_dim, v_dim = 2, 3
    document = {"heads": 1, "q_proj_weight": np.eye(E).tolist(),
                "k_proj_weight": np.arange(E * k_dim).reshape(E, k_dim).tolist(),
                "v_proj_weight": np.ones((E, v_dim)).tolist()}
    converted = from_pytorch_names(document)
    np.testing.assert_array_equal(converted["w_query"], np.eye(E))
    assert converted["w_key"].shape == (k_dim, E) and converted["w_value"].shape == (v_dim, E)
    np.testing.assert_array_equal(converted["w_key"], np.arange(E * k_dim).reshape(E, k_dim).T)
    assert "w_out" not in converted and "b_query" not in converted


def test_heads_is_required_and_named_as_a_field():
    error = error_of({"in_proj_weight": PACKED.tolist()})
    assert error.render(as_flag) == ("heads is required with PyTorch's weight names (nn.MultiheadAttention's "
                                     "num_heads): give it in the file or as --heads N")
    assert str(error) == ("heads is required with PyTorch's weight names (nn.MultiheadAttention's num_heads): "
                          "give it in the file or as heads N")
    assert error.key == "heads"


@pytest.mark.parametrize(("document", "message", "key"), [
    ({"heads": 1, "in_proj_weight": PACKED.tolist(), "w_query": [[1]]},
     "w_query is given beside PyTorch's names (in_proj_weight, …): use one naming or the other", "w_query"),
    ({"heads": 1, "in_proj_weight": PACKED.tolist(), "q_proj_weight": [[1]]},
     "give in_proj_weight or q_proj_weight/k_proj_weight/v_proj_weight, not both", "in_proj_weight"),
    ({"heads": 1, "in_proj_weight": PACKED[:2 * E].tolist()},
     "in_proj_weight has shape 8×4; nn.MultiheadAttention packs (3·embed_dim, embed_dim) = 12×4", "in_proj_weight"),
    ({"heads": 1, "q_proj_weight": [[1]], "v_proj_weight": [[1]]},
     "missing k_proj_weight (or give the packed in_proj_weight)", "k_proj_weight"),
    ({"heads": 1, "in_proj_weight": PACKED.tolist(), "in_proj_bias": [1, 2, 3, 4]},
     "in_proj_bias has 4 values, not 3·embed_dim", "in_proj_bias"),
    ({"heads": 1, "in_proj_weight": [1, 2, 3]},
     "in_proj_weight must be a 2-D array, got a 1-D array of shape 3", "in_proj_weight"),
    ({"heads": 1, "in_proj_weight": PACKED.tolist(), "out_proj.bias": [[1.0]]},
     "out_proj.bias must be a 1-D array, got a 2-D array of shape 1×1", "out_proj.bias"),
])
def test_a_state_dict_given_wrong(document, message, key):
    error = error_of(document)
    assert error.message == message
    assert error.key == key


# forward's names, PyTorch's layout and masks (the module's own numbers are in test_mha_goldens.py)
QUERY = np.arange(2 * 3 * E, dtype=np.float64).reshape(2, 3, E) / 10  # (batch 2, seq 3, E)


def test_query_key_value_become_x_and_one_context():
    document = {"heads": 2, "in_proj_weight": PACKED.tolist(), "query": QUERY.tolist()}
    np.testing.assert_array_equal(from_pytorch_names(document)["x"], QUERY)
    assert "context" not in from_pytorch_names({**document, "key": QUERY, "value": QUERY})  # self-attention
    converted = from_pytorch_names({**document, "key": QUERY[:, :2], "value": QUERY[:, :2]})
    np.testing.assert_array_equal(converted["context"], QUERY[:, :2])
    np.testing.assert_array_equal(converted["w_key"], PACKED[E:2 * E].T)
    # keys and values from different tensors: one context [key | value], the weights zero on the other's columns
    converted = from_pytorch_names({**document, "key": QUERY[:, :2], "value": -QUERY[:, :2]})
    np.testing.assert_array_equal(converted["context"], np.concatenate([QUERY[:, :2], -QUERY[:, :2]], axis=-1))
    np.testing.assert_array_equal(converted["context"] @ converted["w_key"], QUERY[:, :2] @ PACKED[E:2 * E].T)
    np.testing.assert_array_equal(converted["context"] @ converted["w_value"], -QUERY[:, :2] @ PACKED[2 * E:].T)


def test_batch_first_passes_through_and_is_inferred_from_the_shapes():
    """The inputs keep the document's layout (problem.py makes them batch-first); batch_first is
    kept, or inferred when the shapes tell it (a key of another length, a key_padding_mask)."""
    document = {"heads": 2, "in_proj_weight": PACKED.tolist(), "batch_first": False,
                "query": QUERY.transpose(1, 0, 2).tolist(), "key": QUERY[:, :2].transpose(1, 0, 2)}
    converted = from_pytorch_names(document)
    np.testing.assert_array_equal(converted["x"], QUERY.transpose(1, 0, 2))
    np.testing.assert_array_equal(converted["context"], QUERY[:, :2].transpose(1, 0, 2))
    assert converted["batch_first"] is False
    assert from_pytorch_names({**document, "batch_first": np.array(False)})["batch_first"] is False  # from an NPZ
    untold = {key: value for key, value in document.items() if key != "batch_first"}
    assert from_pytorch_names(untold)["batch_first"] is False  # key (2, 2, E) shares axis 1 with query (3, 2, E)
    alone = {key: value for key, value in untold.items() if key != "key"}
    assert "batch_first" not in from_pytorch_names(alone)
    padded = from_pytorch_names({**alone, "key_padding_mask": np.zeros((2, 3), dtype=bool)})  # (batch 2, S 3)
    assert padded["batch_first"] is False


def test_masks_in_pytorch_meaning():
    document = {"heads": 2, "in_proj_weight": PACKED.tolist(), "query": QUERY.tolist()}
    blocked = [[False, True, True], [False, False, True], [False, False, False]]
    np.testing.assert_array_equal(from_pytorch_names({**document, "attn_mask": blocked})["mask"], ~np.array(blocked))
    # (batch·heads, L, S): batch b's head h is row b·heads + h
    per_head = np.arange(4 * 3 * 3).reshape(4, 3, 3) % 2 == 0
    np.testing.assert_array_equal(from_pytorch_names({**document, "attn_mask": per_head})["mask"],
                                  ~per_head.reshape(2, 2, 3, 3))
    converted = from_pytorch_names({**document, "attn_mask": per_head.tolist()})
    np.testing.assert_array_equal(converted["mask"], ~per_head.reshape(2, 2, 3, 3))
    added = [[0.0, None, 1.5]] * 3
    assert from_pytorch_names({**document, "attn_mask": added})["bias"] == added
    regrouped = from_pytorch_names({**document, "attn_mask": [added] * 4})["bias"]
    assert np.shape(regrouped) == (2, 2, 3, 3)
    padded = [[False, False, True], [False, True, True]]
    np.testing.assert_array_equal(from_pytorch_names({**document, "key_padding_mask": padded})["padding"],
                                  [[True, True, False], [True, False, False]])


@pytest.mark.parametrize(("change", "message", "key"), [
    ({"x": [[1.0] * E]},
     "query and x are both given: query is PyTorch's name for what attncli calls x; give one", "query"),
    ({"attn_mask": [[True]], "mask": "causal"},
     "attn_mask and mask are both given: attn_mask is PyTorch's name for what attncli calls mask/bias; give one",
     "attn_mask"),
    ({"batch_first": "no"},
     "batch_first is the string 'no'; it is true (inputs (batch, seq, E)) or false (PyTorch's default: "
     "(seq, batch, E))", "batch_first"),
    ({"key": QUERY, "value": QUERY[:, :2]},
     "key has shape 2×3×4 but value 2×2×4: nn.MultiheadAttention needs one value per key", None),
    ({"key": QUERY, "value": QUERY[..., :2]}, "value has 2 columns but the value weights take 4 "
     "(v_proj_weight's columns)", None),
    ({"attn_mask": np.zeros((3, 3, 3), dtype=bool)},
     "attn_mask has 3 (L, S) matrices; a 3-D attn_mask holds batch·heads of them, and there are 2 heads", None),
    ({"attn_mask": [True, False]},
     "attn_mask has shape 2; nn.MultiheadAttention takes (L, S) or (batch·heads, L, S)", None),
    ({"key_padding_mask": [[[0.0, 0.5, 0.0]]]},
     "key_padding_mask has shape 1×1×3; nn.MultiheadAttention takes (batch, S), or (S) unbatched", None),
    ({"key_padding_mask": [[0.0, "x", 0.0]]},
     "key_padding_mask[0][1] is the string 'x'; each value is a finite number or −∞ (null or \"-inf\" in JSON, "
     "-inf in NPY)", "key_padding_mask"),
    ({"key_padding_mask": [[0.0, 0.5]], "attn_mask": [[0.0, 0.0, 0.0]] * 3},
     "key_padding_mask has 2 keys but attn_mask 3", None),
])
def test_forward_inputs_given_wrong(change, message, key):
    error = error_of({"heads": 2, "in_proj_weight": PACKED.tolist(), "query": QUERY, **change})
    assert error.message == message
    if key:
        assert error.key == key


def test_key_without_query():
    error = error_of({"heads": 2, "in_proj_weight": PACKED.tolist(), "key": QUERY})
    assert error.message == "key and value are given without query (forward's first input, attncli's x)"
