"""Shell completion (issue 10, item 21): Typer's --install-completion and --show-completion, and
what the completion itself offers, asked as the shells' scripts ask it (environment variables)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attncli.formats import output_names
from attncli.keys import STEP_NAMES

ATTNCLI = shutil.which("attncli", path=str(Path(sys.executable).parent)) or shutil.which("attncli")
pytestmark = pytest.mark.skipif(ATTNCLI is None, reason="the attncli script is not installed")


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **env, "PATH": f"{Path(ATTNCLI).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(args, env=environment, capture_output=True, text=True, timeout=60, cwd=cwd)


def _bash(words: str) -> list[str]:
    """What bash's completion function is given for the command line ``words`` (cursor at its end)."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    result = _run([ATTNCLI], {"_ATTNCLI_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)})
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_bash_completes_step_names_for_step():
    assert _bash("attncli compute --step ") == list(STEP_NAMES)
    assert _bash("attncli compute -s so") == ["softmax"]
    assert _bash("attncli check problem.json --step ") == list(STEP_NAMES)


def test_bash_completes_formats_for_format():
    assert _bash("attncli compute --format ") == list(output_names())
    assert _bash("attncli demo -f ") == ["table", "json"]
    assert _bash("attncli compute --view h") == ["heatmap"]


def test_bash_completes_rope_styles():
    for command in ("compute", "explain", "check", "shapes", "random"):
        assert _bash(f"attncli {command} --rope ") == ["neox", "gptj"]
    assert _bash("attncli compute --rope g") == ["gptj"]
    assert "--causal-lower-right" in _bash("attncli compute --causal")


def test_bash_completes_commands_and_options():
    assert _bash("attncli ") == ["compute", "demo", "shapes", "explain", "check", "layers", "random"]
    assert _bash("attncli ch") == ["check"]
    assert "--step" in _bash("attncli compute --st")
    assert "--show-completion" in _bash("attncli --")


def test_paths_are_left_to_the_shell():
    # nothing offered: bash (complete -o default), zsh (_files) and fish then complete file names
    assert _bash("attncli compute ") == []
    assert _bash("attncli compute --x ") == []
    assert _bash("attncli check problem.json --expected ") == []
    zsh = _run([ATTNCLI], {"_ATTNCLI_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "attncli compute "})
    assert zsh.stdout.strip() == "_files"
    fish = _run([ATTNCLI], {"_ATTNCLI_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION": "is-args",
                            "_TYPER_COMPLETE_ARGS": "attncli compute "})
    assert fish.returncode == 1  # fish: "no arguments of ours here", so it offers files


def test_zsh_and_fish_complete_step_names():
    zsh = _run([ATTNCLI], {"_ATTNCLI_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "attncli compute --step "})
    assert zsh.returncode == 0, zsh.stderr
    assert all(f'"{name}"' in zsh.stdout for name in STEP_NAMES)
    fish = _run([ATTNCLI], {"_ATTNCLI_COMPLETE": "complete_fish", "_TYPER_COMPLETE_FISH_ACTION": "get-args",
                            "_TYPER_COMPLETE_ARGS": "attncli compute --format "})
    assert fish.stdout.split() == list(output_names())


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o default -F _attncli_completion attncli"),
                                           ("zsh", "compdef _attncli_completion attncli"),
                                           ("fish", "complete --command attncli")])
def test_show_completion_prints_a_script(shell, marker):
    # named, the shell need not be the one attncli runs in (Typer's flags alone detect it)
    result = _run([ATTNCLI, "--show-completion", shell], {})
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout
    assert "_ATTNCLI_COMPLETE=complete_" + shell in result.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_show_completion_detects_bash_and_its_script_completes():
    # the trailing `true` keeps bash from exec'ing attncli, so bash is its parent for the detection
    shown = _run(["bash", "-c", "attncli --show-completion; true"], {})
    assert "complete -o default -F _attncli_completion attncli" in shown.stdout, shown.stderr
    script = ('source <(attncli --show-completion); COMP_WORDS=(attncli compute --step ""); COMP_CWORD=3; '
              '_attncli_completion attncli; printf "%s\\n" "${COMPREPLY[@]}"; true')
    assert _run(["bash", "-c", script], {}).stdout.split() == list(STEP_NAMES)


def test_install_completion_writes_into_home(tmp_path):
    result = _run([ATTNCLI, "--install-completion", "bash"], {"HOME": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "bash completion installed" in result.stdout
    installed = tmp_path / ".bash_completions" / "attncli.sh"
    assert "_attncli_completion" in installed.read_text()
    assert str(installed) in (tmp_path / ".bashrc").read_text()


def test_install_completion_for_zsh(tmp_path):
    result = _run([ATTNCLI, "--install-completion", "zsh"], {"HOME": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "compdef _attncli_completion attncli" in (tmp_path / ".zfunc" / "_attncli").read_text()


@pytest.mark.parametrize("name", ["tcsh", "compute"])
def test_an_unknown_shell_is_refused_not_ignored(name):
    result = _run([ATTNCLI, "--show-completion", name], {})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (f"Error: Invalid value for '--show-completion': '{name}' is not one of bash, zsh, fish, "
                             "powershell, pwsh (see 'attncli --help')\n")


def test_help_offers_the_completion_options():
    result = _run([ATTNCLI, "--help"], {"COLUMNS": "100", "NO_COLOR": "1"})
    assert "--install-completion" in result.stdout and "--show-completion" in result.stdout


def test_a_run_makes_only_the_command_it_runs():
    import typer.main

    from attncli.cli import app

    group = typer.main.get_command(app)
    assert list(group.commands) == ["compute", "demo", "shapes", "explain", "check", "layers", "random"]
    assert group.get_command(None, "shapes").name == "shapes"
    assert list(group.commands.made) == ["shapes"]
