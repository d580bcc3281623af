"""attncli.generate: random, valid problem documents, with each variant of modern attention."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from attncli.errors import ProblemError
from attncli.generate import random_document
from attncli.pipeline import attention
from attncli.problem import problem_from_document


def digest(document) -> str:
    return hashlib.sha256(json.dumps(document).encode()).hexdigest()[:16]


def test_without_the_variants_the_documents_are_those_made_before_them():
    # the digests of what fd707d3 (before the variants' arguments) made for the same arguments and seeds
    assert digest(random_document(3, 4, seed=1)) == "7679e26ce87e80bc"
    assert digest(random_document(4, 6, heads=2, batch=2, context_len=3, out_proj=True, bias=True, causal=True,
                                  seed=9)) == "799b87961e44d9f1"


@pytest.mark.parametrize("options, keys", [
    ({"kv_heads": 2}, {"kv_heads": 2}),
    ({"kv_heads": 4}, {"kv_heads": 4}),
    ({"rope": "neox"}, {"rope": "neox"}),
    ({"window": 3}, {"window": 3}),
    ({"softcap": 30.0}, {"softcap": 30.0}),
    ({"alibi": True}, {"alibi": True}),
    ({"causal_lower_right": True}, {"mask": "causal_lower_right"}),
])
def test_each_variant_is_its_documents_key(options, keys):
    document = random_document(5, 8, heads=4, seed=2, **options)
    assert {key: document[key] for key in keys} == keys
    problem_from_document(document)


def test_grouped_query_weights_are_kv_heads_wide():
    document = random_document(3, 8, heads=4, kv_heads=1, bias=True, seed=4)
    shapes = {name: np.shape(document[name]) for name in ("w_query", "w_key", "w_value", "b_key", "b_value")}
    assert shapes == {"w_query": (8, 8), "w_key": (8, 2), "w_value": (8, 2), "b_key": (2,), "b_value": (2,)}
    assert problem_from_document(document).kv_heads == 1


def test_sinks_qk_norm_and_padding_are_drawn():
    document = random_document(6, 8, heads=2, batch=4, context_len=5, sinks=True, qk_norm=True, padding=True,
                               seed=5)
    assert np.shape(document["sinks"]) == (2,)
    norm = document["qk_norm"]
    assert set(norm) == {"q_weight", "k_weight", "eps"} and np.shape(norm["q_weight"]) == (4,)
    assert 0.5 < min(norm["q_weight"] + norm["k_weight"]) and max(norm["q_weight"] + norm["k_weight"]) < 1.5
    # padding at the end of the keys: the first item unpadded, every item at least one real key
    padding = np.array(document["padding"])
    assert padding.shape == (4, 5) and padding[0].all() and padding[:, 0].all()
    assert all(list(row) == sorted(row, reverse=True) for row in padding)
    problem = problem_from_document(document)
    assert problem.padding.shape == (4, 5) and problem.sinks is not None


@pytest.mark.parametrize("k_len", [1, 2, 5, 9])
def test_unbatched_padding_pads_up_to_half_the_keys(k_len):
    for seed in range(20):
        padding = random_document(k_len, 2, padding=True, seed=seed)["padding"]
        real = sum(padding)
        assert padding == [1] * real + [0] * (k_len - real)
        assert real == k_len if k_len == 1 else k_len - k_len // 2 <= real < k_len


def test_a_document_with_every_variant_validates_and_computes():
    document = random_document(6, 8, heads=4, batch=2, kv_heads=2, rope="gptj", window=3, softcap=20.0, alibi=True,
                               sinks=True, qk_norm=True, padding=True, causal_lower_right=True, out_proj=True,
                               bias=True, seed=6)
    trace = attention(problem_from_document(document))
    assert {"q_normed", "q_rotated", "capped", "biased"} <= set(trace.steps)
    assert np.isfinite(trace.steps["output"].array).all()


@pytest.mark.parametrize("options, message", [
    ({"kv_heads": 3}, "kv_heads is 3, which does not divide heads 4 (kv_heads that would: 1, 2, 4)"),
    ({"kv_heads": 0}, "kv_heads is 0; it must be at least 1"),
    ({"window": 0}, "window is 0; it must be at least 1"),
    ({"softcap": 0.0}, "softcap is 0; it must be a positive finite number"),
    ({"causal": True, "causal_lower_right": True}, "causal and causal_lower_right are two masks: give one"),
])
def test_variants_are_checked_as_the_documents_keys_are(options, message):
    with pytest.raises(ProblemError) as caught:
        random_document(5, 8, heads=4, **options)
    assert str(caught.value) == message


def test_a_rotation_needs_an_even_head_dim():
    with pytest.raises(ProblemError) as caught:
        random_document(5, 6, heads=2, rope="neox")
    assert "rope rotates pairs of dims but head_dim is 3, odd" in str(caught.value)
