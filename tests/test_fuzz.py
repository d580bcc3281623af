"""Fuzzing the command line: arbitrary bytes and arbitrary JSON as a problem document.

Whatever comes in, attncli exits 0 or 2, never with a traceback, and writes nothing anywhere.
CI runs a small budget; set ATTNCLI_FUZZ_EXAMPLES (e.g. 5000) for a long run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_cli import run

from attncli.keys import KNOWN_KEYS

EXAMPLES = int(os.environ.get("ATTNCLI_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

numbers = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, width=64), st.integers())
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                           st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                           max_leaves=30)
# matrices that are nearly right reach deeper into validation and the pipeline
rows = st.lists(st.lists(st.one_of(numbers, scalars), min_size=1, max_size=4), min_size=1, max_size=4)
documents = st.dictionaries(st.sampled_from(KNOWN_KEYS + ("zzz",)), st.one_of(rows, json_values), max_size=8)


def in_folder(folder: Path):
    """Run the example inside ``folder``; the original working directory comes back after."""
    previous = Path.cwd()
    os.chdir(folder)
    return previous


def assert_clean(result, folder: Path, before: set[str]):
    assert result.exit_code in (0, 2), (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    # one line per message (a JSON Lines stream may have one per bad line)
    assert all(line.startswith(("Error: ", "Warning: ")) for line in result.stderr.splitlines()), result.stderr
    if result.exit_code == 2:
        assert result.stderr.startswith("Error: ")
    assert {path.name for path in folder.iterdir()} == before


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("bytes")
    previous = in_folder(folder)
    try:
        for args in (["compute", "-", "-f", "json"], ["compute", "--lines", "-"],
                     ["compute", "--x", "-", "-f", "json"]):
            assert_clean(run(*args, stdin=data), folder, set())
    finally:
        os.chdir(previous)


@FUZZ
@given(st.one_of(json_values, documents), st.sampled_from([[], ["-f", "json"], ["--heads", "2"], ["--causal"],
                                                           ["--step", "output"], ["--scale", "none", "-f", "csv",
                                                                                  "-s", "softmax"]]))
def test_arbitrary_json_documents(tmp_path_factory, document, options):
    folder = tmp_path_factory.mktemp("json")
    previous = in_folder(folder)
    try:
        assert_clean(run("compute", "-", *options, stdin=json.dumps(document)), folder, set())
    finally:
        os.chdir(previous)
