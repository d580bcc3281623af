"""Tokens (issue 14): labels of the queries and keys in every table, the heatmap and explain; checked
as the document's other keys are; carried by the JSON output's meta; never a number changed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from rich.console import Console
from test_cli import assert_one_line_error, run, write

from attncli.errors import ProblemError
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.view import print_heatmaps, print_trace
from attncli.view.labels import shown_token

CLASSIC = {
    "x": [[1, 0, 1, 0], [0, 2, 0, 2], [1, 1, 1, 1]],
    "w_query": [[1, 0, 1], [1, 0, 0], [0, 0, 1], [0, 1, 1]],
    "w_key": [[0, 0, 1], [1, 1, 0], [0, 1, 0], [1, 1, 0]],
    "w_value": [[0, 2, 0], [0, 3, 0], [1, 0, 3], [1, 1, 0]],
    "scale": "none",
}
TOKENS = ["The", "cat", "sat"]


def problem(**changes):
    return problem_from_document({**CLASSIC, **changes})


# --- validation -------------------------------------------------------------------------------------

def test_tokens_label_the_queries_and_in_self_attention_the_keys():
    tokens = problem(tokens=TOKENS).tokens
    assert tokens.query_labels() == tokens.key_labels() == ("The", "cat", "sat")
    assert problem().tokens is None


def test_batched_tokens_are_one_list_for_every_item_or_one_per_item():
    batched = [CLASSIC["x"], CLASSIC["x"]]
    shared = problem(x=batched, tokens=TOKENS).tokens
    assert shared.query_labels(0) == shared.query_labels(1) == ("The", "cat", "sat")
    per_item = problem(x=batched, tokens=[TOKENS, ["A", "dog", "<pad>"]]).tokens
    assert per_item.query_labels(1) == ("A", "dog", "<pad>") and per_item.key_labels(0) == ("The", "cat", "sat")
    assert per_item.as_dict() == {"tokens": [TOKENS, ["A", "dog", "<pad>"]]}


def test_context_tokens_label_cross_attentions_keys():
    context = [[1, 0, 0, 0], [0, 1, 0, 0]]
    tokens = problem(context=context, tokens=TOKENS, context_tokens=["Le", "chat"]).tokens
    assert tokens.query_labels() == ("The", "cat", "sat") and tokens.key_labels() == ("Le", "chat")
    # only one side labelled: the other keeps its indices
    assert problem(context=context, tokens=TOKENS).tokens.key_labels() is None
    assert problem(context=context, context_tokens=["Le", "chat"]).tokens.query_labels() is None


def test_appended_keys_are_labelled_by_their_names():
    tokens = problem(tokens=TOKENS, bias_k=[1, 0, 0], bias_v=[0, 1, 0], add_zero_attn=True).tokens
    assert tokens.key_labels() == ("The", "cat", "sat", "bias_k", "zero")
    assert tokens.query_labels() == ("The", "cat", "sat")


@pytest.mark.parametrize(("changes", "message"), [
    ({"tokens": ["The", "cat", "sat", "on"]}, "tokens has 4 strings but x has 3 queries: one token per query"),
    ({"tokens": {"0": "The"}}, "tokens is an object; it is a list of strings, one per query"),
    ({"tokens": ["The", True, "sat"]}, "tokens[1] is true; a token is a string"),
    ({"x": [[1, 0, 1, 0]], "tokens": []}, "tokens has 0 strings but x has 1 query: one token per query"),
    ({"x": [CLASSIC["x"]] * 2, "tokens": 3},
     "tokens is 3; it is a list of strings, one per query (or one such list per batch item)"),
    ({"x": [CLASSIC["x"]] * 2, "tokens": [TOKENS, ["a", "b", 1]]}, "tokens[1][2] is 1; a token is a string"),
])
def test_wrong_tokens_are_one_line_naming_the_key(changes, message):
    with pytest.raises(ProblemError) as caught:
        problem(**changes)
    assert caught.value.message == message


def test_a_wrong_token_on_the_command_line_is_one_error_line(tmp_path):
    path = write(tmp_path, "p.json", json.dumps({**CLASSIC, "tokens": ["The", "cat"]}))
    assert_one_line_error(run("compute", path),
                          f"{path}: tokens has 2 strings but x has 3 queries: one token per query")


# --- numbers and files --------------------------------------------------------------------------------

def test_tokens_never_change_a_number_and_the_json_meta_carries_them(tmp_path):
    plain = write(tmp_path, "plain.json", json.dumps(CLASSIC))
    labelled = write(tmp_path, "labelled.json", json.dumps({**CLASSIC, "tokens": TOKENS}))
    without, with_tokens = (json.loads(run("compute", path, "--format", "json").stdout) for path in (plain, labelled))
    assert "tokens" not in without["meta"]
    assert with_tokens["meta"].pop("tokens") == TOKENS
    assert with_tokens == without
    csv = [run("compute", path, "--format", "csv", "-s", "softmax").stdout for path in (plain, labelled)]
    assert csv[0] == csv[1] and csv[0].startswith("0.")


def test_the_meta_of_cross_attention_carries_both_lists(tmp_path):
    document = {**CLASSIC, "context": [[1, 0, 0, 0], [0, 1, 0, 0]], "tokens": TOKENS, "context_tokens": ["Le", "chat"]}
    meta = json.loads(run("compute", write(tmp_path, "c.json", json.dumps(document)), "-f", "json").stdout)["meta"]
    assert (meta["tokens"], meta["context_tokens"]) == (TOKENS, ["Le", "chat"])


def test_each_line_of_a_stream_carries_its_own_tokens(tmp_path):
    lines = [json.dumps({**CLASSIC, "tokens": tokens}) for tokens in (TOKENS, ["A", "dog", "ran"])] + [
        json.dumps(CLASSIC)]
    result = run("compute", write(tmp_path, "s.jsonl", "\n".join(lines) + "\n"), "-s", "output")
    metas = [json.loads(line)["meta"] for line in result.stdout.splitlines()]
    assert [meta.get("tokens") for meta in metas] == [TOKENS, ["A", "dog", "ran"], None]


# --- the views ----------------------------------------------------------------------------------------

def tables(document, width=100, steps=("softmax",)):
    trace = attention(problem_from_document(document))
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None, width=width)
    print_trace(trace, trace.select(list(steps)), 4, console=console)
    return buffer.getvalue()


def test_the_tables_show_the_tokens_beside_the_indices():
    out = tables({**CLASSIC, "tokens": TOKENS}, steps=("q", "k", "softmax"))
    assert "│ 0 The     │ 1 │ 0 │ 2 │" in out  # Q's rows
    assert "│ 2 sat   │ 2 │ 3 │ 1 │" in out  # K's rows: the keys are the tokens
    assert "┃           ┃         0 ┃      1 ┃      2 ┃\n┃ query╲key ┃       The ┃    cat ┃    sat ┃" in out
    assert "│ 1 cat     │ 6.034e-06 │ 0.9820 │ 0.0180 │" in out


def test_cross_attention_labels_its_keys_with_the_context_tokens_and_appended_keys_by_name():
    document = {**CLASSIC, "tokens": TOKENS, "add_zero_attn": True}
    out = tables(document, steps=("k",))
    assert "│ 2 sat   │ 2 │ 3 │ 1 │\n│ 3 zero  │ 0 │ 0 │ 0 │" in out
    cross = tables({**CLASSIC, "context": [[1, 0, 0, 0], [0, 1, 0, 0]], "context_tokens": ["Le", "chat"]})
    assert "┃ query╲key ┃     Le ┃   chat ┃" in cross  # keys by token
    assert "│         0 │ 0.7311 │ 0.2689 │" in cross  # queries without tokens: their indices


def test_markup_cjk_subword_marks_and_line_breaks_print_literally():
    tokens = ["[bold]x[/bold]", "▁the", "猫が座った"]
    out = tables({**CLASSIC, "tokens": tokens})
    assert "[bold]x[/bo…" in out and "▁the" in out and "猫が座った" in out
    assert shown_token("a\nb") == "a\\nb" and shown_token("") == '""' and shown_token("\u200b") == "\\u200b"
    assert shown_token("supercalifragilistic") == "supercalifr…"
    assert shown_token("猫が座った場所です") == "猫が座った…"  # 11 cells: a sixth wide character would make 13


def test_long_tokens_in_a_narrow_terminal_are_cut_never_the_numbers():
    rng = np.random.default_rng(3)
    document = {"x": rng.normal(size=(12, 3)).tolist(), **{
        name: rng.normal(size=(3, 3)).tolist() for name in ("w_query", "w_key", "w_value")},
        "tokens": [f"antidisestablishmentarianism{i}" for i in range(12)]}
    out = tables(document, width=60)
    trace = attention(problem_from_document(document))
    table_lines = [line for line in out.splitlines() if line[:1] in "┏┃┡│└"]
    assert max(len(line) for line in table_lines) <= 60
    assert "0 antidisesta…" in out and "middle elided" in out
    weight = trace.steps["softmax"].array[11, 11]
    assert f"{weight:.4f}" in out.splitlines()[-3]  # the last row's last cell, whole


def heatmap(document, colour):
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=80, no_color=not colour,
                      color_system="truecolor" if colour else None)
    print_heatmaps(attention(problem_from_document(document)), console=console)
    return buffer.getvalue()


def test_the_heatmap_lists_the_tokens_and_without_colour_labels_its_rows():
    document = {**CLASSIC, "tokens": ["The", "猫", "[red]sat"], "mask": "causal"}
    plain = heatmap(document, colour=False).splitlines()
    assert [line.rstrip() for line in plain[3:6]] == ["0 The      █··", "1 猫        █·", "2 [red]sat  █"]
    assert plain[6] == "tokens: 0 The · 1 猫 · 2 [red]sat"
    assert "tokens: 0 The · 1 猫 · 2 [red]sat" in heatmap(document, colour=True)


def test_explain_names_the_query_and_the_keys_by_token(tmp_path):
    path = write(tmp_path, "p.json", json.dumps({**CLASSIC, "tokens": TOKENS, "mask": "causal"}))
    out = run("explain", path, "--query", "1").stdout
    assert out.splitlines()[0] == "Query 1 “cat”: its query vector and the key vectors"
    assert "  k[0] “The” = [0, 1, 1]" in out
    assert "  masked keys (−∞, weight 0): 2 “sat”" in out
    assert "  weight[1] “cat” = 1 / 1.0000 = 1.0000" in out


# --- random --tokens ------------------------------------------------------------------------------

def test_random_tokens_label_the_rows_and_leave_the_numbers_as_without():
    plain = json.loads(run("random", "--seq-len", "4", "--d-model", "4", "--seed", "1").stdout)
    labelled = json.loads(run("random", "--seq-len", "4", "--d-model", "4", "--seed", "1", "--tokens").stdout)
    assert labelled.pop("tokens") == ["saw", "mat", "ran", "a"]
    assert labelled == plain
    assert "tokens" not in plain  # a careful user's pipeline sees the same documents as before


def test_random_tokens_mark_padded_keys_per_batch_item_and_a_contexts_keys_apart():
    batched = json.loads(run("random", "--seq-len", "4", "--d-model", "4", "--seed", "1", "--tokens", "--batch", "2",
                             "--padding").stdout)
    assert batched["padding"] == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batched["tokens"] == [["a", "in", "house", "sea"], ["a", "in", "<pad>", "<pad>"]]
    cross = json.loads(run("random", "--seq-len", "4", "--d-model", "4", "--seed", "1", "--tokens", "--context-len",
                           "3", "--padding").stdout)
    assert cross["tokens"] == ["ran", "we", "saw", "by"] and cross["context_tokens"] == ["ran", "sea", "<pad>"]
    for document in (batched, cross):  # valid problems, whose meta carries them
        meta = attention(problem_from_document(document)).meta.as_dict()
        assert meta["tokens"] == document["tokens"] and meta.get("context_tokens") == document.get("context_tokens")
