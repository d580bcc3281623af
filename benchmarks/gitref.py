"""A git commit's attncli package, taken out beside the working tree, for the benchmarks' --against."""

from __future__ import annotations

import argparse
import io
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def extract(ref: str, folder: Path) -> Path:
    """The git ref's attncli/ package, written under ``folder`` (git archive); returns ``folder``."""
    done = subprocess.run(["git", "archive", "--format=tar", ref, "attncli"], cwd=ROOT, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"git archive {ref} attncli failed: {done.stderr.decode().strip()}")
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        tar.extractall(folder, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    return folder


def rounds_and_ref(description: str, rounds: int) -> argparse.Namespace:
    """The options of a benchmark timed in rounds: ``--rounds N`` and ``--against REF``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--against", metavar="REF", help="also measure the code of this git ref, side by side")
    return parser.parse_args()
