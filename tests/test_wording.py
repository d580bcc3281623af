"""How messages word what a user gave: near misses, JSON values, head counts."""

from __future__ import annotations

import pytest

from attncli.wording import closest, describe, head_counts


@pytest.mark.parametrize(("word", "choices", "hint"), [
    ("w_quer", ("x", "w_query", "w_key"), "; did you mean 'w_query'?"),
    ("Heads", ("heads", "scale", "mask"), "; did you mean 'heads'?"),
    ("casual", ("causal",), "; did you mean 'causal'?"),
    ("zzz", ("heads", "scale", "mask"), ""),
    (3, ("heads",), ""),
])
def test_closest(word, choices, hint):
    assert closest(word, choices) == hint


def test_closest_cutoff():
    assert closest("w_kee", ("w_key", "w_value")) == "; did you mean 'w_key'?"
    assert closest("wk", ("w_key",), 0.6) == ""
    assert closest("wk", ("w_key",), 0.5) == "; did you mean 'w_key'?"


@pytest.mark.parametrize(("value", "words"), [
    (None, "null"),
    (True, "true"),
    (False, "false"),
    ("2", "the string '2'"),
    ("a string longer than twenty", "the string 'a string longer t...'"),
    ({"a": 1}, "an object"),
    ([1, 2], "an array"),
    (3, "3"),
    (1.5, "1.5"),
    (float("nan"), "nan"),
])
def test_describe(value, words):
    assert describe(value) == words


def test_head_counts_of_a_huge_prime_width_are_quick():
    assert head_counts(1_000_000_007, 2) == "1, 1000000007"
    assert head_counts(720, 7) == "2, 3, 4, 5, 6, 8, 9, 10"  # the 8 of its 30 divisors nearest 7
    assert head_counts(12) == "1, 2, 3, 4, 6, 12"


def test_wording_and_keys_import_no_numpy():
    import subprocess
    import sys

    code = "import sys, attncli.keys, attncli.wording; print('numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
