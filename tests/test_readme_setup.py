"""The README's set-up notes: a virtual environment before the two commands (a system Python marked
externally managed refuses `pip install .`, PEP 668), and how long the test suite takes."""

from __future__ import annotations

import re

from conftest import ROOT

README = (ROOT / "README.md").read_text()
SET_UP = README[:README.index("\n## ")]


def test_the_readme_says_to_make_a_virtual_environment_before_installing():
    assert "python3 -m venv .venv && . .venv/bin/activate" in SET_UP
    assert "externally-managed-environment" in SET_UP and "PEP 668" in SET_UP


def test_the_readme_says_how_long_the_test_suite_takes():
    assert re.search(r"about \d+ tests, in under a minute", SET_UP)
