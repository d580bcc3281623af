"""Closed pipes and output files, through real processes where a real pipe matters."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLES


def closed_pipe_run(*args):
    """attncli with stdout a pipe whose reading end is already closed: every write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "attncli", *map(str, args)], stdout=write_end,
                              stderr=subprocess.PIPE, cwd=ROOT, timeout=60)
    finally:
        os.close(write_end)


def test_random_into_head_exits_141_quietly():
    shell = (f"set -o pipefail; {sys.executable} -m attncli random --seq-len 3000 --d-model 64 "
             "| head -c 50 >/dev/null")
    done = subprocess.run(["bash", "-c", shell], capture_output=True, cwd=ROOT, timeout=60)
    assert (done.returncode, done.stderr) == (141, b"")


@pytest.mark.parametrize("args", [
    ["random", "--seq-len", 3, "--d-model", 4],
    ["demo"], ["demo", "-f", "json"],
    ["shapes", "--seq-len", 4, "--d-model", 8], ["shapes", "--seq-len", 4, "--d-model", 8, "-f", "json"],
    ["compute", SAMPLES / "classic.json"], ["compute", SAMPLES / "classic.json", "-f", "json"],
    ["check", SAMPLES / "classic.json", "-e", SAMPLES / "classic_mistake.json"],
    ["check", SAMPLES / "classic.json", "-e", SAMPLES / "classic_mistake.json", "-f", "json"],
    ["explain", SAMPLES / "classic.json", "-q", 0],
])
def test_every_command_ends_quietly_on_a_closed_pipe(args):
    done = closed_pipe_run(*args)
    assert (done.returncode, done.stderr) == (141, b"")
