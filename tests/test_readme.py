"""The README's promises: its two set-up commands, and examples whose output is the real output."""

from __future__ import annotations

import re
import shlex

from conftest import ROOT
from typer.testing import CliRunner

from attncli.cli import app

README = (ROOT / "README.md").read_text()


def test_first_code_block_holds_the_two_setup_commands_and_ci_runs_the_second():
    first_block = re.search(r"```[a-z]*\n(.*?)```", README, re.S).group(1)
    commands = [line for line in first_block.splitlines() if line.strip() and not line.startswith("#")]
    assert len(commands) == 2
    assert commands[0].startswith("pip install .") and commands[0].endswith("attncli demo")
    assert ".[test]" in commands[1] and commands[1].endswith("pytest")
    assert commands[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def test_console_examples_print_what_the_readme_shows(monkeypatch):
    monkeypatch.chdir(ROOT)
    examples = re.findall(r"```console\n\$ (attncli [^\n|]*)\n(.*?)```", README, re.S)
    checked = 0
    for command, shown in examples:
        args = shlex.split(command)[1:]
        if not all((ROOT / arg).exists() for arg in args if arg.endswith(".json")):
            continue  # an example about a user's own file
        result = CliRunner().invoke(app, args, prog_name="attncli")
        assert result.exit_code == (1 if args[0] == "check" else 0), command
        expected = [line.rstrip() for line in shown.splitlines()]
        assert [line.rstrip() for line in result.stdout.splitlines()] == expected, command
        checked += 1
    assert checked >= 5


def test_piped_examples_print_what_the_readme_shows(tmp_path):
    """The examples that need a shell (pipes, loops, jq) run in bash, in a scratch folder."""
    import os
    import shutil
    import subprocess
    import sys

    import pytest

    if shutil.which("jq") is None:
        pytest.skip("jq is not installed")
    (tmp_path / "samples").symlink_to(ROOT / "samples")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "attncli").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m attncli "$@"\n')
    (bin_dir / "attncli").chmod(0o755)
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    checked = 0
    for block in re.findall(r"```console\n(.*?)```", README, re.S):
        commands = [line[2:] for line in block.splitlines() if line.startswith("$ ")]
        if not any("|" in command or command.startswith("for ") for command in commands):
            continue
        expected = [line.rstrip() for line in block.splitlines() if not line.startswith("$ ")]
        done = subprocess.run(["bash", "-c", "set -e\n" + "\n".join(commands)], cwd=tmp_path, env=environment,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert [line.rstrip() for line in done.stdout.splitlines()] == expected, commands
        checked += 1
    assert checked >= 3
