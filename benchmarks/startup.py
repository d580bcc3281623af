"""Start-up cost of one attncli call, as a ratio to the floor the stack itself sets.

The floors are minimal Typer commands built here: one reads a JSON matrix with numpy and prints
it as JSON (the floor for `attncli compute FILE --format json`), one prints a small Rich table
(the floor for the table view). Every command runs in turn, round after round, so that a noisy
moment of the machine hits them all alike; the median of the rounds is reported. The JSON Lines
rows also give each process's peak resident memory (wait4's ru_maxrss, the largest of the rounds).

With --against REF, the code of that git ref (its attncli/, taken with `git archive` into a
temporary folder) runs too, in the same rounds, interleaved with the working tree's: each attncli
figure is printed for the current tree, for the ref, and as the ratio current/ref. Both then run
as `python -P -m attncli` with PYTHONPATH set to their tree.

Rerun:  python benchmarks/startup.py [--rounds 30] [--against REF]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

from gitref import extract, rounds_and_ref

ROOT = Path(__file__).resolve().parent.parent
CLASSIC = ROOT / "samples" / "classic.json"
STREAM_PROBLEMS = 20_000
STREAM_ROUNDS = 3
MIB = 1024 * 1024

FLOOR_JSON = '''
import json, sys
import numpy as np
import typer

app = typer.Typer()

@app.command()
def main(path: str, fmt: str = "json") -> None:
    matrix = np.array(json.loads(open(path).read())["x"], dtype=float)
    sys.stdout.write(json.dumps({"x": matrix.tolist()}) + "\\n")

app()
'''

FLOOR_TABLE = '''
import json
import numpy as np
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer()

@app.command()
def main(path: str) -> None:
    matrix = np.array(json.loads(open(path).read())["x"], dtype=float)
    table = Table(title="x")
    for column in range(matrix.shape[1]):
        table.add_column(str(column), justify="right")
    for row in matrix:
        table.add_row(*(f"{value:.4f}" for value in row))
    Console().print(table)

app()
'''


# As after a normal install, modules load from their compiled .pyc files: a shell that sets
# PYTHONDONTWRITEBYTECODE would otherwise make every run compile attncli from source.
ENVIRONMENT = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


FLOOR_STREAM = '''
import json, sys
import numpy as np

for line in sys.stdin:
    problem = json.loads(line)
    x = np.array(problem["x"], dtype=float)
    q, k, v = (x @ np.array(problem[name], dtype=float) for name in ("w_query", "w_key", "w_value"))
    scores = q @ k.T
    weights = np.exp(scores - scores.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    sys.stdout.write(json.dumps({"output": (weights @ v).tolist()}) + "\\n")
'''


class Run(NamedTuple):
    seconds: float
    peak_bytes: int  # the process's peak resident memory


def measured(command: list[str], environment: dict[str, str] = ENVIRONMENT, lines: bytes | None = None) -> Run:
    """Run ``command`` (``lines`` on its standard input), timed, with its peak memory from wait4."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdin=subprocess.PIPE if lines is not None else subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment)
    errors: list[bytes] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))
    reader.start()
    if lines is not None:
        process.stdin.write(lines)
        process.stdin.close()
    _, status, usage = os.wait4(process.pid, 0)  # wait4, not wait: it gives the child's rusage
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    process.stderr.close()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {b''.join(errors).decode()}")
    return Run(elapsed, usage.ru_maxrss * 1024)  # ru_maxrss is in KiB on Linux


def interleaved(names: list[str], round_number: int) -> list[str]:
    """Each round's order: every "X" just before its "X @ ref", the other way round on odd rounds."""
    if round_number % 2 == 0:
        return names
    order = list(names)
    for index, name in enumerate(order[:-1]):
        if order[index + 1] == f"{name} @ ref":
            order[index], order[index + 1] = order[index + 1], name
    return order


def side_by_side(ref: str, rounds: int, python: str, folder: Path) -> None:
    """The --against run: the attncli cases for this tree and for ``ref``, interleaved in the same rounds."""
    trees = {"": ROOT, " @ ref": extract(ref, Path(folder) / "ref")}
    environments = {suffix: {**ENVIRONMENT, "PYTHONPATH": str(tree)} for suffix, tree in trees.items()}
    floor_json, floor_table = Path(folder) / "floor_json.py", Path(folder) / "floor_table.py"
    floor_json.write_text(FLOOR_JSON)
    floor_table.write_text(FLOOR_TABLE)
    attncli = [python, "-P", "-m", "attncli"]
    floors = {
        "floor: typer+numpy JSON": [python, str(floor_json), str(CLASSIC)],
        "floor: typer+numpy+rich table": [python, str(floor_table), str(CLASSIC)],
        "floor: python -c pass": [python, "-c", "pass"],
    }
    pairs = {  # each attncli case and its floor
        "attncli compute --format json": ([*attncli, "compute", str(CLASSIC), "--format", "json"],
                                          "floor: typer+numpy JSON"),
        "attncli compute (tables)": ([*attncli, "compute", str(CLASSIC)], "floor: typer+numpy+rich table"),
        "attncli --version": ([*attncli, "--version"], "floor: python -c pass"),
        "attncli --help": ([*attncli, "--help"], "floor: python -c pass"),
    }
    cases = {name: (command, ENVIRONMENT) for name, command in floors.items()}
    for name, (command, _) in pairs.items():
        for suffix, environment in environments.items():
            cases[name + suffix] = (command, environment)
    for command, environment in cases.values():  # warm the file cache and the .pyc files (the ref's are new)
        measured(command, environment)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_number in range(rounds):
        for name in interleaved(list(cases), round_number):
            times[name].append(measured(*cases[name]).seconds)
    stream_command = [*attncli, "compute", "--lines", "-", "--format", "json", "--step", "output"]
    floor_stream = Path(folder) / "floor_stream.py"
    floor_stream.write_text(FLOOR_STREAM)
    lines = (json.dumps(json.loads(CLASSIC.read_text())) + "\n").encode() * STREAM_PROBLEMS
    stream_cases = {"floor: json+numpy loop": ([python, str(floor_stream)], ENVIRONMENT),
                    **{"attncli compute --lines -" + suffix: (stream_command, environment)
                       for suffix, environment in environments.items()}}
    stream_runs: dict[str, list[Run]] = {name: [] for name in stream_cases}
    for round_number in range(STREAM_ROUNDS):
        for name in interleaved(list(stream_cases), round_number):
            command, environment = stream_cases[name]
            stream_runs[name].append(measured(command, environment, lines))

    median = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"start-up, median of {rounds} rounds (ms), Python {sys.version.split()[0]}; "
          f"this tree (current) against {ref} (ref), interleaved round by round")
    print(f"{'case':34} {'current':>8} {'ref':>8} {'cur/ref':>8} {'cur/floor':>10} {'ref/floor':>10}")
    for name, value in median.items():
        if name in floors:
            print(f"{name:34} {value:8.1f}")
    for name, (_, floor) in pairs.items():
        ours, theirs, base = median[name], median[name + " @ ref"], median[floor]
        print(f"{name:34} {ours:8.1f} {theirs:8.1f} {ours / theirs:7.2f}x {ours / base:9.2f}x {theirs / base:9.2f}x")
    print("targets: compute --format json at most 1.15x its floor, compute (tables) at most 1.20x")
    print()
    print(f"JSON Lines: {STREAM_PROBLEMS} copies of samples/classic.json, --format json --step output, "
          f"median of {STREAM_ROUNDS}")
    stream_median = {name: statistics.median(run.seconds for run in runs) for name, runs in stream_runs.items()}
    peak = {name: max(run.peak_bytes for run in runs) / MIB for name, runs in stream_runs.items()}
    floor_seconds = stream_median["floor: json+numpy loop"]
    ours, theirs = stream_median["attncli compute --lines -"], stream_median["attncli compute --lines - @ ref"]
    print(f"{'case':34} {'current':>8} {'ref':>8} {'cur/ref':>8} {'cur/floor':>10} {'ref/floor':>10} "
          f"{'cur prob/s':>11} {'ref prob/s':>11} {'cur MiB':>8} {'ref MiB':>8}")
    print(f"{'floor: json+numpy loop':34} {floor_seconds:7.2f}s{'':64} {peak['floor: json+numpy loop']:8.1f}")
    print(f"{'attncli compute --lines -':34} {ours:7.2f}s {theirs:7.2f}s {ours / theirs:7.2f}x "
          f"{ours / floor_seconds:9.2f}x {theirs / floor_seconds:9.2f}x "
          f"{STREAM_PROBLEMS / ours:11.0f} {STREAM_PROBLEMS / theirs:11.0f} "
          f"{peak['attncli compute --lines -']:8.1f} {peak['attncli compute --lines - @ ref']:8.1f}")
    print("MiB: the process's peak resident memory (the largest of the rounds)")
    print("target: attncli at most 1.0x the floor (faster than the bare loop)")
    print(f"rerun: python benchmarks/startup.py --rounds {rounds} --against {ref}")


def main() -> None:
    options = rounds_and_ref(__doc__.splitlines()[0], 30)
    rounds = options.rounds
    python = sys.executable
    if options.against:
        with tempfile.TemporaryDirectory() as folder:
            side_by_side(options.against, rounds, python, Path(folder))
        return
    with tempfile.TemporaryDirectory() as folder:
        floor_json, floor_table = Path(folder) / "floor_json.py", Path(folder) / "floor_table.py"
        floor_json.write_text(FLOOR_JSON)
        floor_table.write_text(FLOOR_TABLE)
        cases = {
            "floor: typer+numpy JSON": [python, str(floor_json), str(CLASSIC)],
            "attncli compute --format json": [python, "-m", "attncli", "compute", str(CLASSIC), "--format", "json"],
            "floor: typer+numpy+rich table": [python, str(floor_table), str(CLASSIC)],
            "attncli compute (tables)": [python, "-m", "attncli", "compute", str(CLASSIC)],
            "floor: python -c pass": [python, "-c", "pass"],
            "attncli --version": [python, "-m", "attncli", "--version"],
            "attncli --help": [python, "-m", "attncli", "--help"],
        }
        for command in cases.values():  # warm the file cache and the .pyc files
            measured(command)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, command in cases.items():
                times[name].append(measured(command).seconds)
        floor_stream = Path(folder) / "floor_stream.py"
        floor_stream.write_text(FLOOR_STREAM)
        problem_line = (json.dumps(json.loads(CLASSIC.read_text())) + "\n").encode()
        lines = problem_line * STREAM_PROBLEMS
        stream_cases = {
            "floor: json+numpy loop": [python, str(floor_stream)],
            "attncli compute --lines -": [python, "-m", "attncli", "compute", "--lines", "-", "--format", "json",
                                          "--step", "output"],
        }
        stream_runs: dict[str, list[Run]] = {name: [] for name in stream_cases}
        for _ in range(STREAM_ROUNDS):
            for name, command in stream_cases.items():
                stream_runs[name].append(measured(command, lines=lines))
    median = {name: statistics.median(values) * 1000 for name, values in times.items()}
    print(f"start-up, median of {rounds} rounds (ms), Python {sys.version.split()[0]}")
    print(f"{'case':34} {'ms':>8} {'ratio':>8}")
    pairs = {
        "attncli compute --format json": "floor: typer+numpy JSON",
        "attncli compute (tables)": "floor: typer+numpy+rich table",
        "attncli --version": "floor: python -c pass",
        "attncli --help": "floor: python -c pass",
    }
    for name, value in median.items():
        ratio = f"{value / median[pairs[name]]:.2f}x" if name in pairs else ""
        print(f"{name:34} {value:8.1f} {ratio:>8}")
    print("targets: compute --format json at most 1.15x its floor, compute (tables) at most 1.20x")
    print()
    print(f"JSON Lines: {STREAM_PROBLEMS} copies of samples/classic.json, --format json --step output, "
          f"median of {STREAM_ROUNDS}")
    stream_median = {name: statistics.median(run.seconds for run in runs) for name, runs in stream_runs.items()}
    floor_seconds = stream_median["floor: json+numpy loop"]
    print(f"{'case':34} {'s':>8} {'ratio':>8} {'problems/s':>11} {'peak MiB':>9}")
    for name, seconds in stream_median.items():
        peak = max(run.peak_bytes for run in stream_runs[name]) / MIB
        print(f"{name:34} {seconds:8.2f} {seconds / floor_seconds:7.2f}x {STREAM_PROBLEMS / seconds:11.0f} {peak:9.1f}")
    print("target: attncli at most 1.0x the floor (faster than the bare loop)")
    print("rerun: python benchmarks/startup.py --rounds", rounds)


if __name__ == "__main__":
    main()
