"""One query's numbers (explain.py): read from the trace and the stage functions, never recomputed
apart; and the index errors, naming the field for the CLI to show as a flag."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from conftest import DATA, SAMPLES

from attncli.errors import ProblemError
from attncli.explain import explain_query
from attncli.generate import random_document
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.view.numbers import explanation_sections

CLASSIC = problem_from_document(json.loads((SAMPLES / "classic.json").read_text()))


def explained(problem, **where):
    return explain_query(problem, attention(problem), **where)


def test_the_classic_first_query_worked_out_by_hand():
    row = explained(CLASSIC, query=0)
    np.testing.assert_array_equal(row.query_vector, [1.0, 0.0, 2.0])
    np.testing.assert_array_equal(row.key_vectors, [[0.0, 1.0, 1.0], [4.0, 4.0, 0.0], [2.0, 3.0, 1.0]])
    np.testing.assert_array_equal(row.scores, [2.0, 4.0, 4.0])
    assert row.logits is None  # unscaled and unmasked: no logits step
    assert row.shift == 4.0
    np.testing.assert_array_equal(row.exponentials, [math.exp(-2.0), 1.0, 1.0])
    assert row.total == 2.0 + math.exp(-2.0)
    np.testing.assert_array_equal(row.values, [[1.0, 2.0, 3.0], [2.0, 8.0, 0.0], [2.0, 6.0, 3.0]])
    np.testing.assert_array_equal(row.output, [1.9366210616669624, 6.683105308334811, 1.5950684074995565])
    assert (row.query, row.batch, row.head, row.keys, row.visible) == (0, None, None, (0, 1, 2), [0, 1, 2])
    assert (row.scale_rule, row.scale_factor, row.head_dim, row.heads, row.w_out, row.b_out) == (
        "none", 1.0, 3, 1, False, False)


def test_one_key_asked_for():
    assert explained(CLASSIC, query=2, key=1).keys == (1,)


def test_the_numbers_are_the_traces_in_a_batched_multi_head_problem():
    document = random_document(seq_len=4, d_model=6, heads=2, batch=2, causal=True, bias=True, out_proj=True, seed=11)
    problem = problem_from_document(document)
    trace = attention(problem)
    row = explain_query(problem, trace, query=2, head=1, batch=1)
    steps = {name: step.array for name, step in trace.steps.items()}
    np.testing.assert_array_equal(row.query_vector, steps["q"][1, 1, 2])
    np.testing.assert_array_equal(row.key_vectors, steps["k"][1, 1])
    np.testing.assert_array_equal(row.values, steps["v"][1, 1])
    np.testing.assert_array_equal(row.scores, steps["scores"][1, 1, 2])
    np.testing.assert_array_equal(row.logits, steps["logits"][1, 1, 2])
    np.testing.assert_array_equal(row.weights, steps["softmax"][1, 1, 2])
    # this head's block of the heads side by side
    np.testing.assert_array_equal(row.output, steps["concat"][1, 2, 3:6])
    np.testing.assert_allclose(row.output, row.weights @ row.values, rtol=1e-12)
    np.testing.assert_array_equal(row.allowed, [True, True, True, False])
    assert row.visible == [0, 1, 2] and row.shift == row.logits[:3].max()
    assert row.exponentials[3] == 0.0
    np.testing.assert_allclose(row.exponentials / row.total, row.weights, rtol=1e-15)
    assert (row.batch, row.head, row.heads, row.w_out, row.b_out) == (1, 1, 2, True, True)
    assert (row.scale_rule, row.scale_factor, row.head_dim) == ("sqrt", 1 / math.sqrt(3), 3)


def test_without_w_out_the_row_is_read_from_the_output():
    problem = problem_from_document(random_document(seq_len=3, d_model=4, heads=2, seed=12))
    trace = attention(problem)
    row = explain_query(problem, trace, query=1, head=1)
    assert "concat" not in trace.steps
    np.testing.assert_array_equal(row.output, trace.steps["output"].array[1, 2:4])
    assert (row.batch, row.head) == (None, 1)


def test_a_query_that_may_see_no_key():
    problem = problem_from_document({**random_document(seq_len=2, d_model=2, seed=13), "mask": [[1, 1], [0, 0]]})
    row = explained(problem, query=1)
    assert row.shift is None and row.total == 0.0 and row.visible == []
    np.testing.assert_array_equal(row.logits, [-np.inf, -np.inf])
    np.testing.assert_array_equal(row.exponentials, [0.0, 0.0])
    np.testing.assert_array_equal(row.weights, [0.0, 0.0])
    np.testing.assert_array_equal(row.output, [0.0, 0.0])


def index_error(problem, **where) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        explained(problem, **where)
    return caught.value


def test_an_index_out_of_range_names_the_field_and_the_range():
    error = index_error(CLASSIC, query=3)
    assert error.render(lambda field: f"--{field}") == "--query 3 is out of range: there are 3 queries (0 to 2)"
    assert str(error) == "query 3 is out of range: there are 3 queries (0 to 2)"
    assert str(index_error(CLASSIC, query=0, key=5)) == "key 5 is out of range: there are 3 keys (0 to 2)"
    assert str(index_error(CLASSIC, query=-1)) == "query -1 is out of range: there are 3 queries (0 to 2)"
    assert str(index_error(CLASSIC, query=0, head=1)) == "head 1 is out of range: there is 1 head (0)"
    assert str(index_error(CLASSIC, query=0, batch=2)) == "batch 2 is out of range: there is 1 batch item (0)"


def test_one_query_is_named_in_the_singular():
    one_token = problem_from_document(random_document(seq_len=1, d_model=2, seed=14))
    assert str(index_error(one_token, query=1)) == "query 1 is out of range: there is 1 query (0)"


# --- the attention variants of issue 11: the numbers, and the words that write them out ---------------

GOLDEN = {case["name"]: case["document"] for case in json.loads((DATA / "modern_golden.json").read_text())["cases"]}
NUMBER = r"-?\d+(?:\.\d+)?(?:e[-+]\d+)?"
TIGHT = 1e-11


def case(name, **changes):
    problem = problem_from_document({**GOLDEN[name], **changes})
    return problem, attention(problem)


def lines_of(problem, trace, precision=15, **where):
    """The explanation as lines (headings unindented), every number with ``precision`` decimals."""
    lines = []
    for section in explanation_sections(explain_query(problem, trace, **where), precision):
        lines += [section.heading, *section.lines]
    return lines


def line_starting(lines, prefix):
    return next(line for line in lines if line.strip().startswith(prefix))


def numbers(text):
    return [float(found) for found in re.findall(NUMBER, text)]


def after_last_equals(lines, prefix):
    return numbers(line_starting(lines, prefix).split("=")[-1])


def full(trace, name):
    """A step's array with batch and heads axes, as explain reads it."""
    from attncli.explain import all_axes
    return all_axes(trace, name)


@pytest.mark.parametrize("name", ["rope_neox_partial", "rope_gptj_partial", "rope_positions_cross",
                                  "rope_neox_inv_freq"])
def test_rope_spells_out_the_rotation_of_the_querys_and_the_keys_pairs(name):
    problem, trace = case(name)
    query, key, head = problem.x.shape[1] - 1, 1, 1
    row = explain_query(problem, trace, query, key=key, head=head, batch=0)
    turn = row.query_rotation
    position = problem.query_positions[query]
    assert turn.position == position and turn.style == problem.rope.style
    np.testing.assert_array_equal(turn.before, full(trace, "q")[0, head, query])
    np.testing.assert_array_equal(turn.after, full(trace, "q_rotated")[0, head, query])
    np.testing.assert_array_equal(turn.angles, position * problem.rope.inv_freq)
    a, b = turn.before[turn.pairs[:, 0]], turn.before[turn.pairs[:, 1]]
    np.testing.assert_allclose(turn.after[turn.pairs[:, 0]], a * turn.cos - b * turn.sin, atol=1e-15)
    np.testing.assert_allclose(turn.after[turn.pairs[:, 1]], b * turn.cos + a * turn.sin, atol=1e-15)
    # neox pairs dim i with i + rotary_dim/2, gptj 2i with 2i + 1
    half = problem.rope.rotary_dim // 2
    expected_pairs = [[i, i + half] for i in range(half)] if problem.rope.style == "neox" else [
        [2 * i, 2 * i + 1] for i in range(half)]
    assert turn.pairs.tolist() == expected_pairs
    assert row.key_rotation.position == problem.key_positions[key]
    np.testing.assert_array_equal(row.key_rotation.after, full(trace, "k_rotated")[0, head, key])

    lines = lines_of(problem, trace, query=query, key=key, head=head)
    where = f"batch 0, head {head}" if problem.batched else f"head {head}"
    assert lines[0].startswith(f"Query {query} ({where}): RoPE of the query vector: each pair turned by its "
                               f"position {position} × its frequency ({problem.rope.style}: ")
    for n, (first, second) in enumerate(expected_pairs):
        said = numbers(line_starting(lines, f"pair {n} (dims {first}, {second}):").split(":", 1)[1])
        # angle = position × inv_freq = angle, cos, sin
        np.testing.assert_allclose(said, [position, turn.inv_freq[n], turn.angles[n], turn.cos[n], turn.sin[n]],
                                   atol=TIGHT)
    turned = [line for line in lines if line.strip().startswith("(a·cos - b·sin")]
    for n, line in enumerate(turned[:half]):  # the query's pairs, then the key's
        first, second = expected_pairs[n]
        np.testing.assert_allclose(numbers(line.split("=")[-1]), full(trace, "q_rotated")[0, head, query,
                                                                                          [first, second]], atol=TIGHT)
    np.testing.assert_allclose(after_last_equals(lines, f"rotated q[{query}] ="),
                               full(trace, "q_rotated")[0, head, query], atol=TIGHT)
    np.testing.assert_allclose(after_last_equals(lines, f"rotated k[{key}] ="),
                               full(trace, "k_rotated")[0, head, key], atol=TIGHT)
    np.testing.assert_allclose(after_last_equals(lines, f"q[{query}] ="), full(trace, "q_rotated")[0, head, query],
                               atol=TIGHT)
    if problem.rope.rotary_dim < problem.head_dim:
        assert f"  dims {problem.rope.rotary_dim} and 5 pass through (rotary_dim 4)" in [
            "  " + line for line in lines]


def test_rope_elides_the_middle_pairs_of_a_long_head():
    document = random_document(seq_len=3, d_model=32, seed=21)
    problem = problem_from_document({**document, "rope": "gptj"})
    lines = lines_of(problem, attention(problem), precision=4, query=2)
    pairs = [line for line in lines if line.startswith("pair ")]
    assert [line.split(":")[0] for line in pairs] == [
        "pair 0 (dims 0, 1)", "pair 1 (dims 2, 3)", "pair 2 (dims 4, 5)",
        "pair 13 (dims 26, 27)", "pair 14 (dims 28, 29)", "pair 15 (dims 30, 31)"]
    assert lines[lines.index(pairs[2]) + 2] == "…"


@pytest.mark.parametrize("name", ["gqa_batched", "mqa_kv_heads_1", "mistral_gqa_rope_window"])
def test_grouped_query_heads_read_their_key_value_head(name):
    problem, trace = case(name)
    groups = problem.heads // problem.kv_heads
    k_slot, v_slot = ("k_rotated" if problem.rope else "k"), "v"
    batch = problem.x.shape[0] - 1
    for head in range(problem.heads):
        row = explain_query(problem, trace, 2, key=1, head=head, batch=batch)
        assert row.kv_head == head // groups
        np.testing.assert_array_equal(row.key_vectors, full(trace, k_slot)[batch, head // groups])
        np.testing.assert_array_equal(row.values, full(trace, v_slot)[batch, head // groups])
        np.testing.assert_allclose(row.scores, row.key_vectors @ row.query_vector, atol=1e-12)
        np.testing.assert_array_equal(row.scores, full(trace, "scores")[batch, head, 2])
        lines = lines_of(problem, trace, query=2, key=1, head=head, batch=batch)
        where = f"(batch {batch}, head {head}, key/value head {head // groups})" if problem.batched else (
            f"(head {head}, key/value head {head // groups})")
        assert lines[0].startswith(f"Query 2 {where}: ")
        np.testing.assert_allclose(after_last_equals(lines, "k[1] ="), row.key_vectors[1], atol=TIGHT)
        np.testing.assert_allclose(after_last_equals(lines, "q[2]·k[1] ="), [row.scores[1]], atol=TIGHT)
        np.testing.assert_allclose(after_last_equals(lines, "= ["), row.weights @ row.values, atol=TIGHT)


def test_without_grouping_no_key_value_head_is_named():
    problem, trace = case("rope_neox_unbatched")
    assert explain_query(problem, trace, 1, head=1).kv_head is None
    assert lines_of(problem, trace, query=1, head=1)[0].startswith("Query 1 (head 1): ")


@pytest.mark.parametrize("name", ["qk_norm_head", "qk_norm_all", "qwen3_gqa_rope_qknorm"])
def test_qk_norm_writes_the_mean_of_squares_the_factor_and_the_weight(name):
    problem, trace = case(name)
    head, query, key = problem.heads - 1, 2, 1
    kv_head = head // (problem.heads // problem.kv_heads)
    row = explain_query(problem, trace, query, key=key, head=head)
    norm = row.query_norm
    projected = full(trace, "q")[0, :, query]
    squared = projected[head] if problem.qk_norm.over == "head" else projected.reshape(-1)
    assert norm.mean_square == pytest.approx(np.mean(squared**2), rel=1e-14)
    assert norm.factor == pytest.approx(1 / math.sqrt(np.mean(squared**2) + problem.qk_norm.eps), rel=1e-14)
    np.testing.assert_allclose(norm.before * norm.factor * norm.weight, full(trace, "q_normed")[0, head, query],
                               rtol=1e-14)
    np.testing.assert_array_equal(row.key_norm.after, full(trace, "k_normed")[0, kv_head, key])

    lines = lines_of(problem, trace, query=query, key=key, head=head)
    count = len(squared)
    over = f"its {count} values" if problem.qk_norm.over == "head" else f"its {count} values in every head"
    assert lines[0].endswith(f"QK-norm of the query vector (RMSNorm over {over})")
    np.testing.assert_allclose(after_last_equals(lines, f"projection q[{query}] ="), projected[head], atol=TIGHT)
    # mean of squares = (a² + (-b)² + …) / count = mean
    squares = numbers(line_starting(lines, "mean of squares =").split("=")[1])
    assert squares == pytest.approx([*squared, count], abs=TIGHT)
    assert after_last_equals(lines, "mean of squares =") == pytest.approx([norm.mean_square], abs=TIGHT)
    assert after_last_equals(lines, "1/√(mean of squares") == pytest.approx([norm.factor], abs=TIGHT)
    np.testing.assert_allclose(after_last_equals(lines, "weight ="), norm.weight, atol=TIGHT)
    np.testing.assert_allclose(after_last_equals(lines, f"normed q[{query}] ="),
                               full(trace, "q_normed")[0, head, query], atol=TIGHT)
    np.testing.assert_allclose(after_last_equals(lines, f"normed k[{key}] ="),
                               full(trace, "k_normed")[0, kv_head, key], atol=TIGHT)


@pytest.mark.parametrize("name", ["softcap_unbatched", "softcap_batched_causal", "gemma2_softcap_window_gqa"])
def test_the_soft_cap_per_key(name):
    problem, trace = case(name)
    query, head = problem.x.shape[1] - 1, 1
    row = explain_query(problem, trace, query, head=head)
    np.testing.assert_array_equal(row.capped, full(trace, "capped")[0, head, query])
    lines = lines_of(problem, trace, query=query, head=head)
    cap = problem.softcap
    assert line_starting(lines, "capped = ").startswith(f"capped = {cap:g}·tanh(x / {cap:g})")
    for j in range(problem.context.shape[1]):
        line = line_starting(lines, f"capped[{j}] =")
        if not row.allowed[j]:
            assert line == f"capped[{j}] = −∞ (masked)"
            continue
        said_cap, logit, said_cap_again, capped = numbers(line.split("=", 1)[1])
        assert said_cap == said_cap_again == cap
        assert logit == pytest.approx(full(trace, "logits")[0, head, query, j], abs=TIGHT)
        assert capped == pytest.approx(full(trace, "capped")[0, head, query, j], abs=TIGHT)
        assert capped == pytest.approx(cap * math.tanh(logit / cap), abs=TIGHT)


def alibi_and_bias():
    """ALiBi with given positions and a bias with a −∞ cell, on two heads."""
    document = dict(GOLDEN["alibi_positions"])
    q_len, k_len = len(document["positions"]["query"]), len(document["positions"]["key"])
    rng = np.random.default_rng(5)
    bias = np.round(rng.normal(size=(q_len, k_len)), 3).tolist()
    bias[1][0] = None  # −∞
    document["bias"] = bias
    return problem_from_document(document)


def test_alibi_and_bias_per_key():
    problem = alibi_and_bias()
    trace = attention(problem)
    query, head = 1, 1
    row = explain_query(problem, trace, query, head=head)
    slope, position = problem.alibi[head], problem.query_positions[query]
    np.testing.assert_array_equal(row.alibi, -slope * (position - problem.key_positions))
    np.testing.assert_array_equal(row.bias, problem.bias[0, 0, query])
    np.testing.assert_array_equal(row.biased, full(trace, "biased")[0, head, query])
    assert not row.allowed[0]  # the −∞ bias cell

    lines = lines_of(problem, trace, query=query, head=head)
    assert line_starting(lines, "ALiBi:") == (
        f"ALiBi: -slope×(query position - key position), head 1's slope {slope:.15f}, query 1 at position {position}")
    assert "Bias" not in lines and "ALiBi and bias added, and mask" in lines
    assert "masked keys (−∞, weight 0): 0" in lines and "biased[0] = −∞ (masked)" in lines
    for j in range(1, problem.context.shape[1]):
        # biased[j] = logit - slope×(p - p_j) + bias = logit + alibi + bias = biased
        said = numbers(line_starting(lines, f"biased[{j}] =").split("=", 1)[1].replace(" - ", " + -"))
        logit, minus_slope, p, minus_pj, bias, logit_again, alibi, bias_again, biased = said
        assert logit == logit_again == pytest.approx(full(trace, "logits")[0, head, query, j], abs=TIGHT)
        assert (-minus_slope, p, -minus_pj) == (pytest.approx(slope, abs=TIGHT), position, problem.key_positions[j])
        assert alibi == pytest.approx(-slope * (position - problem.key_positions[j]), abs=TIGHT)
        assert bias == bias_again == pytest.approx(problem.bias[0, 0, query, j], abs=TIGHT)
        assert biased == pytest.approx(full(trace, "biased")[0, head, query, j], abs=TIGHT)
        assert biased == pytest.approx(logit + alibi + bias, abs=TIGHT)


@pytest.mark.parametrize("name", ["sinks_unbatched", "sinks_batched_causal", "gptoss_sinks_window_gqa_biases"])
def test_the_sink_joins_the_denominator_and_the_row_sums_to_less_than_1(name):
    problem, trace = case(name)
    query, head = 2, 1
    row = explain_query(problem, trace, query, head=head)
    sink = problem.sinks[head]
    visible = row.visible
    assert row.sink == sink and row.shift == max(sink, row.softmax_input[visible].max())
    assert row.sink_term == math.exp(sink - row.shift)
    np.testing.assert_allclose(row.exponentials / row.total, row.weights, rtol=1e-15)
    assert row.weights.sum() < 1

    lines = lines_of(problem, trace, query=query, head=head)
    assert "Softmax over the keys and the sink" in lines
    said_sink, said_shift, term = numbers(line_starting(lines, "the sink: e^(").split("(head")[0])
    assert (said_sink, said_shift, term) == (pytest.approx(sink, abs=TIGHT), pytest.approx(row.shift, abs=TIGHT),
                                             pytest.approx(row.sink_term, abs=TIGHT))
    total_terms = numbers(line_starting(lines, "sum =").split("=")[1].replace("(sink)", ""))
    assert total_terms == pytest.approx([*row.exponentials[visible], row.sink_term], abs=TIGHT)
    assert after_last_equals(lines, "sum =") == pytest.approx([row.total], abs=TIGHT)
    weights = full(trace, "softmax")[0, head, query]
    for j in visible:
        assert after_last_equals(lines, f"weight[{j}] =") == pytest.approx([weights[j]], abs=TIGHT)
    summed, *share = numbers(line_starting(lines, "the weights sum to").replace("less than 1", ""))
    assert summed == pytest.approx(weights.sum(), abs=TIGHT)
    assert share[-1] == pytest.approx(1 - weights.sum(), abs=TIGHT)


def test_a_sink_larger_than_every_logit_is_the_shift():
    problem, trace = case("gptoss_sinks_window_gqa_biases", sinks=[9.0, 9.0, 9.0, 9.0])
    lines = lines_of(problem, trace, precision=4, query=3, head=0)
    assert "subtract the largest of the logits and the sink, 9 (the sink), so no exponential overflows" in lines


@pytest.mark.parametrize(("name", "query"), [("window_causal", 4), ("window_alone", 3), ("window_lower_right", 1),
                                             ("mistral_decode_step", 0)])
def test_the_window_says_which_positions_the_query_sees(name, query):
    problem, trace = case(name)
    row = explain_query(problem, trace, query, head=1)
    window, position = problem.window, problem.query_positions[query]
    np.testing.assert_array_equal(row.allowed, full(trace, "softmax")[0, 1, query] != 0)
    in_window = (problem.key_positions > position - window) & (problem.key_positions <= position)
    assert not (row.allowed & ~in_window).any()
    lines = lines_of(problem, trace, query=query, head=1)
    assert (f"window {window}: query {query} at position {position} sees keys at positions "
            f"{position - window + 1} to {position}") in lines
    masked = [j for j in range(len(row.allowed)) if not row.allowed[j]]
    assert f"masked keys (−∞, weight 0): {', '.join(map(str, masked))}" in lines
    for j in row.visible:
        assert after_last_equals(lines, f"weight[{j}] =") == pytest.approx([row.weights[j]], abs=TIGHT)


def test_a_nan_row_is_said_plainly():
    problem, trace = case("masked_rows_nan")
    row = explain_query(problem, trace, 1, batch=1)
    assert row.visible == [] and np.isnan(row.weights).all() and np.isnan(row.output).all()
    lines = lines_of(problem, trace, query=1, batch=1)
    assert lines[-2:] == ["Softmax", 'every key is masked and masked_rows is "nan": every weight is NaN and this '
                                     "output row is NaN"]


def test_a_query_that_sees_no_key_but_the_sink_gets_zeros():
    problem, trace = case("masked_rows_nan", sinks=[0.5, -1.0])
    assert lines_of(problem, trace, query=1, batch=1)[-1] == (
        "every key is masked: only the sink is left, and its weight is dropped, so every weight is 0 and this "
        "output row is 0")
