"""The bad-input corpus (tests/bad_inputs/, made by make_corpus.py there): each malformed input,
run through the real CLI, exits 2 with one `Error:` line saying what is wrong, and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import run

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES = json.loads((CORPUS / "cases.json").read_text())


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name):
    case = CASES[name]
    if "problem" in case:
        problem = CORPUS / case["problem"]
        args = [problem, case["option"], CORPUS / name] if "option" in case else [problem, *case["args"]]
        source = CORPUS / name if "option" in case else problem
    else:
        args = [CORPUS / name, *case["args"]]
        source = CORPUS / name
    result = run("compute", *args)
    expected = f"Error: {case['message']}\n" if case.get("usage") else f"Error: {source}: {case['message']}\n"
    assert result.exit_code == 2, result.output
    assert result.stderr == expected
    # a stream keeps one output line per input line: null for a bad one
    assert result.stdout == ("null\n" if name.endswith(".jsonl") else "") and "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
