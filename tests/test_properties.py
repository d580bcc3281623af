"""Random problems for hypothesis (``problems``), attention written plainly (``reference``), and what
must hold for any of them across modules: the JSON output parses back to the same numbers, and each
variant of attention (issue 11) reduces to plain attention where it should (kv_heads = heads, a
window of at least k_len, sinks of −∞, padding of ones, ALiBi slopes and biases of 0, a huge
soft-cap…) and keeps its own invariants (RoPE at position 0 is the identity, keeps each vector's
norm, and gives scores that depend only on the positions' difference).

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
from attncli.stages import STEP_AXES

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
    """A step's array with the batch and head axes put back (size 1), whatever the problem dropped:
    the axes of stages.STEP_AXES[name]."""
    step = trace.steps[name]
    shape, kept = [], list(zip(step.axes, step.array.shape, strict=True))
    for axis in STEP_AXES[name]:
        # a trace calls the key/value heads "heads" when there are as many as query heads
        if kept and kept[0][0] in (axis, "heads" if axis == "kv_heads" else axis):
            shape.append(kept.pop(0)[1])
        else:
            shape.append(1)
    return step.array.reshape(shape)


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


# --- the variants of issue 11 reduce to plain attention where they should ----------------------------

VARIANT_EXAMPLES = 40  # each example is two small traces: the whole group stays within a few seconds


@st.composite
def variant_bases(draw, grouped=False, cross=None, equal_lengths=False):
    """A random problem to add a variant to: 1, 2 or 4 heads of an even head_dim (RoPE rotates
    pairs), ``kv_heads`` dividing them when ``grouped``, sometimes batched, cross-attention
    (``cross`` None: either; k_len = q_len with ``equal_lengths``), biased and with W_O; the numbers
    from N(0, 1) by a drawn seed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    heads = draw(st.sampled_from([2, 4] if grouped else [1, 2, 4]))
    kv_heads = draw(st.sampled_from([count for count in (1, 2) if count < heads])) if grouped else heads
    head_dim, head_dim_v = draw(st.sampled_from([2, 4, 6])), draw(st.integers(1, 3))
    lead = draw(st.sampled_from([(), (2,)]))
    q_len, d_model = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    cross = draw(st.booleans()) if cross is None else cross
    k_len = (q_len if equal_lengths else draw(st.integers(1, 5))) if cross else q_len
    d_source = draw(st.integers(1, 4)) if cross else d_model

    def normal(*shape):
        return rng.normal(size=shape).tolist()

    document = {"x": normal(*lead, q_len, d_model), "heads": heads, "w_query": normal(d_model, heads * head_dim),
                "w_key": normal(d_source, kv_heads * head_dim), "w_value": normal(d_source, kv_heads * head_dim_v)}
    if grouped:
        document["kv_heads"] = kv_heads
    if cross:
        document["context"] = normal(*lead, k_len, d_source)
    if draw(st.booleans()):
        document.update(b_query=normal(heads * head_dim), b_key=normal(kv_heads * head_dim),
                        b_value=normal(kv_heads * head_dim_v))
    if draw(st.booleans()):
        document["w_out"] = normal(heads * head_dim_v, draw(st.integers(1, 3)))
    return document


def sizes_of(document):
    """(batch, heads, q_len, k_len) of a document from variant_bases."""
    x = np.asarray(document["x"])
    k_len = np.asarray(document.get("context", document["x"])).shape[-2]
    return (x.shape[0] if x.ndim == 3 else 1), document["heads"], x.shape[-2], k_len


def trace_of(document):
    return attention(problem_from_document(document))


def assert_close(actual, expected, name=""):
    """Equal to 1e-12 of the array's size (relative to its largest finite value): −∞ and NaN where
    the other has them."""
    finite = np.abs(expected[np.isfinite(expected)])
    size = finite.max(initial=0.0)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * size, err_msg=name)


def assert_same_steps(trace, expected, same_names=True):
    """Every step both traces have holds the same numbers (and, with ``same_names``, they have the
    same steps)."""
    if same_names:
        assert list(trace.steps) == list(expected.steps)
    for name in expected.steps.keys() & trace.steps.keys():
        assert trace.steps[name].axes == expected.steps[name].axes, name
        assert_close(trace.steps[name].array, expected.steps[name].array, name)


def with_variant(document, **keys):
    return {**document, **keys}


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), st.sampled_from([None, "neox", "gptj"]), st.booleans())
def test_kv_heads_equal_to_heads_is_plain_multi_head(document, rope, causal):
    if rope:
        document["rope"] = rope
    if causal:
        document["mask"] = "causal"
    assert_same_steps(trace_of(with_variant(document, kv_heads=document["heads"])), trace_of(document))


def repeated_per_group(matrix, kv_heads, groups):
    """Each key/value head's columns given ``groups`` times in a row, (…, kv_heads*d) ->
    (…, kv_heads*groups*d): PyTorch's repeat_interleave on the head axis, Hugging Face's repeat_kv
    (not np.tile, which would give head h the key/value head h % kv_heads)."""
    array = np.asarray(matrix)
    per_head = array.reshape(*array.shape[:-1], kv_heads, -1)
    return np.repeat(per_head, groups, axis=-2).reshape(*array.shape[:-1], -1).tolist()


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(grouped=True), st.sampled_from([None, "neox", "gptj"]), st.booleans(), st.booleans())
def test_grouped_query_attention_is_multi_head_with_each_kv_head_repeated_for_its_group(document, rope, causal,
                                                                                        per_head):
    kv_heads, groups = document["kv_heads"], document["heads"] // document["kv_heads"]
    if rope:
        document["rope"] = rope
    if causal:
        document["mask"] = "causal"
    repeated = {key: repeated_per_group(document[key], kv_heads, groups)
                for key in ("w_key", "w_value", "b_key", "b_value") if key in document}
    plain = {key: value for key, value in {**document, **repeated}.items() if key != "kv_heads"}
    if per_head:  # (kv_heads, d, head_dim) weights: fewer heads than the query's, with kv_heads given
        for key in ("w_key", "w_value"):
            array = np.asarray(document[key])
            document[key] = array.reshape(array.shape[0], kv_heads, -1).transpose(1, 0, 2).tolist()
    grouped, expected = trace_of(document), trace_of(plain)
    key_steps = {"k", "v", "k_rotated"}
    for name in key_steps & grouped.steps.keys():
        assert_close(np.repeat(full_axes(grouped, name), groups, axis=1), full_axes(expected, name), name)
    for name in expected.steps.keys() - key_steps:
        assert grouped.steps[name].axes == expected.steps[name].axes, name
        assert_close(grouped.steps[name].array, expected.steps[name].array, name)


ROPES = st.fixed_dictionaries({"style": st.sampled_from(["neox", "gptj"]),
                               "theta": st.sampled_from([10000, 500000, 10])})


def rope_of(document, style):
    """A rope key for the document's head_dim: all of it rotated, or only its first pairs."""
    head_dim = np.asarray(document["w_query"]).shape[1] // document["heads"]
    return {**style, "rotary_dim": head_dim if head_dim == 2 or style["theta"] != 10 else head_dim - 2}


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), ROPES)
def test_rope_at_position_0_is_the_identity(document, style):
    _, _, q_len, k_len = sizes_of(document)
    at_zero = {"query": [0] * q_len, "key": [0] * k_len}
    rotated = trace_of(with_variant(document, rope=rope_of(document, style), positions=at_zero))
    assert np.array_equal(rotated.steps["q_rotated"].array, rotated.steps["q"].array)
    assert np.array_equal(rotated.steps["k_rotated"].array, rotated.steps["k"].array)
    assert_same_steps(rotated, trace_of(document), same_names=False)


POSITIONS = st.integers(-1000, 1000)


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), ROPES, st.data())
def test_rope_keeps_each_vectors_norm(document, style, data):
    _, _, q_len, k_len = sizes_of(document)
    positions = {"query": data.draw(st.lists(POSITIONS, min_size=q_len, max_size=q_len)),
                 "key": data.draw(st.lists(POSITIONS, min_size=k_len, max_size=k_len))}
    trace = trace_of(with_variant(document, rope=rope_of(document, style), positions=positions))
    for letter in "qk":
        before, after = trace.steps[letter].array, trace.steps[f"{letter}_rotated"].array
        np.testing.assert_allclose(np.linalg.norm(after, axis=-1), np.linalg.norm(before, axis=-1), rtol=1e-12)
        # the pairs past rotary_dim pass through unchanged
        rotary_dim = rope_of(document, style)["rotary_dim"]
        assert np.array_equal(after[..., rotary_dim:], before[..., rotary_dim:])


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), ROPES, st.data(), st.integers(-1000, 1000))
def test_scores_with_rope_depend_only_on_the_difference_of_positions(document, style, data, shift):
    _, _, q_len, k_len = sizes_of(document)
    query = data.draw(st.lists(st.integers(-100, 100), min_size=q_len, max_size=q_len))
    key = data.draw(st.lists(st.integers(-100, 100), min_size=k_len, max_size=k_len))
    rope = rope_of(document, style)
    trace = trace_of(with_variant(document, rope=rope, positions={"query": query, "key": key}))
    shifted = trace_of(with_variant(document, rope=rope, positions={"query": [p + shift for p in query],
                                                                    "key": [p + shift for p in key]}))
    for name in ("scores", "softmax", "output"):
        assert_close(shifted.steps[name].array, trace.steps[name].array, name)


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(cross=False), st.integers(0, 3))
def test_a_window_of_at_least_k_len_is_the_causal_mask(document, beyond):
    _, _, _, k_len = sizes_of(document)
    assert_same_steps(trace_of(with_variant(document, window=k_len + beyond)),
                      trace_of(with_variant(document, mask="causal")))


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), st.sampled_from([None, "-inf", "-Infinity"]), st.booleans(), st.sampled_from(["zero", "nan"]))
def test_sinks_of_minus_infinity_are_no_sinks(document, minus_infinity, causal, masked_rows):
    _, heads, _, _ = sizes_of(document)
    document["masked_rows"] = masked_rows
    if causal:
        document["mask"] = "causal"  # rows with no key stay without one: the sink takes no weight
    assert_same_steps(trace_of(with_variant(document, sinks=[minus_infinity] * heads)), trace_of(document))


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), st.booleans(), st.booleans())
def test_a_padding_of_ones_is_no_padding(document, per_batch, causal):
    batch, _, _, k_len = sizes_of(document)
    if causal:
        document["mask"] = "causal"
    padding = [[1] * k_len] * batch if per_batch else [1] * k_len
    assert_same_steps(trace_of(with_variant(document, padding=padding)), trace_of(document), same_names=False)


def assert_added_nothing(trace, expected, added):
    """``trace`` is ``expected`` with one step more, ``added``, which now hides the masked keys: it
    equals ``expected``'s logits, the logits it was made from equal them wherever a key may be
    seen, and every other step is the same."""
    assert [name for name in trace.steps if name != added] == list(expected.steps)
    assert_close(trace.steps[added].array, expected.steps["logits"].array, added)
    logits, expected_logits = trace.steps["logits"].array, expected.steps["logits"].array
    seen = np.isfinite(expected_logits)
    assert_close(logits[seen], expected_logits[seen], "logits")
    for name in expected.steps.keys() - {"logits"}:
        assert_close(trace.steps[name].array, expected.steps[name].array, name)


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), st.booleans())
def test_alibi_with_slopes_of_0_is_no_alibi(document, causal):
    _, heads, _, _ = sizes_of(document)
    if causal:
        document["mask"] = "causal"
    assert_added_nothing(trace_of(with_variant(document, alibi=[0.0] * heads)), trace_of(document), "biased")


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), st.integers(2, 4), st.booleans())
def test_a_bias_of_zeros_is_no_bias(document, rank, causal):
    batch, heads, q_len, k_len = sizes_of(document)
    if causal:
        document["mask"] = "causal"
    shape = {2: (q_len, k_len), 3: (batch, q_len, k_len), 4: (batch, heads, q_len, k_len)}[rank]
    zeros = np.zeros(shape).tolist()
    assert_added_nothing(trace_of(with_variant(document, bias=zeros)), trace_of(document), "biased")


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), st.booleans())
def test_a_huge_softcap_is_no_softcap(document, causal):
    if causal:
        document["mask"] = "causal"
    assert_added_nothing(trace_of(with_variant(document, softcap=1e12)), trace_of(document), "capped")


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(equal_lengths=True))
def test_causal_lower_right_is_causal_when_q_len_equals_k_len(document):
    assert_same_steps(trace_of(with_variant(document, mask="causal_lower_right")),
                      trace_of(with_variant(document, mask="causal")))


@settings(max_examples=VARIANT_EXAMPLES, deadline=None)
@given(variant_bases(), st.data())
def test_masked_rows_nan_is_nan_exactly_on_rows_that_see_no_key_and_zero_elsewhere(document, data):
    batch, heads, q_len, k_len = sizes_of(document)
    mask = data.draw(hnp.arrays(np.bool_, (batch, heads, q_len, k_len)))
    document["mask"] = mask.tolist()
    zero, nan = trace_of(document), trace_of(with_variant(document, masked_rows="nan"))
    blind = ~mask.any(axis=-1)  # (batch, heads, q_len): rows that see no key
    weights, zero_weights = full_axes(nan, "softmax"), full_axes(zero, "softmax")
    assert np.array_equal(np.isnan(weights).any(axis=-1), blind) and np.isnan(weights[blind]).all()
    assert (zero_weights[blind] == 0).all()
    for name in ("concat", "output") if "w_out" in document else ("output",):
        result, expected = full_axes(nan, name), full_axes(zero, name)
        if name == "output" and "w_out" in document:  # W_O mixes the heads: NaN when any head's row is
            rows = blind.any(axis=1)
        else:  # the heads side by side: head h's columns of a row are NaN when that head's row is
            result, expected = (a.reshape(batch, q_len, heads, -1).transpose(0, 2, 1, 3) for a in (result, expected))
            rows = blind
        assert np.array_equal(np.isnan(result).any(axis=-1), rows) and np.isnan(result[rows]).all(), name
        assert_close(result[~rows], expected[~rows], name)
    for name in set(zero.steps) - {"softmax", "concat", "output"}:
        assert_close(nan.steps[name].array, zero.steps[name].array, name)
    assert_close(weights[~blind], zero_weights[~blind], "softmax")
