"""The precision goldens (data/precision/, made by data/make_precision_goldens.py with PyTorch) read with
plain numpy: every problem's stored exact output is the float64 attention of its stored inputs (to 1e-12),
and what PyTorch returned in float32, float16 or bfloat16 is within a generous bound of it. Needs no torch
and no attncli: this checks the data that issue 13's tolerance is proved on."""

from __future__ import annotations

import json
import math
from functools import cache

import numpy as np
import pytest
from conftest import DATA

FOLDER = DATA / "precision"
INDEX = json.loads((FOLDER / "index.json").read_text())
PROBLEMS = INDEX["problems"]
IMPLEMENTATIONS = ("sdpa_math", "sdpa_flash", "nn_mha", "hf_eager")
DTYPES = ("float32", "float16", "bfloat16")
STORED_AS = {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}
# max |torch - exact| / max |exact|. Worst seen (torch 2.13 CPU): float32 7.6e-7 (13 u), float16
# 2.6e-3 (5.4 u, hf_eager), bfloat16 1.2e-2 (3 u, hf_eager). The bounds leave about 4x room: they catch
# a broken file or decoding (wrong dtype, bf16 bits read as float16, a transposed output), not tolerance.
BOUND = {"float32": 5e-6, "float16": 1e-2, "bfloat16": 5e-2}
EXACT_RTOL = 1e-12


@cache
def archive(name: str):
    return np.load(FOLDER / name, allow_pickle=False)


def decode(array: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values as float64; bfloat16 is its raw bits, the high half of a float32."""
    assert array.dtype == STORED_AS[dtype], (array.dtype, dtype)
    if dtype == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return array.astype(np.float64)


def arrays(problem: dict) -> dict:
    npz = archive(problem["file"])
    result = {}
    for role, key in problem["arrays"].items():
        value = npz[key]
        assert list(value.shape) == problem["shapes"][role], (problem["name"], role)
        if role == "allowed":
            assert value.dtype == np.bool_
            result[role] = value
        elif role == "exact":
            assert value.dtype == np.float64
            result[role] = value
        else:
            result[role] = decode(value, problem["dtype"])
    return result


def softmax_attention(q, k, v, allowed) -> np.ndarray:
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(q.shape[-1])
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (weights / weights.sum(axis=-1, keepdims=True)) @ v


def float64_attention(problem: dict, a: dict) -> np.ndarray:
    allowed = a.get("allowed")
    if problem["implementation"] != "nn_mha":
        return softmax_attention(a["q"], a["k"], a["v"], allowed)
    batch, length, embed = a["x"].shape
    heads, dim = problem["heads"], problem["head_dim"]
    projected = a["x"] @ a["in_proj_weight"].T + a["in_proj_bias"]  # PyTorch's layout: x W^T + b
    q, k, v = (projected[..., i * embed:(i + 1) * embed].reshape(batch, length, heads, dim).transpose(0, 2, 1, 3)
               for i in range(3))
    context = softmax_attention(q, k, v, allowed).transpose(0, 2, 1, 3).reshape(batch, length, embed)
    return context @ a["out_proj_weight"].T + a["out_proj_bias"]


def test_index_covers_the_issue():
    assert len(PROBLEMS) >= 200
    for implementation in IMPLEMENTATIONS:
        for dtype in DTYPES:
            assert sum(p["implementation"] == implementation and p["dtype"] == dtype for p in PROBLEMS) >= 15
    assert max(p["k_len"] for p in PROBLEMS) == 1024
    assert sum(max(p["q_len"], p["k_len"]) >= 512 for p in PROBLEMS) >= 10
    assert any(p["q_len"] == p["k_len"] == 1024 and p["head_dim"] == 128 for p in PROBLEMS)
    assert {p["head_dim"] for p in PROBLEMS} == {16, 32, 64, 128}
    assert {p["mask"] for p in PROBLEMS} == {"none", "causal", "bool"}
    assert sum(path.stat().st_size for path in FOLDER.iterdir()) <= 10_000_000


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_problem(dtype):
    """Each stored exact output is numpy's float64 attention of the stored inputs; PyTorch's output is near it."""
    for problem in (p for p in PROBLEMS if p["dtype"] == dtype):
        a = arrays(problem)
        exact = a["exact"]
        peak = np.abs(exact).max()
        ours = float64_attention(problem, a)
        assert np.abs(ours - exact).max() <= EXACT_RTOL * peak, problem["name"]
        error = np.abs(a["output"] - exact).max() / peak
        assert error <= BOUND[dtype], (problem["name"], error)
        assert error == pytest.approx(problem["rel_max_error"], rel=1e-9), problem["name"]
        if problem["mask"] == "causal":
            assert np.array_equal(a["allowed"], np.tril(np.ones_like(a["allowed"])))
        if problem["mask"] != "none":
            assert a["allowed"].any(axis=-1).all(), problem["name"]  # no fully blocked row


def test_reduced_precision_is_not_float32():
    """The float16/bfloat16 outputs carry their dtype's rounding: far from exact compared with float32's."""
    for dtype, floor in (("float16", 1e-4), ("bfloat16", 1e-3)):
        errors = [p["rel_max_error"] for p in PROBLEMS if p["dtype"] == dtype and p["q_len"] * p["head_dim"] >= 64]
        assert np.median(errors) > floor
