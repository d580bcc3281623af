"""Start-up cost of one attncli call, as a ratio to the floor the stack itself sets.

The floors are minimal Typer commands built here: one reads a JSON matrix with numpy and prints
it as JSON (the floor for `attncli compute FILE --format json`), one prints a small Rich table
(the floor for the table view). Every command runs in turn, round after round, so that a noisy
moment of the machine hits them all alike; the median of the rounds is reported. The JSON Lines
rows also give each process's peak resident memory (wait4's ru_maxrss, the largest of the rounds).

With --against REF, the code of that git ref (its attncli/, taken with `git archive` into a
temporary folder) runs too, in the same rounds, interleaved with the working tree's: each attncli
figure is printed for the current tree, for the ref, and as the ratio current/ref. attncli always
runs as `python -P -m attncli` with PYTHONPATH set to its tree.

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


FLOORS = ("floor: typer+numpy JSON", "floor: typer+numpy+rich table", "floor: python -c pass")
# each attncli case: its arguments and its floor
PAIRS = {
    "attncli compute --format json": (["compute", str(CLASSIC), "--format", "json"], "floor: typer+numpy JSON"),
    "attncli compute (tables)": (["compute", str(CLASSIC)], "floor: typer+numpy+rich table"),
    "attncli --version": (["--version"], "floor: python -c pass"),
    "attncli --help": (["--help"], "floor: python -c pass"),
}
STREAM_FLOOR = "floor: json+numpy loop"
STREAM_CASE = "attncli compute --lines -"


def measure(trees: dict[str, Path], rounds: int, python: str, folder: Path
            ) -> tuple[dict[str, float], dict[str, list[Run]]]:
    """The start-up cases' median times (ms) and the JSON Lines cases' runs, for the floors and for
    attncli from each tree (its name's suffix: "" for the working tree, " @ ref" for a ref's),
    every case in turn round after round."""
    environments = {suffix: {**ENVIRONMENT, "PYTHONPATH": str(tree)} for suffix, tree in trees.items()}
    scripts = {"floor_json": FLOOR_JSON, "floor_table": FLOOR_TABLE, "floor_stream": FLOOR_STREAM}
    for name, text in scripts.items():
        (folder / f"{name}.py").write_text(text)
    scripts = {name: folder / f"{name}.py" for name in scripts}
    attncli = [python, "-P", "-m", "attncli"]
    cases = {FLOORS[0]: ([python, str(scripts["floor_json"]), str(CLASSIC)], ENVIRONMENT),
             FLOORS[1]: ([python, str(scripts["floor_table"]), str(CLASSIC)], ENVIRONMENT),
             FLOORS[2]: ([python, "-c", "pass"], ENVIRONMENT)}
    for name, (arguments, _) in PAIRS.items():
        for suffix, environment in environments.items():
            cases[name + suffix] = ([*attncli, *arguments], environment)
    for command, environment in cases.values():  # warm the file cache and the .pyc files (a ref's are new)
        measured(command, environment)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_number in range(rounds):
        for name in interleaved(list(cases), round_number):
            times[name].append(measured(*cases[name]).seconds)
    lines = (json.dumps(json.loads(CLASSIC.read_text())) + "\n").encode() * STREAM_PROBLEMS
    stream_command = [*attncli, "compute", "--lines", "-", "--format", "json", "--step", "output"]
    stream_cases = {STREAM_FLOOR: ([python, str(scripts["floor_stream"])], ENVIRONMENT),
                    **{STREAM_CASE + suffix: (stream_command, environment)
                       for suffix, environment in environments.items()}}
    stream_runs: dict[str, list[Run]] = {name: [] for name in stream_cases}
    for round_number in range(STREAM_ROUNDS):
        for name in interleaved(list(stream_cases), round_number):
            command, environment = stream_cases[name]
            stream_runs[name].append(measured(command, environment, lines))
    return {name: statistics.median(values) * 1000 for name, values in times.items()}, stream_runs


def report(median: dict[str, float], stream_runs: dict[str, list[Run]], rounds: int, ref: str | None) -> None:
    """Print the figures, with the ref's columns when a ref was measured."""
    against = f"; this tree (current) against {ref} (ref), interleaved round by round" if ref else ""
    print(f"start-up, median of {rounds} rounds (ms), Python {sys.version.split()[0]}{against}")
    print(f"{'case':34} {'current':>8}" + (f" {'ref':>8} {'cur/ref':>8}" if ref else "") + f" {'cur/floor':>10}"
          + (f" {'ref/floor':>10}" if ref else ""))
    for name in FLOORS:
        print(f"{name:34} {median[name]:8.1f}")
    for name, (_, floor) in PAIRS.items():
        ours, base = median[name], median[floor]
        theirs = median.get(name + " @ ref")
        print(f"{name:34} {ours:8.1f}" + (f" {theirs:8.1f} {ours / theirs:7.2f}x" if ref else "")
              + f" {ours / base:9.2f}x" + (f" {theirs / base:9.2f}x" if ref else ""))
    print("targets: compute --format json at most 1.15x its floor, compute (tables) at most 1.20x")
    print()
    print(f"JSON Lines: {STREAM_PROBLEMS} copies of samples/classic.json, --format json --step output, "
          f"median of {STREAM_ROUNDS}")
    seconds = {name: statistics.median(run.seconds for run in runs) for name, runs in stream_runs.items()}
    peak = {name: max(run.peak_bytes for run in runs) / MIB for name, runs in stream_runs.items()}
    floor = seconds[STREAM_FLOOR]
    print(f"{'case':34} {'s':>8} {'ratio':>8} {'problems/s':>11} {'peak MiB':>9}")
    for name in seconds:
        print(f"{name.replace(' @ ref', f' @ {ref}'):34} {seconds[name]:8.2f} {seconds[name] / floor:7.2f}x "
              f"{STREAM_PROBLEMS / seconds[name]:11.0f} {peak[name]:9.1f}")
    if ref:
        print(f"current/ref: {seconds[STREAM_CASE] / seconds[STREAM_CASE + ' @ ref']:.2f}x")
    print("ratio: to the floor; peak MiB: the process's peak resident memory (the largest of the rounds)")
    print("target: attncli at most 1.0x the floor (faster than the bare loop)")
    print(f"rerun: python benchmarks/startup.py --rounds {rounds}" + (f" --against {ref}" if ref else ""))


def main() -> None:
    options = rounds_and_ref(__doc__.splitlines()[0], 30)
    with tempfile.TemporaryDirectory() as folder:
        trees = {"": ROOT}
        if options.against:
            trees[" @ ref"] = extract(options.against, Path(folder) / "ref")
        median, stream_runs = measure(trees, options.rounds, sys.executable, Path(folder))
    report(median, stream_runs, options.rounds, options.against)


if __name__ == "__main__":
    main()
