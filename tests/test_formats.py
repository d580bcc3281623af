"""The registry of input formats: every suffix has one reader, the readers read what the registry
says, and the messages list the suffixes the registry holds."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, SAMPLES

from attncli import formats
from attncli.errors import ProblemError
from attncli.readers import choose_format, read_matrix, read_problem
from attncli.sources import Reading

CLASSIC = json.loads((SAMPLES / "classic.json").read_text())
X = CLASSIC["x"]


def test_every_suffix_maps_to_one_reader():
    suffixes = [suffix for entry in formats.INPUT_FORMATS for suffix in entry.suffixes]
    assert sorted(suffixes) == [".bin", ".ckpt", ".csv", ".json", ".jsonl", ".npy", ".npz", ".pt", ".pth",
                                ".safetensors", ".tsv", ".txt"]
    assert len(set(suffixes)) == len(suffixes)
    for entry in formats.INPUT_FORMATS:
        for suffix in entry.suffixes:
            assert formats.input_format(suffix) is entry
        assert callable(formats.load(entry.function))
        # a model is opened by attncli.safetensors (which reads safetensors and refuses pickles)
        assert entry.function.startswith("attncli.safetensors:" if "model" in entry.holds else "attncli.readers:")
    assert formats.input_format(".xlsx") is None


def test_what_each_kind_of_input_may_be():
    assert formats.input_suffixes("problem") == (".json", ".npz")
    assert formats.input_suffixes("matrix") == (".csv", ".tsv", ".json", ".npy", ".txt")
    assert formats.input_suffixes("lines") == (".jsonl",)
    assert formats.input_suffixes("model") == (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def test_signatures_are_what_numpy_writes():
    npy, npz = io.BytesIO(), io.BytesIO()
    np.save(npy, np.ones(2))
    np.savez(npz, x=np.ones(2))
    assert npy.getvalue().startswith(formats.input_format(".npy").signature)
    assert npz.getvalue().startswith(formats.input_format(".npz").signature)
    binary = [entry for entry in formats.INPUT_FORMATS if entry.signature]
    assert [entry.name for entry in binary] == ["NPY", "NPZ"]
    # a text format has no signature; JSON is told from CSV on standard input by how it starts
    assert [entry.name for entry in formats.INPUT_FORMATS if entry.starts] == ["JSON"]


def test_listed():
    assert formats.listed((".jsonl",)) == ".jsonl"
    assert formats.listed((".json", ".npz")) == ".json or .npz"
    assert formats.listed((".csv", ".tsv", ".json", ".npy")) == ".csv, .tsv, .json or .npy"
    assert formats.listed(("a", "b", "c"), "and") == "a, b and c"


@pytest.mark.parametrize(("path", "holds", "data", "name"), [
    ("x.csv", "matrix", b"1,2", "CSV"),
    ("x.tsv", "matrix", b"1\t2", "TSV"),
    ("x.json", "matrix", b"[[1, 2]]", "JSON"),
    ("x.npy", "matrix", b"", "NPY"),  # a binary format its suffix names: its bytes are not looked at
    ("x.csv", "matrix", b"\x93NUMPY...", "NPY"),
    ("x.json", "problem", b"PK\x03\x04...", "NPZ"),
    ("p.jsonl", "problem", b"{}", "JSON Lines"),
    ("p.jsonl", "problem", b"PK\x03\x04...", "NPZ"),
    ("-", "matrix", b"\x93NUMPY...", "NPY"),
    ("-", "matrix", b"\xef\xbb\xbf [[1]]", "JSON"),
    ("-", "matrix", b"{}", "JSON"),
    ("-", "matrix", b"1\t2", "CSV"),
    ("-", "matrix", b"PK\x03\x04...", "CSV"),  # an archive is no matrix
    ("-", "problem", b"PK\x03\x04...", "NPZ"),
    ("-", "problem", b"1,2", "JSON"),
    ("-", "problem", b"\x93NUMPY...", "JSON"),  # an array is no problem
])
def test_choose_format(tmp_path, path, holds, data, name):
    if path == "-":
        reading = Reading(path, holds, io.BytesIO(data))
    else:
        (tmp_path / path).write_bytes(data)
        reading = Reading(str(tmp_path / path), holds)
    assert choose_format(reading).name == name


def test_each_reader_reads_its_format(tmp_path):
    files = {
        ".csv": "\n".join(",".join(map(str, row)) for row in X).encode(),
        ".tsv": "\n".join("\t".join(map(str, row)) for row in X).encode(),
        ".json": json.dumps(X).encode(),
        ".txt": "\n".join(" ".join(f"{value:.18e}" for value in row) for row in X).encode(),  # np.savetxt's form
    }
    np.save(tmp_path / "x.npy", np.array(X, dtype=np.float64))
    for suffix, data in files.items():
        (tmp_path / f"x{suffix}").write_bytes(data)
    for suffix in formats.input_suffixes("matrix"):
        path = str(tmp_path / f"x{suffix}")
        reader = formats.load(formats.input_format(suffix).function)
        np.testing.assert_array_equal(reader(Reading(path, "matrix")), X)
    np.savez(tmp_path / "p.npz", x=np.array(X))
    (tmp_path / "p.jsonl").write_text(json.dumps({"x": X}) + "\n")
    for suffix in (*formats.input_suffixes("problem"), *formats.input_suffixes("lines")):
        path = str(SAMPLES / "classic.json") if suffix == ".json" else str(tmp_path / f"p{suffix}")
        document = formats.load(formats.input_format(suffix).function)(Reading(path, "problem"))
        np.testing.assert_array_equal(document["x"], X)


def error_of(function, *args) -> ProblemError:
    with pytest.raises(ProblemError) as caught:
        function(*args)
    return caught.value


def test_messages_list_what_the_registry_holds(tmp_path):
    (tmp_path / "x.xlsx").write_text("1")
    (tmp_path / "p.yaml").write_text("1")
    matrices = formats.listed(formats.input_suffixes("matrix"))
    problems = formats.listed(formats.input_suffixes("problem"))
    lines = formats.listed(formats.input_suffixes("lines"))
    assert error_of(read_matrix, str(tmp_path / "x.xlsx")).message == \
        f"unknown extension '.xlsx' for a matrix: use {matrices}"
    assert str(error_of(read_problem, str(tmp_path / "p.yaml"))).startswith(
        f"unknown extension '.yaml': a problem is a {problems} file or a folder")
    named_x = formats.listed(tuple(f"x{suffix}" for suffix in formats.input_suffixes("matrix")))
    assert error_of(read_problem, str(tmp_path)).message == \
        f"holds no x ({named_x}); a problem folder has one file per matrix"
    assert str(error_of(read_matrix, "-", io.BytesIO(b"[1] [2]"))).endswith(
        f"(one problem per line? give a {lines} file, or lines)")


def test_the_registry_imports_no_numpy():
    code = "import sys, attncli.formats; print('numpy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "False"
