"""One attention layer of a real model, read from its safetensors files and config.json, gives what
the model's own code computes (tests/data/models/goldens.json, made by make_model_goldens.py with
transformers 5.24 in float64: GPT-2, BERT, Llama with default/linear/llama3/yarn RoPE, sharded and
BF16 copies, Mistral, Qwen2, Qwen3, Gemma 2, gpt-oss)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attncli.families import layer_document
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.safetensors import Checkpoint

MODELS = Path(__file__).resolve().parent / "data" / "models"
CASES = json.loads((MODELS / "goldens.json").read_text())["cases"]


def layer_output(case: dict) -> np.ndarray:
    checkpoint = Checkpoint(MODELS / case["model"])
    document = layer_document(checkpoint.config, checkpoint, case["layer"])
    document["x"] = case["input"]
    if case.get("attention_mask") is not None:
        document["padding"] = case["attention_mask"]
    if case.get("position_ids") is not None:
        positions = np.asarray(case["position_ids"])
        positions = positions[0] if positions.ndim == 2 else positions  # the same for every batch item here
        document["positions"] = {"query": positions.tolist(), "key": positions.tolist()}
    return attention(problem_from_document(document)).steps["output"].array


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_a_layer_of_a_real_model_gives_what_its_own_code_computes(case):
    output = layer_output(case)
    expected = np.asarray(case["output"])
    assert output.shape == expected.shape
    np.testing.assert_allclose(output, expected, rtol=1e-12, atol=1e-13)


def test_every_family_the_issue_names_is_covered():
    families = {case["family"] for case in CASES}
    assert {"gpt2", "bert", "llama", "mistral", "qwen2", "qwen3", "gemma2", "gpt_oss"} <= families
    models = {case["model"] for case in CASES}
    assert {"llama_sharded", "llama_bf16", "llama_rope_llama3", "llama_rope_linear", "llama_rope_yarn"} <= models
