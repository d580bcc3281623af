"""The number helpers the readers, the PyTorch-name translation and the validator share."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from attncli.errors import ProblemError
from attncli.numbers import as_array, counted, float_array, index_text, nested_shape, refuse_non_finite, shape_text

NUMBERS = (int, float)


def error_of(function, *args) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        function(*args)
    return caught.value


def test_words_for_counts_cells_and_shapes():
    assert counted(1, "row") == "1 row"
    assert counted(0, "row") == "0 rows"
    assert counted(3, "column") == "3 columns"
    assert index_text([]) == ""
    assert index_text([0, 2, 11]) == "[0][2][11]"
    assert shape_text((2, 3)) == "2×3"
    assert shape_text((4,)) == "4"
    assert shape_text(()) == "a single number"


@pytest.mark.parametrize(("value", "shape"), [
    (5, ()),
    (2.5, ()),
    ([], (0,)),
    ([1, 2.5, 3], (3,)),
    ([[1, 2, 3], [4, 5, 6]], (2, 3)),
    ([[[1], [2]], [[3], [4]], [[5], [6]]], (3, 2, 1)),
    ([[1, 2], [3.0, np.float64(4)]], (2, 2)),  # a numpy float is a float
    (np.zeros((2, 5, 3)), (2, 5, 3)),
    (np.arange(4), (4,)),
])
def test_nested_shape(value, shape):
    assert nested_shape("x", value, [], NUMBERS) == shape


def test_nested_shape_takes_booleans_only_when_allowed():
    assert nested_shape("mask", [[True, False], [1, 0]], [], (bool, int, float)) == (2, 2)
    assert nested_shape("mask", np.array([[True, False]]), [], (bool, int, float)) == (1, 2)
    assert error_of(nested_shape, "x", [[1, True]], [], NUMBERS).message == "x[0][1] is true, expected a number"
    assert error_of(nested_shape, "x", np.array([True]), [], NUMBERS).message == \
        "x holds values of type bool, expected numbers"


@pytest.mark.parametrize(("value", "message"), [
    ([[1, 2, 3], [4, 5]], "x: row 1 has 2 values but row 0 has 3"),
    ([[1, 2], [3]], "x: row 1 has 1 value but row 0 has 2"),
    ([[[1, 2], [3, 4]], [[1, 2], [3]]], "x[1]: row 1 has 1 value but row 0 has 2"),
    ([[[1, 2]], [[1, 2], [3, 4]]], "x[1] has shape 2×2 but x[0] has 1×2"),
    ([[1, 2], 3], "x[1] has shape a single number but x[0] has 2"),
    ([[1, "2"]], "x[0][1] is the string '2', expected a number"),
    ([[None, 1]], "x[0][0] is null, expected a number"),
    ([[1, {"a": 1}]], "x[0][1] is an object, expected a number"),
    ("causal", "x is the string 'causal', expected a number"),
    (json.loads("[" * 8 + "1" + "]" * 8), "x is nested more than 4 deep; a matrix has at most 4 axes"),
    (np.array(["a", "b"]), "x holds values of type <U1, expected numbers"),
])
def test_nested_shape_says_what_is_wrong(value, message):
    error = error_of(nested_shape, "x", value, [], NUMBERS)
    assert error.message == message
    assert error.key == "x"


def test_as_array_gives_float64_with_the_same_values():
    array = as_array("w_query", [[1, 2], [3, 4.5]], (2,))
    assert array.dtype == np.float64 and array.shape == (2, 2)
    np.testing.assert_array_equal(array, [[1.0, 2.0], [3.0, 4.5]])
    from_integers = as_array("b_out", np.array([1, -2, 3], dtype=np.int32), (1,))
    assert from_integers.dtype == np.float64
    np.testing.assert_array_equal(from_integers, [1.0, -2.0, 3.0])


@pytest.mark.parametrize(("value", "ranks", "message", "shapes"), [
    ([1, 2, 3], (2, 3), "x must be a 2-D or 3-D array, got a 1-D array of shape 3", {"x": (3,)}),
    (7, (2,), "x must be a 2-D array, got a single number", {"x": ()}),
    ([[]], (2,), "x is empty (shape 1×0)", {"x": (1, 0)}),
    ([[1, float("nan")]], (2,), "x[0][1] is NaN; every value must be a finite number", {}),
    ([[1], [float("-inf")]], (2,), "x[1][0] is infinite (beyond ±1.8e308); every value must be a finite number", {}),
    ([[1, 10**400]], (2,), "x[0][1] is an integer too large for float64 (beyond ±1.8e308)", {}),
])
def test_as_array_refuses(value, ranks, message, shapes):
    error = error_of(as_array, "x", value, ranks)
    assert error.message == message
    assert error.shapes == shapes and error.key == "x"


def test_float_array_finds_the_integer_too_large():
    assert error_of(float_array, "mask", [[1, 1], [1, -(10**309)]]).message == \
        "mask[1][1] is an integer too large for float64 (beyond ±1.8e308)"
    # the largest float64 itself is still a number
    largest = int(np.finfo(np.float64).max)
    np.testing.assert_array_equal(float_array("x", [[largest]]), [[np.finfo(np.float64).max]])
    np.testing.assert_array_equal(float_array("x", np.array([[1, 2]], dtype=np.int64)), [[1.0, 2.0]])
    assert float_array("x", [1, 2]).dtype == np.float64


def test_check_finite_names_the_first_bad_cell():
    refuse_non_finite("x", np.array([[1.0, -2.0], [1e308, 1e308]]))  # a sum beyond float64 is no bad cell
    array = np.ones((2, 3, 2))
    array[1, 2, 0] = math.nan
    array[1, 2, 1] = math.inf
    assert error_of(refuse_non_finite, "k", array).message == "k[1][2][0] is NaN; every value must be a finite number"
    array[1, 2, 0] = 0.0
    assert error_of(refuse_non_finite, "k", array).message == \
        "k[1][2][1] is infinite (beyond ±1.8e308); every value must be a finite number"


def test_opposite_huge_values_are_finite_and_warn_nothing():
    # ±1e308 + ∓1e308 in the quick sum is inf − inf: numpy would warn "invalid value"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        refuse_non_finite("v", np.array([[1e308, 1e308], [-1e308, -1e308]]))
