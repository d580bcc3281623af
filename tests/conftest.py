from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

# In CI every property runs on the same examples each time: a rare example a developer's run finds
# is kept in .hypothesis/ and dealt with there, never met by chance in the run that decides a landing.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
SAMPLES = ROOT / "samples"


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch):
    # Rich and Typer change their output under these; tests pin a plain, known terminal.
    for name in ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "TERM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "100")


def load(name: str):
    return json.loads((DATA / name).read_text())


@pytest.fixture(scope="session")
def seed_example():
    return load("seed_example.json")
