"""A layer of a real model through the command line: `compute MODEL --layer N --x HIDDEN` gives what
the model's own code computes (tests/data/models/goldens.json), `layers MODEL` says what attncli
will compute for each layer, and a model given wrongly is one Error line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES
from test_cli import assert_one_line_error, run

MODELS = Path(__file__).resolve().parent / "data" / "models"
CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES = json.loads((MODELS / "goldens.json").read_text())["cases"]


def hidden(tmp_path, case, name="hidden.json"):
    path = tmp_path / name
    path.write_text(json.dumps(case["input"]))
    return path


def case_named(name):
    return next(case for case in CASES if case["name"] == name)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_compute_a_layer_of_a_model_gives_what_its_own_code_computes(tmp_path, case):
    padding = []
    if case.get("attention_mask") is not None:
        (tmp_path / "mask.json").write_text(json.dumps(case["attention_mask"]))
        padding = ["--padding", tmp_path / "mask.json"]
    result = run("compute", MODELS / case["model"], "--layer", case["layer"], "--x", hidden(tmp_path, case),
                 *padding, "--step", "output", "--format", "json")
    assert result.exit_code == 0, result.stderr
    output = np.asarray(json.loads(result.stdout)["output"])
    np.testing.assert_allclose(output, np.asarray(case["output"]), rtol=1e-12, atol=1e-13)


def test_check_and_explain_take_a_model_too(tmp_path):
    case = case_named("mistral_layer1")
    x = hidden(tmp_path, case)
    (tmp_path / "output.json").write_text(json.dumps(case["output"]))
    result = run("check", MODELS / "mistral", "--layer", 1, "--x", x, "--expected", tmp_path / "output.json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("✓ output agrees with attncli")
    result = run("explain", MODELS / "mistral", "--layer", 1, "--x", x, "--query", 5)
    assert result.exit_code == 0, result.stderr
    assert "Query 5" in result.stdout and "RoPE" in result.stdout


def test_options_override_the_config(tmp_path):
    x = hidden(tmp_path, case_named("mistral_layer1"))
    base = ("compute", MODELS / "mistral", "--layer", 1, "--x", x, "--step", "output", "-f", "json")
    config = json.loads(run(*base).stdout)
    assert config["meta"]["window"] == 3
    widened = json.loads(run(*base, "--window", 100).stdout)
    assert widened["meta"]["window"] == 100 and widened["output"] != config["output"]
    assert json.loads(run(*base, "--dtype", "float32").stdout)["meta"]["dtype"] == "float32"


def layers_json(model):
    result = run("layers", MODELS / model, "--format", "json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_layers_of_llama():
    listing = layers_json("llama")
    assert listing["model"] == str(MODELS / "llama")
    assert [row["layer"] for row in listing["layers"]] == [0, 1]
    for row in listing["layers"]:
        assert row == {
            "layer": row["layer"], "family": "llama", "heads": 4, "kv_heads": 2, "head_dim": 8, "scale": 8 ** -0.5,
            "rope": {"style": "neox", "rotary_dim": 8, "type": "default", "theta": 10000.0, "attention_factor": 1.0},
            "window": None, "softcap": None, "sinks": False, "qk_norm": None, "biases": [], "mask": "causal",
        }
    table = run("layers", MODELS / "llama")
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0] == f"{MODELS / 'llama'}: 2 attention layers"
    assert "kv_heads" in lines[2] and "neox, default, θ 10000" in lines[4]
    assert [line.split("│")[1:6] for line in lines[4:6]] == [
        ["     0 ", " llama  ", "     4 ", "        2 ", "        8 "],
        ["     1 ", " llama  ", "     4 ", "        2 ", "        8 "]]


def test_layers_of_gemma2_window_on_layer_0_only():
    rows = layers_json("gemma2")["layers"]
    assert [row["window"] for row in rows] == [3, None]
    assert {row["softcap"] for row in rows} == {2.0}
    assert {row["scale"] for row in rows} == {0.25}  # query_pre_attn_scalar 16
    assert {row["kv_heads"] for row in rows} == {2}


def test_layers_of_the_other_families():
    oss = layers_json("gpt_oss")["layers"]
    assert [row["window"] for row in oss] == [3, None] and all(row["sinks"] for row in oss)
    assert oss[0]["biases"] == ["b_query", "b_key", "b_value", "b_out"]
    assert oss[0]["rope"]["type"] == "yarn" and oss[0]["rope"]["attention_factor"] > 1
    assert layers_json("qwen3")["layers"][0]["qk_norm"] == {"eps": 1e-06}
    assert layers_json("qwen2")["layers"][0]["biases"] == ["b_query", "b_key", "b_value"]
    assert layers_json("bert")["layers"][0]["mask"] is None and layers_json("gpt2")["layers"][0]["rope"] is None
    assert layers_json("llama_sharded")["layers"] == layers_json("llama")["layers"]


def test_a_model_given_wrongly_is_one_error_line(tmp_path):
    llama = MODELS / "llama"
    x = hidden(tmp_path, case_named("llama_layer1"))
    assert_one_line_error(run("compute", llama, "--x", x),
                          f"{llama}: give --layer N: the model has attention layers 0–1")
    assert_one_line_error(run("compute", llama, "--layer", 2, "--x", x),
                          f"{llama}: --layer is 2; the model has attention layers 0–1")
    assert_one_line_error(run("explain", llama, "--layer", 0, "-q", 0),
                          f"{llama}: give --x HIDDEN: the hidden states entering layer 0's attention, (seq_len, "
                          "d_model) or (batch, seq_len, d_model)")
    pickle = tmp_path / "pytorch_model.bin"
    pickle.write_bytes(b"\x80\x04\x95")
    for command in (("compute", pickle, "--layer", 0, "--x", x), ("layers", pickle)):
        assert_one_line_error(run(*command), f"{pickle}: is a PyTorch pickle; attncli never unpickles: save it as "
                              "safetensors with model.save_pretrained(folder, safe_serialization=True) (or a "
                              "state_dict with safetensors.torch.save_file(state_dict, 'model.safetensors'))")
    damaged = CORPUS / "overlapping.safetensors"
    for command in (("compute", damaged, "--layer", 0, "--x", x), ("layers", damaged)):
        assert_one_line_error(run(*command), f"{damaged}: tensors 'a' and 'b' overlap (bytes 0–32 and 16–80)")
    unknown = tmp_path / "mamba"
    unknown.mkdir()
    (unknown / "model.safetensors").write_bytes((llama / "model.safetensors").read_bytes())
    (unknown / "config.json").write_text('{"model_type": "mamba"}')
    result = run("layers", unknown)
    assert_one_line_error(result, result.stderr[len("Error: "):-1])
    assert result.stderr.startswith(f"Error: {unknown}: no attention layers attncli knows in this checkpoint "
                                    "(model_type 'mamba'); it holds ")
    assert_one_line_error(run("compute", CORPUS / "good.json", "--layer", 0),
                          f"{CORPUS / 'good.json'}: is not a model (a .safetensors file, or a folder with "
                          "config.json and model.safetensors or its shards)")
    assert_one_line_error(run("layers", tmp_path / "none"), f"{tmp_path / 'none'}: no such file")


def test_x_of_the_wrong_width_names_the_model_and_the_widths(tmp_path):
    x = tmp_path / "x.json"
    x.write_text("[[1, 2, 3]]")
    result = run("compute", MODELS / "llama", "--layer", 0, "--x", x)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "32" in result.stderr and "3 columns" in result.stderr


def test_the_readme_sample_is_the_first_tokens_of_the_llama_golden():
    """samples/llama_hidden.json: the first three tokens of the llama case's first item; causal, so
    its output is the golden output's first three rows."""
    case, sample = case_named("llama_layer1"), SAMPLES / "llama_hidden.json"
    assert json.loads(sample.read_text()) == case["input"][0][:3]
    result = run("compute", MODELS / "llama", "--layer", 1, "--x", sample, "--step", "output", "-f", "json")
    np.testing.assert_allclose(json.loads(result.stdout)["output"], case["output"][0][:3], rtol=1e-12, atol=1e-13)


def test_a_models_file_reads_the_config_beside_it_and_a_bare_file_says_what_it_lacks(tmp_path):
    """model.safetensors in its folder is that model (its config.json beside it); alone, a file holds no
    settings, and the error says so and what to give."""
    case = case_named("gpt2_layer1")
    folder = MODELS / case["model"]
    file = folder / "model.safetensors"
    arguments = ["--layer", case["layer"], "--x", hidden(tmp_path, case), "--step", "output", "--format", "json"]
    from_file = run("compute", file, *arguments)
    assert from_file.exit_code == 0, from_file.stderr
    np.testing.assert_allclose(json.loads(from_file.stdout)["output"], case["output"], rtol=1e-12, atol=1e-13)
    layers = json.loads(run("layers", file, "--format", "json").stdout)
    assert layers["layers"] == json.loads(run("layers", folder, "--format", "json").stdout)["layers"]
    bare = tmp_path / "bare" / "model.safetensors"
    bare.parent.mkdir()
    bare.write_bytes(file.read_bytes())
    result = run("compute", bare, *arguments)
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {bare}: has no config.json beside it, and a ")
    assert result.stderr.endswith("give the model's folder, or put its config.json beside the file\n")
