"""The readers, called directly: which reader each input gets, what it returns, what it refuses.
(The same inputs through the CLI are in test_io.py.)"""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from conftest import SAMPLES

from attncli import sources
from attncli.delimited import parse_csv
from attncli.dumps import read_expected
from attncli.errors import ProblemError
from attncli.readers import (
    json_line_chunks,
    parse_json,
    read_inputs,
    read_matrix,
    read_problem,
)

CLASSIC = json.loads((SAMPLES / "classic.json").read_text())
X = CLASSIC["x"]


def as_flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def error_of(function, *args, **kwargs) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        function(*args, **kwargs)
    return caught.value


def npy_bytes(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.array(array, dtype=np.float64))
    return buffer.getvalue()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{key: np.array(value) for key, value in arrays.items()})
    return buffer.getvalue()


# --- CSV ------------------------------------------------------------------------------------------

def test_csv_tolerates_header_bom_blank_lines_comments_and_tabs():
    text = "\ufeff# a comment\nname,a,b\n\n1, 2 ,3\n# another\n4,5,6\n"
    np.testing.assert_array_equal(parse_csv(text.encode()), [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(parse_csv(b"1\t2\n3\t4\n"), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(parse_csv(b'"1.5","-2e3"\n'), [[1.5, -2000.0]])


def test_csv_may_be_separated_by_white_space_as_numpy_savetxt_writes(tmp_path):
    matrix = np.array([[1.0, 0.0, -2.5e-7], [0.0, 2.0, 3.0]])
    np.savetxt(tmp_path / "x.csv", matrix)
    np.savetxt(tmp_path / "row.csv", matrix[:1])
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "x.csv")), matrix)
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "row.csv")), matrix[:1])
    np.testing.assert_array_equal(read_matrix("-", io.BytesIO((tmp_path / "x.csv").read_bytes())), matrix)
    np.testing.assert_array_equal(parse_csv(b"# a b\na  b\n 1   2 \n\"3\" 4\n"), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(parse_csv(b"true false\n", booleans=True), [[1.0, 0.0]])
    assert error_of(parse_csv, b"1 2\n3 x\n").message == "line 2, column 2: 'x' is not a number"
    assert error_of(parse_csv, b"1 2\n3\n").message == "line 2 has 1 values but line 1 has 2"
    # a one-column file is the same either way
    np.testing.assert_array_equal(parse_csv(b"value\n1\n2\n"), [[1], [2]])


def test_a_first_row_of_numbers_in_another_separator_is_not_a_header():
    # it was skipped as a header and the second row was blamed, or the file held "no numbers"
    assert error_of(parse_csv, b"1,2\n3,4\n", "\t").message == "line 1, column 1: '1,2' is not a number"
    assert error_of(parse_csv, b"1 2\t3\n4 5\t6\n", "\t").message == "line 1, column 1: '1 2' is not a number"


def test_csv_booleans_and_masked_logits_only_when_asked():
    np.testing.assert_array_equal(parse_csv(b"true,False\n", booleans=True), [[1.0, 0.0]])
    # with no number in it, a first row of true/false is a header when booleans are not asked for
    assert error_of(parse_csv, b"true,false\n").message == "holds no numbers"
    np.testing.assert_array_equal(parse_csv(b"1,-inf\n", masked=True), [[1.0, -math.inf]])
    assert error_of(parse_csv, b"1,-inf\n").message == "line 1, column 2: -inf is not a finite number"
    assert error_of(parse_csv, b"1,+inf\n", masked=True).message == "line 1, column 2: +inf is not a finite number"


def test_csv_long_form_gives_its_leading_axes():
    text = b"batch,heads,row,0,1\n" + b"".join(
        f"{b},{h},{r},{b}{h}{r},-{b}{h}{r}\n".encode() for b in range(2) for h in range(3) for r in range(2))
    array = parse_csv(text)
    assert array.shape == (2, 3, 2, 2)
    assert array[1, 2, 0].tolist() == [120.0, -120.0]
    assert parse_csv(b"row,0,1\n0,1,2\n1,3,4\n").tolist() == [[1, 2], [3, 4]]
    assert parse_csv(b"heads\trow\t0\n0\t0\t-inf\n", masked=True).tolist() == [[[-math.inf]]]


IN_ORDER = "(a long-form file lists each row once, in order)"


@pytest.mark.parametrize(("text", "message"), [
    (b"batch,row,0\n0,0,1\n0,2,1\n", f"line 3: expected the indices 0,1, got 0,2 {IN_ORDER}"),
    (b"batch,row,0\n0,0,1\n1,1,1\n", f"line 3: expected the indices 0,1, got 1,1 {IN_ORDER}"),
    (b"batch,row,0\n0,0,1\n0,1,1\n1,0,1\n", "has 3 rows but its indices call for 4 (2×2)"),
    (b"batch,row,0\n0,0.5,1\n", "line 2, column 2: 0.5 is not an index (0, 1, 2, …)"),
    (b"batch,row,0\n0,0\n", "line 2 has no values after its 2 index columns"),
    # not a long-form header (its columns do not count from 0): not a header at all
    (b"batch,row,1\n0,0,1\n", "line 1, column 1: 'batch' is not a number"),
])
def test_csv_long_form_refuses_rows_out_of_place(text, message):
    assert error_of(parse_csv, text).message == message


# --- one matrix: the reader follows the suffix, or the bytes --------------------------------------

@pytest.mark.parametrize(("name", "content"), [
    ("x.csv", "\n".join(",".join(map(str, row)) for row in X).encode()),
    ("x.tsv", "\n".join("\t".join(map(str, row)) for row in X).encode()),
    ("x.json", json.dumps(X).encode()),
    ("x.npy", npy_bytes(X)),
    ("X.CSV", "\n".join(",".join(map(str, row)) for row in X).encode()),
    # the signature wins over the suffix: NumPy's bytes in a .csv are an array
    ("x_saved_as.csv", npy_bytes(X)),
    ("x_saved_as.json", npy_bytes(X)),
])
def test_read_matrix_from_each_format(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    np.testing.assert_array_equal(read_matrix(str(tmp_path / name)), X)


def test_a_tsv_is_split_at_tabs_only_and_a_csv_at_commas_only(tmp_path):
    (tmp_path / "a.tsv").write_text("1,5\t2\n")
    assert error_of(read_matrix, str(tmp_path / "a.tsv")).message == "line 1, column 1: '1,5' is not a number"
    (tmp_path / "a.csv").write_text("1\t2,3\n")
    assert error_of(read_matrix, str(tmp_path / "a.csv")).message == "line 1, column 1: '1\\t2' is not a number"


@pytest.mark.parametrize(("data", "expected"), [
    (npy_bytes(X), X),
    (json.dumps(X).encode(), X),
    (b"\xef\xbb\xbf \n " + json.dumps(X).encode(), X),
    (b"1\t2\n3\t4\n", [[1, 2], [3, 4]]),  # the first row says: tab
    (b"1,2\n3,4\n", [[1, 2], [3, 4]]),
])
def test_read_matrix_from_stdin_by_its_bytes(data, expected):
    np.testing.assert_array_equal(read_matrix("-", io.BytesIO(data)), expected)


def test_a_mask_matrix_may_say_true_and_false():
    np.testing.assert_array_equal(read_matrix("-", io.BytesIO(b"true,false\n"), key="mask"), [[1.0, 0.0]])


def test_a_npy_file_is_read_straight_from_the_file(tmp_path, monkeypatch):
    np.save(tmp_path / "x.npy", np.array(X, dtype=np.float64))

    def whole_file(*args):
        raise AssertionError("a .npy file is not read into memory first")

    monkeypatch.setattr(sources, "read_bytes", whole_file)
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "x.npy")), X)


def test_a_json_object_is_a_matrix_only_when_allowed(tmp_path):
    (tmp_path / "steps.json").write_text('{"softmax": [[1, 0]]}')
    assert read_matrix(str(tmp_path / "steps.json"), allow_object=True) == {"softmax": [[1, 0]]}
    assert error_of(read_matrix, str(tmp_path / "steps.json")).message == \
        "holds a JSON object; a matrix file holds a bare array such as [[1, 2], [3, 4]]"


@pytest.mark.parametrize("name", ["x.xlsx", "x.npz", "x.jsonl", "x"])
def test_unknown_matrix_extension(tmp_path, name):
    (tmp_path / name).write_text("1")
    suffix = repr(name[1:]) if "." in name else "'(none)'"
    assert str(error_of(read_matrix, str(tmp_path / name))) == \
        f"unknown extension {suffix} for a matrix: use .csv, .tsv, .json, .npy or .txt"


# --- whole problems -------------------------------------------------------------------------------

def test_read_problem_json_names_its_file_for_each_key():
    inputs = read_problem(str(SAMPLES / "classic.json"))
    assert inputs.document == CLASSIC
    assert inputs.sources == {key: str(SAMPLES / "classic.json") for key in CLASSIC}


def test_read_problem_npz_by_suffix_or_by_signature(tmp_path):
    data = npz_bytes(x=X, heads=2, scale="none")
    for name in ("p.npz", "p_saved_as.json"):
        (tmp_path / name).write_bytes(data)
        inputs = read_problem(str(tmp_path / name))
        assert sorted(inputs.document) == ["heads", "scale", "x"] and inputs.sources == {}
        np.testing.assert_array_equal(inputs.document["x"], X)
        assert (inputs.document["heads"], inputs.document["scale"]) == (2, "none")
    from_stdin = read_problem("-", io.BytesIO(data))
    assert from_stdin.document["heads"] == 2 and from_stdin.sources == {}


def test_read_problem_from_stdin_is_json():
    inputs = read_problem("-", io.BytesIO(b'{"x": [[1, 2]], "heads": 1}'))
    assert inputs.document == {"x": [[1, 2]], "heads": 1}
    assert inputs.sources == {"x": "<stdin>", "heads": "<stdin>"}


def test_a_json_lines_file_read_as_one_problem(tmp_path):
    (tmp_path / "one.jsonl").write_text('{"x": [[1]]}\n')
    assert read_problem(str(tmp_path / "one.jsonl")).document == {"x": [[1]]}
    (tmp_path / "two.jsonl").write_text('{"x": [[1]]}\n{"x": [[2]]}\n')
    error = error_of(read_problem, str(tmp_path / "two.jsonl"))
    assert error.render(as_flag) == \
        "invalid JSON at line 2, column 1: Extra data (one problem per line? give a .jsonl file, or --lines)"
    assert str(error) == \
        "invalid JSON at line 2, column 1: Extra data (one problem per line? give a .jsonl file, or lines)"


def test_unknown_problem_extension_names_fields_not_flags(tmp_path):
    (tmp_path / "problem.yaml").write_text("x: 1")
    error = error_of(read_problem, str(tmp_path / "problem.yaml"))
    start = "unknown extension '.yaml': a problem is a .json or .npz file or a folder"
    assert error.render(as_flag) == f"{start} (single matrices go in --x, --w-query, …)"
    assert str(error) == f"{start} (single matrices go in x, w_query, …)"


def test_a_folder_reads_every_matrix_format_and_its_options(tmp_path):
    folder = tmp_path / "problem"
    folder.mkdir()
    np.save(folder / "x.npy", np.array(X, dtype=np.float64))
    (folder / "w_query.json").write_text(json.dumps(CLASSIC["w_query"]))
    (folder / "w_key.tsv").write_text("\n".join("\t".join(map(str, row)) for row in CLASSIC["w_key"]))
    (folder / "w_value.csv").write_text("\n".join(",".join(map(str, row)) for row in CLASSIC["w_value"]))
    (folder / "problem.json").write_text('{"scale": "none"}')
    (folder / "softmax.csv").write_text("written by attncli: not an input")
    (folder / "notes.md").write_text("not a matrix format")
    inputs = read_problem(str(folder))
    assert sorted(inputs.document) == ["scale", "w_key", "w_query", "w_value", "x"]
    for key in ("x", "w_query", "w_key", "w_value"):
        np.testing.assert_array_equal(inputs.document[key], CLASSIC[key])
    assert inputs.sources == {"scale": str(folder / "problem.json"), "x": str(folder / "x.npy"),
                              "w_query": str(folder / "w_query.json"), "w_key": str(folder / "w_key.tsv"),
                              "w_value": str(folder / "w_value.csv")}


def test_a_folder_without_x(tmp_path):
    error = error_of(read_problem, str(tmp_path))
    assert error.message == ("holds no x (x.csv, x.tsv, x.json, x.npy or x.txt); "
                             "a problem folder has one file per matrix")
    assert error.source == str(tmp_path)


# --- inputs together, the numbers to check, JSON Lines --------------------------------------------

def test_read_inputs_puts_single_matrices_in_place(tmp_path):
    (tmp_path / "x2.csv").write_text("\n".join(",".join(str(2 * v) for v in row) for row in X))
    inputs = read_inputs(str(SAMPLES / "classic.json"), {"x": str(tmp_path / "x2.csv")})
    np.testing.assert_array_equal(inputs.document["x"], 2 * np.array(X))
    assert inputs.document["w_query"] == CLASSIC["w_query"]
    assert inputs.sources["x"] == str(tmp_path / "x2.csv")
    assert inputs.sources["w_query"] == str(SAMPLES / "classic.json")
    error = error_of(read_inputs, "-", {"x": "-"}, io.BytesIO(b"{}"))
    assert (error.message, error.source) == ("standard input (-) can feed only one input", "<stdin>")


def test_read_expected_takes_a_step_of_an_object_and_null_as_masked(tmp_path):
    (tmp_path / "out.json").write_text('{"logits": [[1.5, null], [2, 3]]}')
    np.testing.assert_array_equal(read_expected(str(tmp_path / "out.json"), "logits"), [[1.5, -math.inf], [2, 3]])
    error = error_of(read_expected, str(tmp_path / "out.json"), "softmax")
    assert (error.message, error.source) == ("holds no key 'softmax' (its keys: 'logits')", str(tmp_path / "out.json"))


def test_json_lines_are_numbered_and_blank_ones_skipped():
    stream = io.BytesIO(b'{"x": 1}\n\n[1] [2]\n{"x": 2}\n')
    parsed = [pair for chunk in json_line_chunks(stream, 512, 1 << 20) for pair in chunk]
    assert [number for number, _ in parsed] == [1, 3, 4]
    assert parsed[0][1] == {"x": 1} and parsed[2][1] == {"x": 2}
    assert parsed[1][1].render(as_flag) == \
        "invalid JSON at column 5: Extra data (one problem per line? give a .jsonl file, or --lines)"


@pytest.mark.parametrize(("text", "message"), [
    # a trailing comma: where the comma is, on its own line when the bracket is on the next
    ('{"a": 1,}', "line 1, column 8: a comma before '}' is not allowed in JSON"),
    ('{\n  "a": [1, 2],\n}', "line 2, column 14: a comma before '}' is not allowed in JSON"),
    ("[1, 2 , ]", "line 1, column 7: a comma before ']' is not allowed in JSON"),
    # a comma missing at the end of a line: the line of the value it should follow
    ('{\n  "a": 1\n  "b": 2\n}', "line 3: expected a comma after the value on line 2"),
    ("[[1, 2]\n\n [3, 4]]", "line 3: expected a comma after the value on line 1"),
    # everything else as Python words it
    ('{"a": 1 "b": 2}', "invalid JSON at line 1, column 9: Expecting ',' delimiter"),
    ('{"a": 1\n', "invalid JSON at line 2, column 1: Expecting ',' delimiter"),
    ("[1,,2]", "invalid JSON at line 1, column 4: Expecting value"),
    ("{,}", "invalid JSON at line 1, column 2: Expecting property name enclosed in double quotes"),
    ("[1, }", "invalid JSON at line 1, column 5: Expecting value"),
])
def test_json_slips_in_plain_words(text, message):
    assert error_of(parse_json, text.encode()).message == message


def test_a_trailing_comma_in_a_json_line_gives_its_column():
    [(_, error)], = json_line_chunks(io.BytesIO(b'{"x": [[1]],}\n'), 512, 1 << 20)
    assert error.message == "column 12: a comma before '}' is not allowed in JSON"


def test_an_npz_name_on_npy_bytes_and_the_reverse_are_errors_not_crashes(tmp_path):
    # np.load reads whatever the bytes are: a single array under an .npz name crashed on `with`,
    # and an archive under an .npy name came back as an NpzFile where a matrix was expected
    from attncli.readers import parse_npz, read_matrix

    single, archive = io.BytesIO(), io.BytesIO()
    np.save(single, np.eye(3))
    np.savez(archive, x=np.eye(3))
    with pytest.raises(ProblemError, match=r"^holds a single \.npy array, not an \.npz archive of named arrays"):
        parse_npz(single.getvalue())
    (tmp_path / "x.npy").write_bytes(archive.getvalue())
    with pytest.raises(ProblemError, match=r"^is an \.npz archive of named arrays, not one \.npy array"):
        read_matrix(str(tmp_path / "x.npy"), key="x")
    np.testing.assert_array_equal(parse_npz(archive.getvalue())["x"], np.eye(3))


def test_a_txt_matrix_as_numpy_savetxt_writes_it_and_notes_in_a_folder_are_left_alone(tmp_path):
    # issue 10, item 16: `--x x.txt` from np.savetxt; a folder's README.txt is not a matrix
    from attncli.readers import read_folder, read_matrix

    matrix = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 2.0, 0.0, 2.0]])
    np.savetxt(tmp_path / "x.txt", matrix)
    np.testing.assert_array_equal(read_matrix(str(tmp_path / "x.txt"), key="x"), matrix)
    np.savetxt(tmp_path / "w_query.txt", np.eye(4), delimiter=",")
    (tmp_path / "README.txt").write_text("weights from the walk-through\n")
    inputs = read_folder(tmp_path)
    assert sorted(inputs.document) == ["w_query", "x"]
    np.testing.assert_array_equal(inputs.document["w_query"], np.eye(4))


def test_a_users_csv_may_hold_nan_rows_and_masked_logits(tmp_path):
    path = tmp_path / "output.csv"
    path.write_text("nan,nan\n1.5,-inf\n")
    read = read_expected(str(path), "output")
    assert np.isnan(read[0]).all() and read[1, 0] == 1.5 and np.isneginf(read[1, 1])
