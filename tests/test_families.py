"""families.py: one attention layer of a real model's checkpoint as a problem document (names,
storage and configuration of each family). The numbers a whole layer gives are checked against
the models' own code in the golden tests; here, what is read from where."""

from __future__ import annotations

import math

import numpy as np
import pytest

from attncli.errors import ProblemError
from attncli.families import attention_layers, family_of, layer_document, rope_inv_freq
from attncli.pipeline import attention
from attncli.problem import problem_from_document


class Tensors:
    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    def read(self, name: str) -> np.ndarray:
        return self.arrays[name]


RNG = np.random.default_rng(7)


def llama_like(prefix="model.", layers=2, biases=False, qk_norm=False, sinks=False):
    hidden, heads, kv_heads, head_dim = 8, 4, 2, 2
    arrays = {}
    for layer in range(layers):
        at = f"{prefix}layers.{layer}.self_attn."
        arrays |= {at + "q_proj.weight": RNG.normal(size=(heads * head_dim, hidden)),
                   at + "k_proj.weight": RNG.normal(size=(kv_heads * head_dim, hidden)),
                   at + "v_proj.weight": RNG.normal(size=(kv_heads * head_dim, hidden)),
                   at + "o_proj.weight": RNG.normal(size=(hidden, heads * head_dim)),
                   f"{prefix}layers.{layer}.mlp.up_proj.weight": RNG.normal(size=(4, hidden))}
        if biases:
            arrays |= {at + f"{letter}_proj.bias": RNG.normal(size=arrays[at + f"{letter}_proj.weight"].shape[0])
                       for letter in "qkv"}
        if qk_norm:
            arrays |= {at + "q_norm.weight": RNG.normal(size=head_dim), at + "k_norm.weight": RNG.normal(size=head_dim)}
        if sinks:
            arrays[at + "sinks"] = RNG.normal(size=heads)
    config = {"model_type": "llama", "hidden_size": hidden, "num_attention_heads": heads,
              "num_key_value_heads": kv_heads, "rope_theta": 500.0}
    return config, Tensors(arrays)


def test_a_llama_layer_reads_its_linear_layers_transposed_with_grouped_heads_and_rope():
    config, tensors = llama_like()
    document = layer_document(config, tensors, 1)
    at = "model.layers.1.self_attn."
    np.testing.assert_array_equal(document["w_query"], tensors.read(at + "q_proj.weight").T)
    np.testing.assert_array_equal(document["w_out"], tensors.read(at + "o_proj.weight").T)
    assert (document["heads"], document["kv_heads"], document["mask"], document["scale"]) == (4, 2, "causal", "sqrt")
    assert document["rope"]["style"] == "neox" and document["rope"]["rotary_dim"] == 2
    np.testing.assert_array_equal(document["rope"]["inv_freq"], [1.0])
    assert "b_query" not in document and "window" not in document and "sinks" not in document
    trace = attention(problem_from_document({**document, "x": RNG.normal(size=(5, 8)).tolist()}))
    assert trace.steps["k"].array.shape == (2, 5, 2) and trace.steps["output"].array.shape == (5, 8)


def test_the_extras_of_qwen_gemma_and_gpt_oss_come_from_their_tensors_and_config():
    config, tensors = llama_like(prefix="", biases=True, qk_norm=True, sinks=True)
    config |= {"model_type": "gpt_oss", "sliding_window": 3, "layer_types": ["sliding_attention", "full_attention"],
               "query_pre_attn_scalar": 16, "attn_logit_softcapping": 50.0, "rms_norm_eps": 1e-5}
    sliding, full = layer_document(config, tensors, 0), layer_document(config, tensors, 1)
    assert sliding["window"] == 3 and "window" not in full
    assert sliding["scale"] == 0.25 and sliding["softcap"] == 50.0
    np.testing.assert_array_equal(sliding["b_key"], tensors.read("layers.0.self_attn.k_proj.bias"))
    np.testing.assert_array_equal(sliding["sinks"], tensors.read("layers.0.self_attn.sinks"))
    assert sliding["qk_norm"]["eps"] == 1e-5
    np.testing.assert_array_equal(sliding["qk_norm"]["k_weight"], tensors.read("layers.0.self_attn.k_norm.weight"))
    problem_from_document({**sliding, "x": RNG.normal(size=(4, 8)).tolist()})  # a valid document


def test_mistral_slides_every_layer_and_qwen2_only_when_asked():
    config, tensors = llama_like()
    assert layer_document({**config, "model_type": "mistral", "sliding_window": 4}, tensors, 1)["window"] == 4
    qwen2 = {**config, "model_type": "qwen2", "sliding_window": 4, "use_sliding_window": False}
    assert "window" not in layer_document(qwen2, tensors, 1)


def test_gpt2_unpacks_its_conv1d_c_attn_stored_in_out():
    embed, heads = 6, 2
    packed, packed_bias = RNG.normal(size=(embed, 3 * embed)), RNG.normal(size=3 * embed)
    tensors = Tensors({"transformer.h.0.attn.c_attn.weight": packed, "transformer.h.0.attn.c_attn.bias": packed_bias,
                       "transformer.h.0.attn.c_proj.weight": RNG.normal(size=(embed, embed)),
                       "transformer.h.0.attn.c_proj.bias": RNG.normal(size=embed),
                       "transformer.h.0.attn.bias": np.tril(np.ones((1, 1, 8, 8)))})
    document = layer_document({"model_type": "gpt2", "n_embd": embed, "n_head": heads}, tensors, 0)
    np.testing.assert_array_equal(document["w_key"], packed[:, embed:2 * embed])
    np.testing.assert_array_equal(document["b_value"], packed_bias[2 * embed:])
    np.testing.assert_array_equal(document["w_out"], tensors.read("transformer.h.0.attn.c_proj.weight"))
    assert document["scale"] == 3 ** -0.5 and document["mask"] == "causal"
    scaled = layer_document({"model_type": "gpt2", "n_embd": embed, "n_head": heads,
                             "scale_attn_by_inverse_layer_idx": True}, tensors, 0)
    assert scaled["scale"] == 3 ** -0.5  # layer 0: divided by 1


def test_bert_reads_query_key_value_and_the_output_dense_layer_unmasked():
    hidden = 4
    arrays = {}
    for part in ("self.query", "self.key", "self.value", "output.dense"):
        arrays[f"bert.encoder.layer.0.attention.{part}.weight"] = RNG.normal(size=(hidden, hidden))
        arrays[f"bert.encoder.layer.0.attention.{part}.bias"] = RNG.normal(size=hidden)
    tensors = Tensors(arrays)
    document = layer_document({"model_type": "bert", "num_attention_heads": 2}, tensors, 0)
    np.testing.assert_array_equal(document["w_value"], arrays["bert.encoder.layer.0.attention.self.value.weight"].T)
    np.testing.assert_array_equal(document["b_out"], arrays["bert.encoder.layer.0.attention.output.dense.bias"])
    assert "mask" not in document and document["heads"] == 2


def test_layers_are_found_under_any_prefix_and_by_names_without_a_config():
    _, tensors = llama_like(prefix="encoder.stack.", layers=3)
    family = family_of(None, tensors.names)
    assert family.name == "llama"
    assert attention_layers(family, tensors.names) == {n: f"encoder.stack.layers.{n}.self_attn." for n in range(3)}


def test_rope_scaling_linear_and_llama3_as_hugging_face_computes_them():
    _, default, factor = rope_inv_freq({"rope_theta": 10000.0}, 8)
    assert factor == 1.0
    np.testing.assert_allclose(default, [1.0, 0.1, 0.01, 0.001], rtol=1e-15)
    _, linear, _ = rope_inv_freq({"rope_theta": 10000.0, "rope_scaling": {"rope_type": "linear", "factor": 4.0}}, 8)
    np.testing.assert_allclose(linear, default / 4, rtol=1e-15)
    llama3 = {"rope_theta": 10000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}
    _, scaled, _ = rope_inv_freq(llama3, 8)
    # wavelengths 2π/f: 6.3 (< 64/4: kept), 62.8 (between 16 and 64: smoothed), 628 and 6283 (> 64: ÷ 8)
    smooth = (64 / (2 * math.pi / 0.1) - 1) / 3
    np.testing.assert_allclose(scaled, [1.0, (1 - smooth) * 0.1 / 8 + smooth * 0.1, 0.01 / 8, 0.001 / 8], rtol=1e-15)
    rotary, partial, _ = rope_inv_freq({"partial_rotary_factor": 0.5}, 8)
    assert rotary == 4 and len(partial) == 2


LLAMA = {"model_type": "llama", "hidden_size": 8, "num_attention_heads": 4}


@pytest.mark.parametrize(("config", "layer", "message"), [
    ({**LLAMA, "rope_scaling": {"rope_type": "dynamic"}}, 0,
     "config.json's rope_type 'dynamic' is not one attncli computes (default, linear, llama3, yarn)"),
    (LLAMA, 5, "there is no attention layer 5 (layers 0–1)"),
    ({"model_type": "llama", "hidden_size": 8}, 0,
     "config.json has no 'num_attention_heads', which a llama layer needs"),
    ({"model_type": "t5"}, 0, "no attention layers attncli knows in this checkpoint (model_type 't5'); it holds "
                              "model.layers.0.self_attn.q_proj.weight, model.layers.0.self_attn.k_proj.weight, "
                              "model.layers.0.self_attn.v_proj.weight, model.layers.0.self_attn.o_proj.weight, "
                              "model.layers.0.mlp.up_proj.weight, model.layers.1.self_attn.q_proj.weight "
                              "… (10 tensors)"),
])
def test_what_a_checkpoint_lacks_is_named(config, layer, message):
    _, tensors = llama_like()
    with pytest.raises(ProblemError) as caught:
        layer_document(config, tensors, layer)
    assert caught.value.message == message
