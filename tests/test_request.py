"""attncli.request: what a user asked for, and the one check that the options go together."""

from __future__ import annotations

import subprocess
import sys

import pytest

from attncli import request as asked
from attncli.errors import ProblemError
from attncli.request import CheckRequest, ComputeRequest, Given, ShapesRequest, Shown, UsageError, check_options

FILE = Given("problem.json")
NO_SIZES = dict.fromkeys(("batch", "seq_len", "d_model", "heads", "context_len", "head_dim_v", "d_out"))


def usage_error(request) -> tuple[str, str]:
    with pytest.raises(UsageError) as caught:
        check_options(request)
    return caught.value.message, caught.value.flag


@pytest.mark.parametrize("request_, message, flag", [
    (ComputeRequest(Given()), "give a problem FILE, or the matrices with --x, --w-query, --w-key and --w-value",
     "FILE"),
    (ComputeRequest(Given(matrices={"w_query": "w.csv"})),
     "give a problem FILE, or the matrices with --x, --w-query, --w-key and --w-value", "FILE"),
    (ComputeRequest(FILE, ["q", "attn"]),
     "'attn' is not a step; the steps are q, k, v, q_normed, k_normed, q_rotated, k_rotated, scores, logits, "
     "capped, biased, softmax, averaged, concat, output; did you mean 'softmax'?",
     "--step"),
    (ComputeRequest(Given("in.jsonl", {"x": "x.csv"})), "matrix options do not combine with JSON Lines", "--lines"),
    (ComputeRequest(FILE, lines=True, shown=Shown("csv")), "JSON Lines are written as JSON lines", "--format"),
    (ComputeRequest(Given("IN.JSONL"), shown=Shown(view="heatmap")),
     "JSON Lines are written as JSON lines, not shown as pictures", "--view/--export-svg/--export-html"),
    (ComputeRequest(Given("in.jsonl"), shown=Shown(export_html="a.html")),
     "JSON Lines are written as JSON lines, not shown as pictures", "--view/--export-svg/--export-html"),
    (ComputeRequest(FILE, ["softmax"], Shown(view="heatmap")),
     "the heatmap shows the softmax weights; --step does not apply", "--step"),
    (ComputeRequest(FILE, shown=Shown("json", view="heatmap")),
     "the heatmap is a view: it goes to the terminal (and --export-svg/--export-html)", "--view"),
    (ComputeRequest(FILE, shown=Shown(output="out.txt", view="heatmap")),
     "the heatmap is a view: it goes to the terminal (and --export-svg/--export-html)", "--view"),
    (ComputeRequest(FILE, shown=Shown("npz", export_svg="a.svg")), "pictures record the table view",
     "--export-svg/--export-html"),
    (ComputeRequest(FILE, shown=Shown(output="out.json", export_html="a.html")), "pictures record the table view",
     "--export-svg/--export-html"),
    (ShapesRequest("problem.json", {**NO_SIZES, "d_model": 8, "heads": 2}),
     "a FILE brings its own sizes: give sizes or a FILE, not both", "--d-model"),
    (ShapesRequest(None, {**NO_SIZES, "seq_len": 4}), "give --seq-len and --d-model (or a problem FILE)", "--seq-len"),
    (ShapesRequest(None, NO_SIZES), "give --seq-len and --d-model (or a problem FILE)", "--seq-len"),
    (CheckRequest(FILE, "mine.json", atol=-1.0), "tolerances must be finite numbers of 0 or more", "--atol/--rtol"),
    (CheckRequest(FILE, "mine.json", rtol=float("inf")), "tolerances must be finite numbers of 0 or more",
     "--atol/--rtol"),
    (CheckRequest(FILE, "mine.json", atol=float("nan")), "tolerances must be finite numbers of 0 or more",
     "--atol/--rtol"),
    (ComputeRequest(Given("p.json", causal=True, causal_lower_right=True)),
     "--causal (top-left) is given too: give one of the two masks", "--causal-lower-right"),
    (CheckRequest(Given("p.json", causal=True, causal_lower_right=True), "mine.json"),
     "--causal (top-left) is given too: give one of the two masks", "--causal-lower-right"),
    (Given("p.json", causal=True, causal_lower_right=True),
     "--causal (top-left) is given too: give one of the two masks", "--causal-lower-right"),
    (asked.RandomRequest(4, 8, causal=True, causal_lower_right=True),
     "--causal (top-left) is given too: give one of the two masks", "--causal-lower-right"),
])
def test_options_that_do_not_go_together(request_, message, flag):
    assert usage_error(request_) == (message, flag)


def test_the_first_conflict_in_the_order_options_are_read_is_named():
    # no FILE before an unknown step, an unknown step before the heatmap's objection to --step
    assert usage_error(ComputeRequest(Given(), ["attn"], Shown(view="heatmap")))[1] == "FILE"
    assert usage_error(ComputeRequest(FILE, ["attn"], Shown(view="heatmap")))[1] == "--step"
    assert usage_error(ComputeRequest(Given("a.jsonl", {"x": "x.csv"}), shown=Shown("csv", view="heatmap"))) == (
        "matrix options do not combine with JSON Lines", "--lines")
    assert usage_error(ShapesRequest("p.json", NO_SIZES | {"d_out": 3, "batch": 2}))[1] == "--batch"


def test_options_that_go_together_pass():
    for request in (
        ComputeRequest(FILE),
        ComputeRequest(Given(matrices=dict.fromkeys(("x", "w_query", "w_key", "w_value"), "w.csv")), ["q", "k"],
                       Shown("csv", "out/")),
        ComputeRequest(FILE, None, Shown(view="heatmap", export_svg="a.svg", export_html="a.html")),
        ComputeRequest(FILE, ["output"], Shown("table", export_svg="a.svg")),
        ComputeRequest(FILE, ["output"], Shown("npz", "out.npz")),
        ComputeRequest(Given("a.jsonl"), ["output"], Shown("json", "out.jsonl"), strict=True),
        ComputeRequest(Given("-"), lines=True, shown=Shown(output="-")),
        ShapesRequest(None, {**NO_SIZES, "seq_len": 4, "d_model": 8}),
        ShapesRequest("p.json", NO_SIZES),
        CheckRequest(FILE, "-", atol=0.0, rtol=0.0),
        ComputeRequest(Given("p.json", causal_lower_right=True, kv_heads=2, rope="gptj", rope_theta=10.0, window=3,
                             softcap=5.0, alibi=True)),
        Given("p.json", causal=True, rope="neox"),
        asked.RandomRequest(4, 8, causal_lower_right=True, sinks=True, padding=True),
    ):
        assert check_options(request) is None


def test_standard_input_feeds_one_input_only():
    for request in (CheckRequest(Given("-"), "-"), ComputeRequest(Given("-", {"mask": "-"})),
                    ComputeRequest(Given(matrices={"x": "-", "w_query": "w.csv", "w_key": "-", "w_value": "v.csv"}))):
        with pytest.raises(ProblemError) as caught:
            check_options(request)
        assert (caught.value.source, caught.value.message) == ("<stdin>", "standard input (-) can feed only one input")
    assert check_options(ComputeRequest(Given(matrices={"x": "-", "w_query": "w.csv", "w_key": "k.csv",
                                                        "w_value": "v.csv"}))) is None


def test_a_binary_format_is_refused_on_a_terminal_only(monkeypatch):
    request = ComputeRequest(FILE, ["output"], Shown("npz"))
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert check_options(request) is None
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    with pytest.raises(ProblemError) as caught:
        check_options(request)
    assert (caught.value.source, caught.value.message) == (
        "--format npz", "is binary: write it with -o FILE.npz or redirect stdout")
    assert check_options(ComputeRequest(FILE, ["output"], Shown("npz", "out.npz"))) is None
    assert check_options(ComputeRequest(FILE, ["output"], Shown("json"))) is None


def test_json_lines_by_option_or_by_name():
    assert asked.is_lines(ComputeRequest(Given("-"), lines=True))
    assert asked.is_lines(ComputeRequest(Given("runs/Many.JSONL")))
    assert not asked.is_lines(ComputeRequest(Given("problem.json")))
    assert not asked.is_lines(ComputeRequest(Given(matrices={"x": "x.jsonl"})))


def test_requests_import_neither_typer_nor_rich_nor_numpy():
    code = ("import sys, attncli.request, attncli.app\n"
            "print(sorted(m for m in ('typer', 'rich', 'numpy') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_missing_required_matrix_option_is_named_as_an_option():
    with pytest.raises(ProblemError) as caught:
        check_options(ComputeRequest(Given(matrices={"x": "x.csv", "w_query": "w.csv", "w_key": "w.csv"})))
    assert caught.value.source is None
    assert caught.value.render(lambda field: f"<{field}>").startswith("missing <w_value> (the value weights")


def test_the_overrides_given_are_named_as_problem_from_documents_keywords():
    import inspect

    from attncli.problem import problem_from_document

    assert Given("p.json").overrides() == {}
    # a 0 is given (and refused by the core), as a False flag is not
    assert Given("p.json", window=0, softcap=0.0, kv_heads=0, alibi=False, causal=False).overrides() == {
        "kv_heads": 0, "window": 0, "softcap": 0.0}
    assert Given(heads=2, scale="none", causal=True, rope="gptj", rope_theta=5.0, alibi=True).overrides() == {
        "heads": 2, "scale": "none", "causal": True, "rope": "gptj", "rope_theta": 5.0, "alibi": True}
    keywords = [name for name, parameter in inspect.signature(problem_from_document).parameters.items()
                if parameter.kind == parameter.KEYWORD_ONLY]
    assert keywords == list(asked.OVERRIDES)


def test_a_message_about_an_options_value_names_the_option():
    def raised(message, given):
        with pytest.raises(ProblemError) as caught, asked.naming_options(given):
            raise ProblemError(message)
        return caught.value.render(lambda field: "--" + field.replace("_", "-")), asked.about_option(caught.value)

    assert raised("window is 0; it must be at least 1", {"window": 0}) == (
        "--window is 0; it must be at least 1", True)
    assert raised("rope.theta is -1.0; it must be a positive finite number", ["rope", "rope_theta"]) == (
        "--rope-theta is -1.0; it must be a positive finite number", True)
    # a message about another key, or about a key no option gave, is left alone
    assert raised("window is 0; it must be at least 1", {"softcap": 2.0}) == (
        "window is 0; it must be at least 1", False)
    assert raised("windows are 0", {"window": 0}) == ("windows are 0", False)
    assert raised("heads is 3 but w_query holds 2 heads", {"heads": 3}) == (
        "heads is 3 but w_query holds 2 heads", False)
