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
    assert uses_pytorch_names({"bias_k": [1]})
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
    assert converted["x"] == [[1.0] * E] and converted["heads"] == 2


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
    ({"heads": 1, "in_proj_weight": PACKED.tolist(), "bias_k": [1]},
     "bias_k (nn.MultiheadAttention's add_bias_kv) is not supported", "bias_k"),
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
