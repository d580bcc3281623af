"""Start-up cost of one attncli call, as a ratio to the floor the stack itself sets.

The floors are minimal Typer commands built here: one reads a JSON matrix with numpy and prints
it as JSON (the floor for `attncli compute FILE --format json`), one prints a small Rich table
(the floor for the table view). Every command runs in turn, round after round, so that a noisy
moment of the machine hits them all alike; the median of the rounds is reported.

Rerun:  python benchmarks/startup.py [--rounds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLASSIC = ROOT / "samples" / "classic.json"
STREAM_PROBLEMS = 20_000
STREAM_ROUNDS = 3

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


def run_stream(command: list[str], lines: bytes) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, input=lines, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENVIRONMENT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode()}")
    return elapsed


def run_once(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENVIRONMENT)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    python = sys.executable
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
            run_once(command)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(rounds):
            for name, command in cases.items():
                times[name].append(run_once(command))
        floor_stream = Path(folder) / "floor_stream.py"
        floor_stream.write_text(FLOOR_STREAM)
        problem_line = (json.dumps(json.loads(CLASSIC.read_text())) + "\n").encode()
        lines = problem_line * STREAM_PROBLEMS
        stream_cases = {
            "floor: json+numpy loop": [python, str(floor_stream)],
            "attncli compute --lines -": [python, "-m", "attncli", "compute", "--lines", "-", "--format", "json",
                                          "--step", "output"],
        }
        stream_times: dict[str, list[float]] = {name: [] for name in stream_cases}
        for _ in range(STREAM_ROUNDS):
            for name, command in stream_cases.items():
                stream_times[name].append(run_stream(command, lines))
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
    print("targets: compute (json and tables) at most 1.25x its floor")
    print()
    print(f"JSON Lines: {STREAM_PROBLEMS} copies of samples/classic.json, --format json --step output, "
          f"median of {STREAM_ROUNDS}")
    stream_median = {name: statistics.median(values) for name, values in stream_times.items()}
    floor_seconds = stream_median["floor: json+numpy loop"]
    print(f"{'case':34} {'s':>8} {'ratio':>8} {'problems/s':>11}")
    for name, seconds in stream_median.items():
        print(f"{name:34} {seconds:8.2f} {seconds / floor_seconds:7.2f}x {STREAM_PROBLEMS / seconds:11.0f}")
    print("target: attncli at most 2x the floor")
    print("rerun: python benchmarks/startup.py --rounds", rounds)


if __name__ == "__main__":
    main()
