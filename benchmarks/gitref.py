"""A git commit's attncli package, taken out beside the working tree, for the benchmarks' --against."""

from __future__ import annotations

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
