"""Random problems for hypothesis (``problems``), attention written plainly (``reference``), and what
must hold for any of them across modules: the JSON output parses back to the same numbers.

The properties of one module are in its own test file: the pipeline's in test_pipeline.py, the
stage functions' in test_stages.py."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attncli.export import trace_to_json
from attncli.pipeline import attention
from attncli.problem import problem_from_document

VALUES = st.floats(min_value=-8, max_value=8, allow_nan=False, allow_infinity=False, width=64)


@st.composite
def problems(draw):
    """A random problem document, sometimes batched, multi-head, cross-attention, biased, masked."""
    batch = draw(st.sampled_from([None, 1, 2, 3]))
    heads = draw(st.integers(1, 3))
    head_dim, head_dim_v = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    q_len, d_model = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    cross = draw(st.booleans())
    k_len, d_context = (draw(st.integers(1, 5)), draw(st.integers(1, 5))) if cross else (q_len, d_model)

    def matrix(*shape):
        return draw(hnp.arrays(np.float64, shape, elements=VALUES)).tolist()

    lead = () if batch is None else (batch,)
    per_head = draw(st.booleans())  # weights as (heads, d_in, head_dim), biases as (heads, head_dim)

    def weight(rows, dim):
        return matrix(heads, rows, dim) if per_head else matrix(rows, heads * dim)

    def bias(dim):
        return matrix(heads, dim) if per_head else matrix(heads * dim)

    document = {
        "x": matrix(*lead, q_len, d_model),
        "w_query": weight(d_model, head_dim),
        "w_key": weight(d_context, head_dim),
        "w_value": weight(d_context, head_dim_v),
        "scale": draw(st.sampled_from(["sqrt", "none", 0.5, 3.0])),
    }
    if not per_head:
        document["heads"] = heads
    if cross:
        document["context"] = matrix(*lead, k_len, d_context)
    for name, dim in (("b_query", head_dim), ("b_key", head_dim), ("b_value", head_dim_v)):
        if draw(st.booleans()):
            document[name] = bias(dim)
    if draw(st.booleans()):
        d_out = draw(st.integers(1, 4))
        document["w_out"] = matrix(heads * head_dim_v, d_out)
        if draw(st.booleans()):
            document["b_out"] = matrix(d_out)
    mask_kind = draw(st.sampled_from(["none", "causal", "2d", "3d", "4d"]))
    if mask_kind == "causal":
        document["mask"] = "causal"
    elif mask_kind == "2d":
        document["mask"] = draw(hnp.arrays(np.bool_, (q_len, k_len))).tolist()
    elif mask_kind == "3d":
        document["mask"] = draw(hnp.arrays(np.int64, (batch or 1, q_len, k_len), elements=st.integers(0, 1))).tolist()
    elif mask_kind == "4d":
        document["mask"] = draw(hnp.arrays(np.bool_, (batch or 1, heads, q_len, k_len))).tolist()
    return document


def reference(document):
    """Attention written plainly, one batch item and one head at a time: (batch, q_len, d_out) and
    the weights (batch, heads, q_len, k_len)."""
    x = np.array(document["x"], dtype=float)
    context = np.array(document.get("context", document["x"]), dtype=float)
    if x.ndim == 2:
        x, context = x[None], context[None]
    w_q, w_k, w_v = (np.array(document[name], dtype=float) for name in ("w_query", "w_key", "w_value"))
    heads = w_q.shape[0] if w_q.ndim == 3 else document.get("heads", 1)
    if w_q.ndim == 3:  # per head: head h's columns come h-th
        w_q, w_k, w_v = (np.concatenate(list(w), axis=1) for w in (w_q, w_k, w_v))
    d, d_v = w_q.shape[1] // heads, w_v.shape[1] // heads
    b_q, b_k, b_v = (np.ravel(document.get(name, np.zeros(width)))
                     for name, width in (("b_query", w_q.shape[1]), ("b_key", w_k.shape[1]),
                                         ("b_value", w_v.shape[1])))
    scale = {"sqrt": 1 / math.sqrt(d), "none": 1.0}.get(document.get("scale", "sqrt"), document.get("scale"))
    q_len, k_len = x.shape[1], context.shape[1]
    mask = document.get("mask")
    if mask is None:
        allowed = np.ones((1, 1, q_len, k_len), bool)
    elif mask == "causal":
        allowed = np.array([[j <= i for j in range(k_len)] for i in range(q_len)])[None, None]
    else:
        allowed = np.array(mask, bool)
        allowed = {2: lambda a: a[None, None], 3: lambda a: a[:, None], 4: lambda a: a}[allowed.ndim](allowed)
    outputs, all_weights = [], []
    for b in range(x.shape[0]):
        per_head, weights_b = [], []
        for h in range(heads):
            q = x[b] @ w_q[:, h * d:(h + 1) * d] + b_q[h * d:(h + 1) * d]
            k = context[b] @ w_k[:, h * d:(h + 1) * d] + b_k[h * d:(h + 1) * d]
            v = context[b] @ w_v[:, h * d_v:(h + 1) * d_v] + b_v[h * d_v:(h + 1) * d_v]
            see = allowed[min(b, allowed.shape[0] - 1), min(h, allowed.shape[1] - 1)]
            weights = np.zeros((q_len, k_len))
            for i in range(q_len):
                keys = np.flatnonzero(see[i])
                if len(keys):
                    logits = np.array([q[i] @ k[j] * scale for j in keys])
                    exps = np.exp(logits - logits.max())
                    weights[i, keys] = exps / exps.sum()
            weights_b.append(weights)
            per_head.append(weights @ v)
        concat = np.concatenate(per_head, axis=1)
        if "w_out" in document:
            concat = concat @ np.array(document["w_out"]) + np.array(document.get("b_out", 0.0))
        outputs.append(concat)
        all_weights.append(weights_b)
    return np.array(outputs), np.array(all_weights), allowed


def full_axes(trace, name):
    """A step's array with batch and heads axes put back, whatever the problem dropped."""
    array = trace.steps[name].array
    axes = trace.steps[name].axes
    if "batch" not in axes:
        array = array[None]
    if name in ("softmax", "q", "k", "v") and "heads" not in axes:
        array = array[:, None]
    return array


@settings(max_examples=100, deadline=None)
@given(problems())
def test_json_output_parses_back_to_the_same_float64_values(document):
    trace = attention(problem_from_document(document))
    parsed = json.loads(trace_to_json(trace, trace.select(None)))
    for name, step in trace.steps.items():
        back = np.array(parsed[name], dtype=object)
        finite = np.isfinite(step.array)
        assert np.array_equal(np.array(back[finite], dtype=np.float64), step.array[finite])
        assert (back[~finite] == None).all()  # noqa: E711 — masked logits are JSON null
