"""Compare what users see from this working tree with what a git ref shows, byte for byte.

A refactor must not change attncli's output. This script runs the same commands twice, once with
the code of the working tree and once with the code of a git ref (default 78c8973, the commit
before the refactor), and compares stdout, stderr and the exit code of each:

- `compute FILE --format json` for every problem in samples/ and tests/data/ (.json, .npz, .jsonl
  files and folders), and `compute FILE` (the tables) for the samples;
- every case of the bad-input corpus (tests/bad_inputs/cases.json), with its arguments exactly as
  tests/test_bad_inputs.py runs it;
- `demo`, `shapes` from sizes and from each sample, `compute --format csv -s softmax`, a larger
  random problem on the blocked path (`--step output`), a JSON Lines file built from the samples,
  and `check` of each sample against its own output and against deliberately wrong numbers.

The ref's attncli/ is taken with `git archive` into a temporary folder; both sides run as the
installed console script does (the `attncli` entry point in each tree's pyproject.toml) with
PYTHONPATH set to their tree, `python -P` (so the current folder cannot shadow it), from the
project root, NO_COLOR=1 and COLUMNS=100. Input files the cases need (the random problem, the
numbers to check) are made by the ref's code first, so both sides read the same bytes.
Standard library only; not a pytest test (pytest collects test_*.py only).

Run from anywhere:

    python tests/compare_outputs.py [--against REF] [--jobs 2]

It prints one line per difference, then a summary; exit 0 when every case is identical, 1 when
any differs, 2 when the ref cannot be taken.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
DATA = ROOT / "tests" / "data"
CORPUS = ROOT / "tests" / "bad_inputs"
DEFAULT_REF = "78c8973"
PROBLEM_SUFFIXES = {".json", ".npz", ".jsonl"}
TIMEOUT = 120  # seconds for one command; a hang is a difference too

# What changes Rich's and Click's output goes, and what would make Python import some other attncli;
# PYTHONDONTWRITEBYTECODE too, or every run of the ref would compile it from source again.
DROPPED = {"FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "TERM", "CLICOLOR", "CLICOLOR_FORCE", "NO_COLOR",
           "COLUMNS", "LINES", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH",
           "PYTHONDONTWRITEBYTECODE"}
ENVIRONMENT = {**{name: value for name, value in os.environ.items() if name not in DROPPED},
               "NO_COLOR": "1", "COLUMNS": "100"}


@dataclass(frozen=True)
class Tree:
    """One copy of attncli: the folder holding its attncli/ package, and its console-script entry point."""

    label: str
    folder: Path
    entry_point: str  # "module:function", as in [project.scripts]

    def command(self, args: list[str]) -> list[str]:
        module, function = self.entry_point.split(":")
        launcher = f"import sys; sys.argv[0] = 'attncli'; from {module} import {function}; sys.exit({function}())"
        return [sys.executable, "-P", "-c", launcher, *args]

    def run(self, args: list[str]) -> Result:
        environment = {**ENVIRONMENT, "PYTHONPATH": str(self.folder)}
        try:
            done = subprocess.run(self.command(args), cwd=ROOT, env=environment, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=TIMEOUT)
        except subprocess.TimeoutExpired as expired:
            return Result(expired.stdout or b"", (expired.stderr or b"") + b"\n[timed out]\n", None)
        return Result(done.stdout, done.stderr, done.returncode)


@dataclass(frozen=True)
class Result:
    stdout: bytes
    stderr: bytes
    exit_code: int | None  # None: timed out


@dataclass
class Case:
    args: list[str]
    differences: list[str] = field(default_factory=list)
    # the blocked path promises the same numbers up to rounding, not the same last digit:
    # its JSON is compared number by number (to NUMERIC_RTOL), everything else byte by byte
    numeric: bool = False
    agreement: float | None = None

    @property
    def name(self) -> str:
        return "attncli " + shlex.join(self.args)


NUMERIC = "<numeric>"  # marks a case compared number by number
NUMERIC_RTOL = 1e-13


def fail(message: str) -> NoReturn:
    """Stop with exit 2: the comparison could not be set up."""
    print(f"compare_outputs: {message}", file=sys.stderr)
    raise SystemExit(2)


def git(*args: str) -> bytes:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True)
    if done.returncode != 0:
        fail(f"git {' '.join(args)} failed: {done.stderr.decode().strip()}")
    return done.stdout


def entry_point(pyproject: str) -> str:
    return tomllib.loads(pyproject)["project"]["scripts"]["attncli"]


def extract(ref: str, folder: Path) -> Tree:
    """The ref's attncli/ under ``folder`` (git archive), with the entry point its pyproject.toml names."""
    archive = git("archive", "--format=tar", ref, "attncli")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(folder, filter="data")
        else:  # Python before 3.11.4: the archive is our own repository's
            tar.extractall(folder)
    return Tree(ref, folder, entry_point(git("show", f"{ref}:pyproject.toml").decode()))


def relative(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def problem_inputs(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir()
                  if not path.name.startswith((".", "__")) and (path.is_dir() or path.suffix in PROBLEM_SUFFIXES))


def bad_input_cases() -> list[list[str]]:
    """Each case of the corpus with its arguments, exactly as tests/test_bad_inputs.py builds them."""
    cases = json.loads((CORPUS / "cases.json").read_text())
    runs = []
    for name in sorted(cases):
        case = cases[name]
        if "problem" in case:
            problem = relative(CORPUS / case["problem"])
            args = [problem, case["option"], relative(CORPUS / name)] if "option" in case else [problem, *case["args"]]
        else:
            args = [relative(CORPUS / name), *case["args"]]
        runs.append(["compute", *args])
    return runs


def make_inputs(reference: Tree, folder: Path) -> tuple[list[list[str]], list[str]]:
    """Write the files the remaining cases read (with the ref's code), and return those cases."""
    cases: list[list[str]] = []

    def produce(args: list[str], path: Path) -> None:
        result = reference.run(args)
        if result.exit_code != 0:
            fail(f"making {path.name} with {reference.label} failed: attncli {shlex.join(args)}: "
                 f"{result.stderr.decode(errors='replace').strip()}")
        path.write_bytes(result.stdout)

    random_problem = folder / "random_600_causal.json"
    produce(["random", "--seq-len", "600", "--d-model", "64", "--heads", "4", "--seed", "3", "--causal"],
            random_problem)
    cases.append(["compute", str(random_problem), "--format", "json", "--step", "output", NUMERIC])

    lines, notes = [], []
    for sample in problem_inputs(SAMPLES):
        name = relative(sample)
        own = reference.run(["compute", name, "--format", "json"])
        if own.exit_code != 0:
            notes.append(f"{name} is not a problem (exit {own.exit_code} at {reference.label}): no check of it")
            continue
        if sample.suffix == ".json":
            lines.append(json.dumps(json.loads(sample.read_text())))
        own_path = folder / f"{sample.stem}_own.json"
        own_path.write_bytes(own.stdout)
        # wrong numbers that a common mistake explains: the output with the other scale
        rule = json.loads(own.stdout)["meta"]["scale"]["rule"]
        wrong_path = folder / f"{sample.stem}_wrong_scale.json"
        other_scale = "sqrt" if rule == "none" else "none"
        produce(["compute", name, "--format", "json", "--step", "output", "--scale", other_scale], wrong_path)
        cases += [["check", name, "--expected", str(own_path)],
                  ["check", name, "--expected", str(wrong_path)],
                  ["check", name, "--expected", str(wrong_path), "--format", "json"]]
    # the numbers softmaxᵀ·V gives, shipped with the samples
    if (SAMPLES / "classic_mistake.json").exists():
        cases += [["check", "samples/classic.json", "--expected", "samples/classic_mistake.json"],
                  ["check", "samples/classic.json", "--expected", "samples/classic_mistake.json", "--format", "json"]]
    stream = folder / "samples.jsonl"
    stream.write_text("".join(line + "\n" for line in lines))
    cases.append(["compute", str(stream)])
    return cases, notes


def all_cases(generated: list[list[str]]) -> list[Case]:
    samples = [relative(path) for path in problem_inputs(SAMPLES)]
    runs: list[list[str]] = []
    runs += [["compute", name, "--format", "json"] for name in samples]
    runs += [["compute", relative(path), "--format", "json"] for path in problem_inputs(DATA)]
    runs += bad_input_cases()
    runs.append(["compute", relative(CORPUS / "good.json"), "--format", "json"])
    runs += [["demo", "--format", "json"], ["demo"],
             ["shapes", "--seq-len", "10", "--d-model", "512", "--heads", "8", "--format", "json"]]
    runs += [["shapes", name, "--format", "json"] for name in samples]
    runs += [["compute", name, "--format", "csv", "-s", "softmax"] for name in samples]
    runs += [["compute", name] for name in samples]
    runs += generated
    return [Case([arg for arg in args if arg != NUMERIC], numeric=NUMERIC in args) for args in runs]


def first_difference(current: bytes, reference: bytes) -> str:
    at = next((i for i, (a, b) in enumerate(zip(current, reference, strict=False)) if a != b),
              min(len(current), len(reference)))
    start = max(0, at - 16)
    return (f"at byte {at} of {len(current)} vs {len(reference)}: "
            f"current {current[start:at + 48]!r} ref {reference[start:at + 48]!r}")


def compare(case: Case, current: Tree, reference: Tree) -> Case:
    ours, theirs = current.run(case.args), reference.run(case.args)
    if ours.exit_code != theirs.exit_code:
        case.differences.append(f"exit code {ours.exit_code} vs {theirs.exit_code}")
    for stream in ("stdout", "stderr"):
        mine, yours = getattr(ours, stream), getattr(theirs, stream)
        if mine == yours:
            continue
        if case.numeric and stream == "stdout":
            case.agreement = numeric_agreement(json.loads(mine), json.loads(yours))
            if case.agreement is not None and case.agreement <= NUMERIC_RTOL:
                continue
        case.differences.append(f"{stream} {first_difference(mine, yours)}")
    return case


def numeric_agreement(mine: object, yours: object) -> float | None:
    """The largest difference between the numbers of two JSON documents of the same structure
    (strings and the rest equal), relative to the largest magnitude among them, as the blocked
    path promises agreement (a cell near 0 may differ more relative to itself); None when their
    structure or non-numbers differ."""
    pairs: list[tuple[float, float]] = []

    def walk(a: object, b: object) -> bool:
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(walk(a[key], b[key]) for key in a)
        if isinstance(a, list) and isinstance(b, list):
            return len(a) == len(b) and all(walk(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(a, float) and isinstance(b, float):
            pairs.append((a, b))
            return True
        return a == b

    if not walk(mine, yours):
        return None
    scale = max((max(abs(a), abs(b)) for a, b in pairs), default=0.0)
    return max((abs(a - b) for a, b in pairs), default=0.0) / scale if scale else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default=DEFAULT_REF, metavar="REF", help=f"git ref (default {DEFAULT_REF})")
    parser.add_argument("--jobs", type=int, default=2, help="commands run at once (default 2)")
    options = parser.parse_args()
    rerun = "python tests/compare_outputs.py" + (f" --against {options.against}"
                                                  if options.against != DEFAULT_REF else "")
    current = Tree("current", ROOT, entry_point((ROOT / "pyproject.toml").read_text()))
    with tempfile.TemporaryDirectory(prefix="attncli-compare-") as temporary:
        reference = extract(options.against, Path(temporary) / "ref")
        inputs = Path(temporary) / "inputs"
        inputs.mkdir()
        generated, notes = make_inputs(reference, inputs)
        cases = all_cases(generated)
        with ThreadPoolExecutor(max_workers=options.jobs) as pool:
            done = list(pool.map(lambda case: compare(case, current, reference), cases))
    for note in notes:
        print(f"note: {note}")
    differing = [case for case in done if case.differences]
    for case in differing:
        for difference in case.differences:
            print(f"DIFFERS {case.name}: {difference}")
    for case in done:
        if case.agreement is not None and not case.differences:
            print(f"note: {case.name}: the same numbers to {case.agreement:.1e} relative (the blocked path "
                  f"agrees to rounding, not to the last digit)")
    identical = sum(1 for case in done if not case.differences and case.agreement is None)
    print(f"compare_outputs: {len(done)} cases, {identical} identical to {options.against}"
          + (f", {len(done) - len(differing) - identical} the same numbers" if len(done) - len(differing) > identical
             else "") + (f", {len(differing)} differ" if differing else ""))
    print(f"rerun: {rerun}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
