"""How messages word what a user gave: near misses, JSON values, head counts."""

from __future__ import annotations

import pytest

from attncli.keys import FILE_KEYS, KNOWN_KEYS
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
    assert closest("ky", ("w_key",), 0.6) == ""
    assert closest("ky", ("w_key",), 0.5) == "; did you mean 'w_key'?"


@pytest.mark.parametrize(("word", "name"), [
    *[(word, "w_query") for word in ("wq", "Wq", "WQ", "W_Q", "w-q", "q_weight", "q_proj", "Q_PROJ", "query",
                                     "Query", "wquery", "query_weight")],
    *[(word, "w_key") for word in ("wk", "Wk", "W_K", "k_weight", "k_proj", "key")],
    *[(word, "w_value") for word in ("wv", "WV", "W_V", "v_weight", "v_proj", "value")],
    *[(word, "w_out") for word in ("wo", "Wo", "W_O", "o_weight", "o_proj", "out_proj")],
    *[(word, "b_query") for word in ("bq", "BQ", "b_Q", "q_bias", "query_bias", "q_proj_bias")],
    *[(word, "b_key") for word in ("bk", "k_bias")],
    *[(word, "b_value") for word in ("bv", "v_bias")],
    *[(word, "b_out") for word in ("bo", "o_bias")],
])
def test_closest_knows_the_usual_spellings_of_weights_and_biases(word, name):
    assert closest(word, KNOWN_KEYS) == f"; did you mean {name!r}?"
    assert closest(word, FILE_KEYS, 0.6) == f"; did you mean {name!r}?"
    # only among the choices offered: a step named "q" is not a weight
    assert closest(word, ("x", "mask")) == ""


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
