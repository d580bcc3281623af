"""What every command prints, piped: the layout of the views' lines (see also test_view.py)."""

from __future__ import annotations

import json

import pytest
from conftest import SAMPLES
from test_cli import run, write

CLASSIC = SAMPLES / "classic.json"
CAUSAL = SAMPLES / "multihead_causal.json"


def stdout_of(*args):
    result = run(*args)
    assert result.exit_code in (0, 1), result.output
    return result.stdout


@pytest.mark.parametrize("args", [
    ("demo",),
    ("shapes", "--batch", "2", "--seq-len", "10", "--d-model", "512", "--heads", "8"),
    ("shapes", CAUSAL),
    ("compute", CAUSAL),
    ("compute", CLASSIC),
    ("compute", CAUSAL, "--view", "heatmap"),
    ("explain", CLASSIC, "--query", "1"),
    ("explain", CAUSAL, "--query", "2"),
])
def test_no_line_of_piped_output_ends_in_spaces(args):
    out = stdout_of(*args)
    assert out and [line for line in out.splitlines() if line != line.rstrip()] == []


@pytest.mark.parametrize("right", [True, False])
def test_no_line_of_a_verdict_ends_in_spaces(tmp_path, right):
    numbers = json.loads(stdout_of("compute", CLASSIC, "-s", "output", "-f", "json"))["output"]
    if not right:
        numbers[0][0] += 1.0
    out = stdout_of("check", CLASSIC, "-e", write(tmp_path, "out.json", json.dumps(numbers)))
    assert out and [line for line in out.splitlines() if line != line.rstrip()] == []
