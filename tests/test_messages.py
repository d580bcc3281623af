"""Messages a new user reads: missing options, usage lines, suggestions, memory refusals."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES
from typer.testing import CliRunner

from attncli.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(arg) for arg in args], prog_name="attncli")


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("Error: ")
    return result.stderr[len("Error: "):-1]


@pytest.mark.parametrize("missing", ["w_query", "w_key", "w_value"])
def test_a_missing_matrix_option_is_named_as_its_flag_not_blamed_on_x(tmp_path, missing):
    np.savetxt(tmp_path / "x.csv", np.ones((3, 4)), delimiter=",")
    np.savetxt(tmp_path / "w.csv", np.ones((4, 4)), delimiter=",")
    given = [arg for key in ("w_query", "w_key", "w_value") if key != missing
             for arg in ("--" + key.replace("_", "-"), tmp_path / "w.csv")]
    message = one_error_line(run("compute", "--x", tmp_path / "x.csv", *given))
    assert message.startswith(f"missing --{missing.replace('_', '-')} (the ")
    assert "x.csv" not in message


@pytest.mark.parametrize("command", ["explain", "check", "compute", "shapes"])
def test_usage_lines_show_file_without_braces(command):
    usage = run(command, "--help").stdout.splitlines()[0]
    assert usage.startswith(f"Usage: attncli {command} [OPTIONS] ")
    assert usage.split()[-1] in ("FILE", "[FILE]")


@pytest.mark.parametrize("typed, suggested", [
    ("--bogus", ""), ("--heatmap", ""), ("--stpe", " (Possible options: --step)"),
    ("--presicion", " (Possible options: --precision)"), ("--hepl", " (Possible options: --help)"),
])
def test_an_unknown_option_suggests_only_close_ones(typed, suggested):
    assert one_error_line(run("compute", typed)) == (
        f"No such option: {typed}{suggested} (see 'attncli compute --help')")


@pytest.mark.parametrize("typed, meant", [
    ("weights", "softmax"), ("attn", "softmax"), ("attention", "softmax"), ("attn_weights", "softmax"),
    ("softmx", "softmax"), ("score", "scores"), ("out", "output"),
])
@pytest.mark.parametrize("command", ["compute", "check"])
def test_a_step_near_miss_suggests_the_step(command, typed, meant):
    args = ["-e", "mine.json"] if command == "check" else []
    message = one_error_line(run(command, "problem.json", *args, "--step", typed))
    assert message.endswith(f"; did you mean {meant!r}? (see 'attncli {command} --help')")


def test_a_step_far_from_every_name_suggests_none():
    assert "did you mean" not in one_error_line(run("compute", "problem.json", "--step", "xyz"))


def test_the_memory_refusal_names_the_step_asked_for(monkeypatch):
    import attncli.machine as machine

    monkeypatch.setattr(machine, "available_memory", lambda: 100)  # bytes; the classic trace needs 648
    problem = SAMPLES / "classic.json"
    assert one_error_line(run("compute", problem, "--step", "softmax")) == (
        f"{problem}: computing --step softmax needs every step of this problem, about 0.0 GiB, but 0.0 GiB is "
        "free: ask for --step output (computed in blocks), or give a smaller problem")
    assert one_error_line(run("compute", problem)).startswith(f"{problem}: every step of this problem needs about")
