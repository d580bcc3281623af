"""What attncli reads and writes: one registry each, by suffix (or file signature) and by name.

No numpy and no I/O here: the CLI's help texts and option checks list formats from these tables
without paying numpy's import. The functions that do the work are named as ``module:function``
and imported only when a file of that kind is read or written.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple


class InputFormat(NamedTuple):  # named tuples: quicker to define than dataclasses, on every run
    """A kind of input file: its ``name``, the ``suffixes`` that mark it, the ``signature`` its
    bytes begin with (b"" for none: a text format), what it ``holds`` ("problem", "matrix",
    "lines": many problems, or "model": tensors of which one attention layer is a problem) and
    the ``function`` ("module:function") that reads it, given an attncli.sources.Reading. A text
    format may say what its text ``starts`` with (after a BOM and white space): how it is told
    apart on standard input, which has no suffix.

    attncli.readers.choose_format picks the format of an input: a binary format its suffix names;
    else a signature its bytes begin with; else its suffix; else (standard input) how its text
    starts, or the first text format that holds what is asked for."""

    name: str
    suffixes: tuple[str, ...]
    signature: bytes
    holds: tuple[str, ...]
    function: str
    starts: tuple[bytes, ...] = ()


class OutputFormat(NamedTuple):
    """A kind of output: its ``name`` (as --format takes it), the ``suffixes`` of files that get
    it, whether it is ``binary``, the ``function`` ("module:function") that renders a trace (called
    as ``function(trace, steps, precision, full)``, giving text, bytes, or a function that writes
    the bytes into a binary file, for large outputs) and how --format's help ``describes`` it."""

    name: str
    suffixes: tuple[str, ...]
    binary: bool
    function: str
    describes: str


# In the order messages list them: "use .csv, .tsv, .json or .npy", "a .json or .npz file".
INPUT_FORMATS = (
    InputFormat("CSV", (".csv",), b"", ("matrix",), "attncli.readers:read_csv"),
    InputFormat("TSV", (".tsv",), b"", ("matrix",), "attncli.readers:read_tsv"),
    InputFormat("JSON", (".json",), b"", ("problem", "matrix"), "attncli.readers:read_json", (b"[", b"{")),
    InputFormat("NPY", (".npy",), b"\x93NUMPY", ("matrix",), "attncli.readers:read_npy"),
    # numbers separated by spaces, tabs or commas, as numpy's savetxt and MATLAB's dlmwrite write them
    InputFormat("text", (".txt",), b"", ("matrix",), "attncli.readers:read_text"),
    # Read where one problem is expected, a JSON Lines file is one JSON document (a file of one
    # line is its problem); a stream of many is read a chunk of lines at a time by attncli.readers.json_line_chunks.
    InputFormat("JSON Lines", (".jsonl",), b"", ("lines",), "attncli.readers:read_json"),
    InputFormat("NPZ", (".npz",), b"PK\x03\x04", ("problem",), "attncli.readers:read_npz"),
    # A model: a .safetensors file, or a Hugging Face folder (config.json and model.safetensors or
    # its shards); one attention layer of it is a problem (compute MODEL --layer N --x HIDDEN). Its
    # reader takes the path (a folder is no stream of bytes); a PyTorch pickle is refused there.
    InputFormat("safetensors", (".safetensors",), b"", ("model",), "attncli.safetensors:Checkpoint"),
    InputFormat("PyTorch pickle", (".bin", ".pt", ".pth", ".ckpt"), b"", ("model",), "attncli.safetensors:Checkpoint"),
)

# The first is the default: what a terminal is shown.
OUTPUT_FORMATS = (
    OutputFormat("table", (".txt",), False, "attncli.view:trace_text", "table (default)"),
    OutputFormat("json", (".json", ".jsonl"), False, "attncli.export:json_output", "json (all digits)"),
    OutputFormat("csv", (".csv",), False, "attncli.export:csv_output",
                 "csv (one step, or -o FOLDER for one file each)"),
    OutputFormat("npz", (".npz",), True, "attncli.export:npz_output", "npz"),
)


@functools.cache  # readers ask on every file they read
def input_suffixes(holds: str) -> tuple[str, ...]:
    """The suffixes of the input formats that hold ``holds`` ("problem", "matrix" or "lines")."""
    return tuple(suffix for entry in INPUT_FORMATS if holds in entry.holds for suffix in entry.suffixes)


def input_format(suffix: str) -> InputFormat | None:
    """The input format of files ending in ``suffix`` (lower case, with its dot), or None."""
    return next((entry for entry in INPUT_FORMATS if suffix in entry.suffixes), None)


def output_names() -> tuple[str, ...]:
    """The names --format takes for a trace: table, json, csv, npz."""
    return tuple(entry.name for entry in OUTPUT_FORMATS)


def output_suffixes() -> dict[str, str]:
    """Each output file suffix and the format it picks: {".json": "json", …, ".txt": "table"}."""
    return {suffix: entry.name for entry in _files_first() for suffix in entry.suffixes}


def output_help() -> tuple[str, str]:
    """How --format's help describes the formats, and the suffixes -o's help names (each format's
    first): ``("table (default), json (all digits), …, npz.", ".json .csv .npz .txt")``."""
    return (", ".join(entry.describes for entry in OUTPUT_FORMATS) + ".",
            " ".join(entry.suffixes[0] for entry in _files_first()))


def _files_first() -> tuple[OutputFormat, ...]:
    # in lists of file suffixes the formats made for files come first, the table's text last
    return (*OUTPUT_FORMATS[1:], OUTPUT_FORMATS[0])


def output_format(name: str) -> OutputFormat:
    """The output format called ``name`` (one of output_names())."""
    return next(entry for entry in OUTPUT_FORMATS if entry.name == name)


def listed(suffixes: tuple[str, ...], conjunction: str = "or") -> str:
    """Suffixes for a sentence: ``.csv, .tsv, .json or .npy``."""
    if len(suffixes) == 1:
        return suffixes[0]
    return f"{', '.join(suffixes[:-1])} {conjunction} {suffixes[-1]}"


def load(function: str) -> Callable[..., Any]:
    """The function named ``module:function``, imported now."""
    module, name = function.split(":")
    return getattr(importlib.import_module(module), name)
