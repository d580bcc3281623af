"""The command line, through typer.testing.CliRunner and, where a real process matters, a subprocess."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLES
from typer.testing import CliRunner

from attncli.cli import app

runner = CliRunner()


def run(*args, stdin=None):
    return runner.invoke(app, [str(arg) for arg in args], input=stdin, prog_name="attncli")


def assert_one_line_error(result, message):
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr == f"Error: {message}\n"
    assert "Traceback" not in result.stderr


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


# --- demo -----------------------------------------------------------------------------------------

def test_demo_walks_through_five_steps_with_the_published_first_row():
    result = run("demo")
    assert result.exit_code == 0, result.output
    out = result.stdout
    headings = ["1. Inputs", "2. Linear maps", "3. Scores", "4. Softmax", "5. Weighted sum"]
    assert [out.index(h) for h in headings] == sorted(out.index(h) for h in headings)
    first_output_row = out[out.index("5. Weighted sum"):].splitlines()
    assert any(line.split("│")[1:5] == [" 0 ", " 1.9366 ", " 6.6831 ", " 1.5951 "]
               for line in (row.replace("         0", " 0") for row in first_output_row))
    assert "0.0640, 0.1286, 0.1910 instead of 1.9366, 6.6831, 1.5951" in " ".join(out.split())
    assert result.stderr == ""


def test_demo_json_is_the_unscaled_classic_trace(seed_example):
    result = run("demo", "--format", "json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    for name in ("q", "k", "v", "scores", "softmax", "output"):
        assert document[name] == seed_example["expected"][name]
    assert document["meta"]["scale"] == {"rule": "none", "factor": 1.0}


# --- compute: results -----------------------------------------------------------------------------

def test_compute_json_has_every_step_at_full_precision_and_meta(seed_example):
    result = run("compute", SAMPLES / "classic.json", "--format", "json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document) == ["q", "k", "v", "scores", "softmax", "output", "meta"]
    assert document["output"] == seed_example["expected"]["output"]
    assert document["meta"] == {
        "heads": 1, "head_dim": 3, "head_dim_v": 3, "batched": False, "cross_attention": False,
        "scale": {"rule": "none", "factor": 1.0}, "mask": None, "dtype": "float64",
        "steps": {
            "q": {"shape": [3, 3], "axes": ["q_len", "head_dim"], "formula": "Q = x·W_Q"},
            "k": {"shape": [3, 3], "axes": ["k_len", "head_dim"], "formula": "K = x·W_K"},
            "v": {"shape": [3, 3], "axes": ["k_len", "head_dim_v"], "formula": "V = x·W_V"},
            "scores": {"shape": [3, 3], "axes": ["q_len", "k_len"], "formula": "scores = Q·Kᵀ"},
            "softmax": {"shape": [3, 3], "axes": ["q_len", "k_len"], "formula": "softmax = softmax(scores) over keys"},
            "output": {"shape": [3, 3], "axes": ["q_len", "d_out"], "formula": "output = softmax·V"},
        },
    }


def test_compute_reads_standard_input(seed_example):
    problem = json.dumps(seed_example["problem"])
    result = run("compute", "-", "--format", "json", "--step", "output", stdin=problem)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert list(document) == ["output", "meta"]
    np.testing.assert_allclose(document["output"], seed_example["expected_scaled"]["output"], rtol=1e-14)


def test_options_override_the_document(seed_example):
    problem = json.dumps(seed_example["problem"])
    result = run("compute", "-", "-f", "json", "--scale", "none", "--step", "softmax", stdin=problem)
    assert json.loads(result.stdout)["softmax"] == seed_example["expected"]["softmax"]
    result = run("compute", SAMPLES / "multihead_causal.json", "-f", "json", "--heads", "1", "--scale", "2")
    meta = json.loads(result.stdout)["meta"]
    assert (meta["heads"], meta["head_dim"], meta["scale"]) == (1, 4, {"rule": "number", "factor": 2.0})
    result = run("compute", SAMPLES / "classic.json", "-f", "json", "--causal", "--step", "softmax")
    weights = json.loads(result.stdout)["softmax"]
    assert weights[0] == [1.0, 0.0, 0.0] and weights[1][2] == 0.0


def test_masked_logits_are_null_and_the_json_is_strict():
    result = run("compute", SAMPLES / "multihead_causal.json", "--format", "json")
    assert result.exit_code == 0
    assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    document = json.loads(result.stdout, parse_constant=lambda name: pytest.fail(f"non-JSON literal {name}"))
    logits = document["logits"]  # (heads, q_len, k_len)
    assert logits[0][0][1:] == [None, None, None]
    assert all(isinstance(value, float) for value in logits[1][3])
    assert document["meta"]["mask"] == "causal"
    assert document["meta"]["steps"]["logits"]["axes"] == ["heads", "q_len", "k_len"]
    assert math.isclose(sum(document["softmax"][1][2]), 1.0, rel_tol=1e-15)


def test_fully_masked_row_warns_on_stderr_and_keeps_stdout_clean(tmp_path):
    problem = {"x": [[1.0], [2.0]], "w_query": [[1.0]], "w_key": [[1.0]], "w_value": [[1.0]],
               "w_out": [[2.0]], "b_out": [0.5], "mask": [[1, 1], [0, 0]]}
    path = write(tmp_path, "p.json", json.dumps(problem))
    result = run("compute", path, "--format", "json", "--step", "output")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["output"][1] == [0.5]
    assert result.stderr == (f"Warning: {path}: every key is masked for query 1: "
                             "its weights are 0 and its per-head output is 0\n")


def test_table_view_titles_each_step_with_formula_and_shape():
    result = run("compute", SAMPLES / "classic.json")
    assert result.exit_code == 0
    for title in ("Q = x·W_Q   3×3", "scores = Q·Kᵀ   3×3", "softmax = softmax(scores) over keys   3×3",
                  "output = softmax·V   3×3"):
        assert title in result.stdout
    assert "1.9366" in result.stdout and "6.034e-06" in result.stdout


def test_table_view_names_batch_and_head_and_respects_precision():
    result = run("compute", SAMPLES / "cross_attention.json", "--step", "softmax", "--precision", "2")
    assert result.exit_code == 0
    titles = [line for line in result.stdout.splitlines() if line.startswith("softmax")]
    assert titles == [f"softmax = softmax(logits) over keys   3×5   (batch {b})" for b in (0, 1)]
    assert "│ 0.39 │" in result.stdout and "0.0000" not in result.stdout
    assert "│ 0 A       │ 0.35 │  0.34 │    0.32 │     · │     · │" in result.stdout  # · masked, under its token


def test_wide_tables_are_not_squeezed_when_piped(tmp_path):
    rng = np.random.default_rng(5)
    problem = {"x": rng.normal(size=(3, 14)).tolist(), "w_query": rng.normal(size=(14, 14)).tolist(),
               "w_key": rng.normal(size=(14, 14)).tolist(), "w_value": rng.normal(size=(14, 14)).tolist()}
    path = write(tmp_path, "wide.json", json.dumps(problem))
    result = run("compute", path, "--step", "q")
    assert result.exit_code == 0
    assert "…" not in result.stdout
    q = np.array(problem["x"]) @ np.array(problem["w_query"])
    assert f"{q[2, 13]:.4f}" in result.stdout


PROBLEM_SAMPLES = sorted(path.name for path in SAMPLES.glob("*.json") if "x" in json.loads(path.read_text()))


def test_the_samples_are_there():
    assert PROBLEM_SAMPLES == ["classic.json", "cross_attention.json", "gqa_rope.json", "llama_style.json",
                               "multihead_causal.json", "window_padding.json"]


# the samples of classic attention, which the plain reference computes (the others have their own below)
CLASSIC_SAMPLES = [name for name in PROBLEM_SAMPLES
                   if not {"rope", "window", "padding"} & set(json.loads((SAMPLES / name).read_text()))]


@pytest.mark.parametrize("sample", CLASSIC_SAMPLES)
def test_every_sample_agrees_with_the_plain_reference(sample):
    from test_properties import reference

    document = json.loads((SAMPLES / sample).read_text())
    result = run("compute", SAMPLES / sample, "--format", "json")
    assert result.exit_code == 0, result.output
    output, weights, _ = reference({"heads": 1, "scale": "sqrt", **document})
    computed = json.loads(result.stdout)
    np.testing.assert_allclose(computed["output"], output.reshape(np.shape(computed["output"])), rtol=1e-12)
    np.testing.assert_allclose(computed["softmax"], weights.reshape(np.shape(computed["softmax"])), rtol=1e-12,
                               atol=1e-15)


def rotate_neox(vectors, positions, theta=10000.0):
    """Hugging Face Llama's apply_rotary_pos_emb: x·cos + rotate_half(x)·sin, rotate_half(x) = [-x2, x1]."""
    dim = vectors.shape[-1]
    angles = positions[:, None] * (1.0 / theta ** (np.arange(0, dim, 2) / dim))[None]
    cos, sin = np.cos(np.concatenate([angles, angles], -1)), np.sin(np.concatenate([angles, angles], -1))
    halves = np.concatenate([-vectors[..., dim // 2:], vectors[..., :dim // 2]], -1)
    return vectors * cos + halves * sin


@pytest.mark.parametrize("sample", ["llama_style.json", "gqa_rope.json"])
def test_the_llama_style_samples_are_grouped_query_attention_with_rope_and_a_causal_mask(sample):
    document = json.loads((SAMPLES / sample).read_text())
    result = run("compute", SAMPLES / sample, "--format", "json")
    assert result.exit_code == 0, result.output
    computed = json.loads(result.stdout)
    assert list(computed) == ["q", "k", "v", "q_rotated", "k_rotated", "scores", "logits", "softmax", "concat",
                              "output", "meta"]
    assert computed["meta"]["kv_heads"] == 2 and computed["meta"]["mask"] == "causal"
    assert computed["meta"]["rope"] == {"style": "neox", "theta": 10000.0, "rotary_dim": 2}
    assert computed["meta"]["tokens"] == document["tokens"]
    # written out plainly: each query head h reads key/value head h // 2 (repeat_kv), RoPE at positions 0..L-1
    x, w_q, w_k, w_v, w_o = (np.array(document[name]) for name in ("x", "w_query", "w_key", "w_value", "w_out"))
    length = len(x)
    positions = np.arange(float(length))
    heads = []
    for h in range(4):
        g = h // 2
        q = rotate_neox(x @ w_q[:, 2 * h:2 * h + 2], positions)
        k = rotate_neox(x @ w_k[:, 2 * g:2 * g + 2], positions)
        logits = np.where(np.tri(length, dtype=bool), q @ k.T / np.sqrt(2), -np.inf)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(computed["softmax"][h], weights, rtol=1e-12, atol=1e-15)
        heads.append(weights @ (x @ w_v[:, 2 * g:2 * g + 2]))
    np.testing.assert_allclose(computed["output"], np.concatenate(heads, axis=1) @ w_o, rtol=1e-12)


def test_the_window_padding_sample_hides_keys_outside_the_window_and_the_padding():
    document = json.loads((SAMPLES / "window_padding.json").read_text())
    result = run("compute", SAMPLES / "window_padding.json", "--format", "json")
    assert result.exit_code == 0, result.output
    computed = json.loads(result.stdout)
    assert computed["meta"]["window"] == 3 and computed["meta"]["padding"] is True
    assert computed["meta"]["tokens"] == [["The", "cat", "sat", "on", "mats"], ["A", "dog", "ran", "<pad>", "<pad>"]]
    # written out plainly: query i sees key j when i-3 < j <= i and j is not padding
    x, w_q, w_k, w_v = (np.array(document[name]) for name in ("x", "w_query", "w_key", "w_value"))
    i, j = np.arange(5)[:, None], np.arange(5)[None]
    for b in range(2):
        sees = (j <= i) & (j > i - 3) & np.array(document["padding"][b], bool)[None]
        for h in range(2):
            q, k = x[b] @ w_q[:, 2 * h:2 * h + 2], x[b] @ w_k[:, 2 * h:2 * h + 2]
            logits = np.where(sees, q @ k.T / np.sqrt(2), -np.inf)
            weights = np.exp(logits - logits.max(axis=1, keepdims=True))
            weights /= weights.sum(axis=1, keepdims=True)
            np.testing.assert_allclose(computed["softmax"][b][h], weights, rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(computed["output"][b], np.concatenate(
                [w @ (x[b] @ w_v[:, 2 * n:2 * n + 2]) for n, w in enumerate(np.array(computed["softmax"][b]))],
                axis=1), rtol=1e-12)
    # the padded queries' rows show their tokens; the keys of item 1 are its own
    table = run("compute", SAMPLES / "window_padding.json", "-s", "softmax").stdout
    assert "┃ query╲key ┃      A ┃    dog ┃    ran ┃ <pad> ┃ <pad> ┃" in table
    assert "│ 4 <pad>   │      · │      · │ 1.0000 │     · │     · │" in table


# --- compute, explain, check: the variants' options -----------------------------------------------

def random_problem(*args):
    result = run("random", "--seq-len", 5, "--d-model", 8, "--heads", 4, "--seed", 3, *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def computed(path, *args):
    result = run("compute", path, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_window_of_1_leaves_each_query_only_itself():
    # the softmax is then the identity, and each output row is that token's value row
    document = computed(SAMPLES / "classic.json", "--window", "1")
    assert document["softmax"] == np.eye(3).tolist()
    assert document["output"] == document["v"]
    assert document["meta"]["window"] == 1 and document["meta"]["mask"] is None


@pytest.mark.parametrize("args, keys", [
    (["--kv-heads", "2"], {"kv_heads": 2}),
    (["--kv-heads", "4"], {"kv_heads": 4}),
    (["--rope", "gptj"], {"rope": "gptj"}),
    (["--rope", "NEOX", "--rope-theta", "500"], {"rope": {"style": "neox", "theta": 500}}),
    (["--window", "2"], {"window": 2}),
    (["--softcap", "0.5"], {"softcap": 0.5}),
    (["--alibi"], {"alibi": True}),
    (["--causal-lower-right"], {"mask": "causal_lower_right"}),
    (["--kv-heads", "1", "--rope", "neox", "--window", "3", "--softcap", "2", "--alibi"],
     {"kv_heads": 1, "rope": "neox", "window": 3, "softcap": 2.0, "alibi": True}),
])
def test_each_variant_option_gives_what_the_document_key_gives(tmp_path, args, keys):
    plain = random_problem("--kv-heads", keys["kv_heads"]) if "kv_heads" in keys else random_problem()
    plain.pop("kv_heads", None)  # the option brings it back
    with_keys = write(tmp_path, "keys.json", json.dumps({**plain, **keys}))
    with_options = write(tmp_path, "options.json", json.dumps(plain))
    assert computed(with_options, *args) == computed(with_keys)


def test_the_options_replace_the_documents_keys(tmp_path):
    document = {**random_problem(), "rope": {"style": "neox", "theta": 50}, "window": 1, "softcap": 1.0,
                "alibi": [1.0, 2.0, 3.0, 4.0], "mask": "causal"}
    path = write(tmp_path, "variants.json", json.dumps(document))
    replaced = computed(path, "--rope", "gptj", "--window", "4", "--softcap", "3", "--alibi",
                        "--causal-lower-right")
    expected = computed(write(tmp_path, "expected.json", json.dumps(
        {**document, "rope": {"style": "gptj", "theta": 50}, "window": 4, "softcap": 3, "alibi": True,
         "mask": "causal_lower_right"})))
    assert replaced == expected
    # --rope sets the style: the document's theta is kept
    assert replaced["meta"]["rope"] == {"style": "gptj", "theta": 50.0, "rotary_dim": 2}


def test_causal_lower_right_aligns_the_last_query_with_the_last_key(tmp_path):
    document = {"x": [[1.0, 0.0], [0.0, 1.0]], "context": [[1.0, 1.0], [0.5, 0.0], [0.0, 2.0], [1.0, 0.0]],
                **{name: np.eye(2).tolist() for name in ("w_query", "w_key", "w_value")}}
    path = write(tmp_path, "cross.json", json.dumps(document))
    lower_right = np.array(computed(path, "--causal-lower-right", "--step", "softmax")["softmax"])
    assert (lower_right > 0).tolist() == [[True, True, True, False], [True, True, True, True]]
    top_left = np.array(computed(path, "--causal", "--step", "softmax")["softmax"])
    assert (top_left > 0).tolist() == [[True, False, False, False], [True, True, False, False]]


def test_explain_and_check_take_the_variant_options_too(tmp_path):
    explained = run("explain", SAMPLES / "classic.json", "--query", "2", "--window", "2", "--alibi")
    assert explained.exit_code == 0, explained.output
    assert "weight[0]" not in explained.stdout and "weight[2]" in explained.stdout
    mine = write(tmp_path, "mine.json", json.dumps(computed(SAMPLES / "llama_style.json", "--window", "2",
                                                           "--softcap", "5", "--step", "output")))
    assert run("check", SAMPLES / "llama_style.json", "-e", mine, "--window", "2", "--softcap", "5").exit_code == 0
    assert run("check", SAMPLES / "llama_style.json", "-e", mine, "--softcap", "5").exit_code == 1


@pytest.mark.parametrize("args, message", [
    (["--window", "0"], "--window is 0; it must be at least 1"),
    (["--window", "-3"], "--window is -3; it must be at least 1"),
    (["--softcap", "0"], "--softcap is 0; it must be a positive finite number"),
    (["--softcap", "inf"], "--softcap is inf; it must be a positive finite number"),
    (["--rope", "neox", "--rope-theta", "-1"], "--rope-theta is -1; it must be a positive finite number"),
    (["--kv-heads", "0"], "--kv-heads is 0; it must be at least 1"),
    (["--kv-heads", "3"], "--kv-heads is 3, which does not divide heads 4 (kv_heads that would: 1, 2, 4)"),
])
def test_a_bad_variant_option_is_named_as_the_option(tmp_path, args, message):
    # the same words as for the document's key, naming the option, not the file
    path = write(tmp_path, "problem.json", json.dumps(random_problem()))
    for command in (["compute", path], ["explain", path, "--query", "0"], ["check", path, "-e", path]):
        assert_one_line_error(run(*command, *args), message)


def test_a_bad_variant_key_in_the_document_is_named_as_the_key(tmp_path):
    path = write(tmp_path, "problem.json", json.dumps({**random_problem(), "window": 0}))
    assert_one_line_error(run("compute", path), f"{path}: window is 0; it must be at least 1")
    # an option that is not at fault leaves the document's message alone
    assert_one_line_error(run("compute", path, "--softcap", "2"), f"{path}: window is 0; it must be at least 1")
    assert run("compute", path, "--window", "2").exit_code == 0  # the option replaces the bad key


@pytest.mark.parametrize("args, hint, message", [
    (["--causal", "--causal-lower-right"], "--causal-lower-right",
     "--causal (top-left) is given too: give one of the two masks"),
])
def test_variant_options_that_do_not_go_together(args, hint, message):
    for command in (["compute", "p.json"], ["explain", "p.json", "--query", "0"], ["check", "p.json", "-e", "e.json"]):
        assert_one_line_error(run(*command, *args),
                              f"Invalid value for {hint}: {message} (see 'attncli {command[0]} --help')")
    assert_one_line_error(run("compute", "p.json", "--rope", "llama"),
                          "Invalid value for '--rope': 'llama' is not one of neox, gptj (see 'attncli compute --help')")


def test_the_options_offer_the_rope_styles_the_core_knows():
    from attncli import options, variants

    assert options.ROPE_STYLES == variants.ROPE_STYLES


# --- random and shapes: the variants --------------------------------------------------------------

@pytest.mark.parametrize("args, keys", [
    (["--kv-heads", "2"], {"kv_heads": 2}),
    (["--rope", "gptj"], {"rope": "gptj"}),
    (["--window", "2"], {"window": 2}),
    (["--softcap", "30"], {"softcap": 30.0}),
    (["--alibi"], {"alibi": True}),
    (["--causal-lower-right"], {"mask": "causal_lower_right"}),
])
def test_random_adds_each_variant_as_its_key(args, keys):
    document = random_problem(*args)
    assert {key: document[key] for key in keys} == keys


def test_random_documents_with_every_variant_compute(tmp_path):
    document = random_problem("--batch", "3", "--kv-heads", "2", "--rope", "neox", "--window", "3", "--softcap",
                              "20", "--alibi", "--sinks", "--qk-norm", "--padding", "--causal", "--out-proj")
    assert np.shape(document["w_key"]) == (8, 4) and np.shape(document["sinks"]) == (4,)
    assert np.shape(document["qk_norm"]["q_weight"]) == (2,) and np.shape(document["padding"]) == (3, 5)
    assert document["padding"][0] == [1] * 5
    result = computed(write(tmp_path, "everything.json", json.dumps(document)))
    assert list(result)[:-1] == ["q", "k", "v", "q_normed", "k_normed", "q_rotated", "k_rotated", "scores",
                                 "logits", "capped", "biased", "softmax", "concat", "output"]
    assert {key for key in result["meta"]} >= {"kv_heads", "qk_norm", "rope", "softcap", "alibi", "window",
                                               "padding", "sinks"}
    # a sink takes part of each row's weight
    assert all(sum(row) < 1 for item in result["softmax"] for head in item for row in head if any(row))


@pytest.mark.parametrize("args, message", [
    (["--kv-heads", "3"], "random: --kv-heads is 3, which does not divide heads 4 (kv_heads that would: 1, 2, 4)"),
    (["--window", "0"], "random: --window is 0; it must be at least 1"),
    (["--softcap", "-2"], "random: --softcap is -2; it must be a positive finite number"),
])
def test_random_checks_the_variants_as_the_document_keys_are(args, message):
    assert_one_line_error(run("random", "--seq-len", 5, "--d-model", 8, "--heads", 4, *args), message)
    assert_one_line_error(run("random", "--seq-len", 2, "--d-model", 2, "--causal", "--causal-lower-right"),
                          "Invalid value for --causal-lower-right: --causal (top-left) is given too: give one of the "
                          "two masks (see 'attncli random --help')")


def test_shapes_shows_the_variants_steps():
    result = run("shapes", "--seq-len", 6, "--d-model", 16, "--heads", 4, "--kv-heads", 2, "--rope", "neox",
                 "--softcap", 30, "--alibi", "--window", 3, "-f", "json")
    assert result.exit_code == 0, result.output
    rows = {row["step"]: row for row in json.loads(result.stdout)["steps"]}
    assert list(rows) == ["x", "q", "k", "v", "q_rotated", "k_rotated", "scores", "logits", "capped", "biased",
                          "softmax", "output"]
    assert (rows["k"]["shape"], rows["k"]["axes"]) == ([2, 6, 4], ["kv_heads", "k_len", "head_dim"])
    assert rows["q_rotated"]["shape"] == [4, 6, 4] and rows["k_rotated"]["shape"] == [2, 6, 4]
    assert rows["capped"]["formula"] == "capped = 30·tanh(logits / 30)"
    assert "masked" in rows["biased"]["formula"]


@pytest.mark.parametrize("args, message", [
    (["--kv-heads", "3"], "shapes: --kv-heads is 3, which does not divide heads 4 (kv_heads that would: 1, 2, 4)"),
    (["--window", "0"], "shapes: --window is 0; it must be at least 1"),
    (["--softcap", "0"], "shapes: --softcap is 0; it must be a positive finite number"),
])
def test_shapes_checks_the_variants(args, message):
    assert_one_line_error(run("shapes", "--seq-len", 6, "--d-model", 16, "--heads", 4, *args), message)
    assert_one_line_error(run("shapes", SAMPLES / "classic.json", "--alibi"),
                          "Invalid value for --alibi: a FILE brings its own sizes: give sizes or a FILE, not both "
                          "(see 'attncli shapes --help')")


# --- compute: bad input ---------------------------------------------------------------------------

def test_missing_file(tmp_path):
    assert_one_line_error(run("compute", tmp_path / "nope.json"), f"{tmp_path / 'nope.json'}: no such file")


def test_folder_without_x(tmp_path):
    assert_one_line_error(
        run("compute", tmp_path),
        f"{tmp_path}: holds no x (x.csv, x.tsv, x.json, x.npy or x.txt); a problem folder has one file per matrix",
    )


def test_unreadable_file(tmp_path, monkeypatch):
    path = write(tmp_path, "secret.json", "{}")
    if os.geteuid() == 0:  # root reads any file: make the refusal happen as it would for a user
        import builtins

        real_open = builtins.open

        def refusing_open(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(13, "Permission denied")
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr(builtins, "open", refusing_open)
    else:
        path.chmod(0)
    assert_one_line_error(run("compute", path), f"{path}: permission denied")


def test_invalid_json_names_line_and_column(tmp_path):
    path = write(tmp_path, "bad.json", '{\n  "x": [[1, 2],\n  "w_query": }\n')
    assert_one_line_error(run("compute", path),
                          f"{path}: invalid JSON at line 3, column 12: Expecting ',' delimiter")


def test_errors_about_standard_input_name_it():
    assert_one_line_error(run("compute", "-", stdin='{"x": [[1]]'),
                          "<stdin>: invalid JSON at line 1, column 12: Expecting ',' delimiter")
    assert_one_line_error(run("compute", "-", stdin=""), "<stdin>: is empty; expected a JSON object")


def test_bytes_that_are_not_utf8(tmp_path):
    path = write(tmp_path, "latin.json", b'{"x": [[1\xe9]]}')
    assert_one_line_error(run("compute", path), f"{path}: is not UTF-8 text: byte 0xe9 at offset 9")
    utf16 = write(tmp_path, "utf16.json", '{"x": 1}'.encode("utf-16"))
    assert_one_line_error(run("compute", utf16),
                          f"{utf16}: is not UTF-8 text: byte 0xff at offset 0 (it looks like UTF-16: save it as UTF-8)")


def test_nan_literal_names_the_cell(tmp_path, seed_example):
    text = json.dumps(seed_example["problem"]).replace("0.0", "NaN", 1)
    assert_one_line_error(run("compute", write(tmp_path, "n.json", text)),
                          f"{tmp_path / 'n.json'}: x[0][1] is NaN; every value must be a finite number")


def test_duplicate_keys_are_an_error(tmp_path):
    path = write(tmp_path, "d.json", '{"x": [[1]], "x": [[2]]}')
    assert_one_line_error(run("compute", path), f"{path}: key 'x' appears twice in one object")


def test_shape_mistake_names_file_and_matrices(tmp_path, seed_example):
    problem = {**seed_example["problem"], "w_query": seed_example["problem"]["w_query"][:3]}
    path = write(tmp_path, "inputs.json", json.dumps(problem))
    assert_one_line_error(run("compute", path), f"{path}: w_query has 3 rows but x has 4 columns")


def test_unknown_key_suggests_the_closest(tmp_path, seed_example):
    path = write(tmp_path, "k.json", json.dumps({**seed_example["problem"], "w_vaule": [[1]]}))
    assert_one_line_error(run("compute", path), f"{path}: unknown key 'w_vaule'; did you mean 'w_value'?")


def test_unknown_step_lists_the_steps():
    assert_one_line_error(
        run("compute", SAMPLES / "classic.json", "--step", "logits"),
        f"{SAMPLES / 'classic.json'}: step 'logits': this problem has no such step; "
        "the steps are q, k, v, scores, softmax, averaged, output",
    )
    assert_one_line_error(
        run("compute", SAMPLES / "classic.json", "--step", "attn"),
        "Invalid value for --step: 'attn' is not a step; the steps are q, k, v, q_normed, k_normed, q_rotated, "
        "k_rotated, scores, logits, capped, biased, softmax, averaged, concat, output; did you mean 'softmax'? "
        "(see 'attncli compute --help')",
    )


def test_bad_scale_option():
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "--scale", "-1"),
                          f"{SAMPLES / 'classic.json'}: scale is '-1'; it must be a positive finite number")


def test_usage_errors_are_one_line():
    result = run("compute", SAMPLES / "classic.json", "--zzz")
    assert_one_line_error(result, "No such option: --zzz (see 'attncli compute --help')")
    result = run("compute")
    assert_one_line_error(result, "Invalid value for FILE: give a problem FILE, or the matrices with --x, "
                                  "--w-query, --w-key and --w-value (see 'attncli compute --help')")
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "--heads", "0"),
                          "Invalid value for '--heads': 0 is not allowed; use a whole number of at least 1 "
                          "(see 'attncli compute --help')")
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "-f", "xml"),
                          "Invalid value for '--format' / '-f': 'xml' is not one of table, json, csv, npz "
                          "(see 'attncli compute --help')")
    assert_one_line_error(run("demo", "--precision", "18"),
                          "Invalid value for '--precision': 18 is not allowed; use a whole number from 0 to 17 "
                          "(see 'attncli demo --help')")
    assert run("demo", "-f", "JSON").exit_code == 0


@pytest.mark.parametrize("args, hint, message", [
    (["compute", "in.jsonl", "--x", "x.csv"], "--lines", "matrix options do not combine with JSON Lines"),
    (["compute", "-", "--lines", "-f", "csv"], "--format", "JSON Lines are written as JSON lines"),
    (["compute", "in.jsonl", "--export-svg", "a.svg"], "--view/--export-svg/--export-html",
     "JSON Lines are written as JSON lines, not shown as pictures"),
    (["compute", "p.json", "--view", "heatmap", "-s", "softmax"], "--step",
     "the heatmap shows the softmax weights; --step does not apply"),
    (["compute", "p.json", "--view", "heatmap", "-o", "h.txt"], "--view",
     "the heatmap is a view: it goes to the terminal (and --export-svg/--export-html)"),
    (["compute", "p.json", "--export-html", "a.html", "-f", "json"], "--export-svg/--export-html",
     "pictures record the table view"),
    (["shapes", "p.json", "--seq-len", "3"], "--seq-len",
     "a FILE brings its own sizes: give sizes or a FILE, not both"),
    (["shapes", "--d-model", "8"], "--seq-len", "give --seq-len and --d-model (or a problem FILE)"),
    (["check", "p.json", "-e", "mine.json", "--rtol", "-1"], "--atol/--rtol",
     "tolerances must be finite numbers of 0 or more"),
])
def test_options_that_do_not_go_together_are_usage_errors_before_any_file_is_read(args, hint, message):
    # none of these files exists: the options are checked first
    assert_one_line_error(run(*args), f"Invalid value for {hint}: {message} (see 'attncli {args[0]} --help')")


def test_standard_input_twice_is_refused_before_reading_it():
    assert_one_line_error(run("check", "-", "-e", "-", stdin="{}"),
                          "<stdin>: standard input (-) can feed only one input")


def test_the_cli_declares_and_maps_errors_in_one_place():
    source = (ROOT / "attncli" / "cli.py").read_text()
    assert len(source.splitlines()) < 300
    assert source.count("except ProblemError") == 1
    assert "import numpy" not in source and "from rich" not in source


# --- process-level behaviour ----------------------------------------------------------------------

def attncli_process(*args, stdin=None, env=None):
    return subprocess.run([sys.executable, "-m", "attncli", *map(str, args)], input=stdin, capture_output=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=60)


def test_version_and_help_do_not_import_numpy():
    code = ("import sys; sys.argv = ['attncli', '{}']\n"
            "from attncli.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('numpy' in sys.modules, 'rich' in sys.modules)")
    for flag in ("--version", "--help"):
        done = subprocess.run([sys.executable, "-c", code.format(flag)], capture_output=True, text=True, cwd=ROOT)
        assert done.stdout.splitlines()[-1] == "False False", (flag, done.stdout, done.stderr)
    from attncli import __version__
    assert attncli_process("--version").stdout.decode() == f"attncli {__version__}\n"


def test_the_entry_collects_rarely_and_leaves_an_importer_its_collector():
    code = ("import gc, sys; sys.argv = ['attncli', '--version']\n"
            "import attncli.cli\n"
            "print(gc.get_threshold(), gc.get_freeze_count() == 0)\n"
            "from attncli.__main__ import run\n"
            "try:\n    run()\nexcept SystemExit:\n    pass\n"
            "print(gc.get_threshold(), gc.get_freeze_count() > 10_000)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.splitlines()[0] == "(700, 10, 10) True", done.stderr
    assert done.stdout.splitlines()[-1] == "(100000, 10, 10) True", done.stderr
    # the console script and python -m attncli both start there
    assert 'attncli = "attncli.__main__:run"' in (ROOT / "pyproject.toml").read_text()
    assert attncli_process("compute", ROOT / "samples" / "classic.json", "--format", "json", "--step", "output")\
        .stdout.startswith(b'{"output": [[1.9366210616669624, 6.683105308334811, 1.5950684074995565]')


def test_core_imports_neither_typer_nor_rich():
    code = ("import sys, attncli.pipeline, attncli.readers, attncli.export, attncli.demo\n"
            "print(sorted(m for m in ('typer', 'rich', 'click') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


def test_closed_pipe_ends_quietly():
    # a problem whose JSON output is far larger than a pipe buffer
    rng = np.random.default_rng(6)
    problem = {"x": rng.normal(size=(300, 8)).tolist(), **{
        name: rng.normal(size=(8, 8)).tolist() for name in ("w_query", "w_key", "w_value")}}
    for output_format in ("json", "table"):
        shell = (f"{sys.executable} -m attncli compute - --format {output_format} | head -c 10 >/dev/null; "
                 "echo ${PIPESTATUS[0]}")
        done = subprocess.run(["bash", "-c", shell], input=json.dumps(problem).encode(), capture_output=True,
                              cwd=ROOT, timeout=60)
        assert done.stderr == b"", done.stderr.decode()
        assert done.stdout.strip() == b"141"


def test_large_tables_elide_the_middle_unless_full(tmp_path):
    rng = np.random.default_rng(7)
    problem = {"x": rng.normal(size=(30, 2)).tolist(), **{
        name: rng.normal(size=(2, 2)).tolist() for name in ("w_query", "w_key", "w_value")}}
    path = write(tmp_path, "long.json", json.dumps(problem))
    elided = run("compute", path, "--step", "scores")
    rows = [line for line in elided.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == [*map(str, range(10)), "…", *map(str, range(20, 30))]
    header = next(line for line in elided.stdout.splitlines() if line.startswith("┃"))
    assert [cell.strip() for cell in header.split("┃")[2:-1]] == [*map(str, range(7)), "…", *map(str, range(23, 30))]
    assert "middle elided: --full shows every value" in elided.stdout
    scores = np.array(problem["x"]) @ np.array(problem["w_query"]) @ (np.array(problem["x"]) @ np.array(
        problem["w_key"])).T
    assert rows[-1].split("│")[-2].strip() == f"{scores[29, 29]:.4f}"
    full = run("compute", path, "--step", "scores", "--full")
    assert len([line for line in full.stdout.splitlines() if line.startswith("│")]) == 30
    assert "…" not in full.stdout and f"{scores[15, 15]:.4f}" in full.stdout


def test_rope_theta_alone_sets_the_theta_of_the_documents_rope():
    result = run("compute", SAMPLES / "llama_style.json", "--rope-theta", "100", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["meta"]["rope"]["theta"] == 100.0
    # (with head_dim 2 the one pair turns at theta^0 = 1 radian a position, whatever theta: same numbers)
    plain = json.loads(run("compute", SAMPLES / "llama_style.json", "--format", "json").stdout)
    assert plain["meta"]["rope"]["theta"] == 10000.0 and plain["output"] == json.loads(result.stdout)["output"]
    assert_one_line_error(run("compute", SAMPLES / "classic.json", "--rope-theta", "100"),
                          "--rope-theta is the theta of a rotation: give --rope too (the document has no rope)")
