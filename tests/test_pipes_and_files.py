"""Closed pipes and output files, through real processes where a real pipe matters."""

from __future__ import annotations

import json
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
    ["--version"], ["--help"], ["compute", "--help"],
])
def test_every_command_ends_quietly_on_a_closed_pipe(args):
    done = closed_pipe_run(*args)
    assert (done.returncode, done.stderr) == (141, b"")


def attncli_run(*args):
    return subprocess.run([sys.executable, "-m", "attncli", *map(str, args)], capture_output=True, cwd=ROOT,
                          timeout=60)


@pytest.mark.parametrize("args", [
    ["compute", SAMPLES / "classic.json", "-o", "{missing}/x.json"],
    ["compute", SAMPLES / "classic.json", "-s", "output", "-o", "{missing}/x.csv"],
    ["compute", SAMPLES / "classic.json", "--export-svg", "{missing}/x.svg"],
    ["demo", "--export-html", "{missing}/x.html"],
])
def test_a_missing_folder_is_an_error_not_made(tmp_path, args):
    missing = tmp_path / "nonexistent_dir"
    done = attncli_run(*(str(arg).format(missing=missing) for arg in args))
    target = str(args[-1]).format(missing=missing)
    assert (done.returncode, done.stdout) == (2, b"")
    assert done.stderr.decode() == f"Error: {target}: cannot be written: its folder does not exist\n"
    assert not missing.exists()


def test_a_folder_asked_for_with_a_slash_is_made(tmp_path):
    done = attncli_run("compute", SAMPLES / "classic.json", "-o", f"{tmp_path}/new/steps/")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "new" / "steps" / "output.csv").is_file()


def many_lines(tmp_path):
    classic = json.loads((SAMPLES / "classic.json").read_text())
    path = tmp_path / "many.jsonl"
    path.write_text(json.dumps(classic) + "\n{\"x\": 1}\n" + json.dumps(classic) + "\n")
    return path


def test_json_lines_into_a_json_file_are_one_array(tmp_path):
    done = attncli_run("compute", many_lines(tmp_path), "-s", "output", "-o", tmp_path / "res.json")
    assert done.returncode == 2
    text = (tmp_path / "res.json").read_text()
    results = json.loads(text)
    assert [result is None for result in results] == [False, True, False]
    assert results[0] == results[2] and set(results[0]) == {"output", "meta"}
    lines = text.splitlines()
    assert lines[0] == "[" and lines[-1] == "]" and len(lines) == 5 and lines[2] == "null,"


def test_json_lines_stay_lines_into_jsonl_and_stdout(tmp_path):
    path = many_lines(tmp_path)
    assert attncli_run("compute", path, "-s", "output", "-o", tmp_path / "res.jsonl").returncode == 2
    to_stdout = attncli_run("compute", path, "-s", "output")
    assert to_stdout.stdout.decode() == (tmp_path / "res.jsonl").read_text()
    assert [json.loads(line) is None for line in to_stdout.stdout.decode().splitlines()] == [False, True, False]


def test_no_json_lines_into_a_json_file_are_an_empty_array(tmp_path):
    (tmp_path / "none.jsonl").write_text("")
    assert attncli_run("compute", tmp_path / "none.jsonl", "-o", tmp_path / "res.json").returncode == 0
    assert json.loads((tmp_path / "res.json").read_text()) == []


def test_the_help_says_a_json_file_takes_an_array():
    done = attncli_run("compute", "--help")
    assert "(into a .json file, one JSON array)" in " ".join(done.stdout.decode().split())
