"""Read problems and matrices from JSON, JSON Lines, CSV/TSV, NPY, NPZ, folders and stdin.

Which reader reads a file comes from the registry in attncli.formats: by the file's suffix, or
by the signature its bytes begin with. Readers return plain Python values and numpy arrays and
raise ProblemError for anything unreadable; the caller prefixes the message with the file's name
(``error.source`` when a reader knows better, e.g. a file inside a folder).
Nothing here is ever unpickled.
"""

from __future__ import annotations

import functools
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from attncli import formats, torchnames
from attncli.errors import ProblemError, option
from attncli.keys import FILE_KEYS, STEP_NAMES
from attncli.sources import (
    BOM,
    STDIN_NAME,
    Reading,
    at_hand,
    decode_text,
    open_binary,
    read_bytes,
    require_existing,
    source_name,
    stdin_stream,
)
from attncli.wording import closest, describe, json_slip

OPTIONS_FILE = "problem.json"


@dataclass
class Inputs:
    """A problem document and where each of its keys came from (key -> path as given)."""

    document: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def weight_names(self) -> tuple[str, ...]:
        """The document's names for its weights: PyTorch's, stored (out, in), or attncli's (in, out)."""
        return torchnames.weight_names(self.document)

    def source_of(self, error: ProblemError, default: str) -> str:
        """The file to name in an error: the reader's own, the file of the key at fault, or ``default``."""
        return error.source or self.sources.get(error.key or "", default)


def parse_json(data: bytes, what: str = "a JSON object") -> Any:
    """Parse UTF-8 JSON strictly: duplicate keys are an error; NaN and Infinity literals become
    float nan/inf so that validation can say which cell holds them."""
    if not data or data.isspace():  # as not data.strip(), without a copy (once per line of a stream)
        raise ProblemError(f"is empty; expected {what}")
    text = decode_text(data)
    try:
        if text.startswith("\ufeff"):  # a second BOM: as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError as error:
        slip = json_slip(error.msg, error.doc, error.pos)
        if slip is not None:
            raise ProblemError(slip) from None
        hint = ""
        if error.msg == "Extra data":
            hint = f" (one problem per line? give a {formats.listed(formats.input_suffixes('lines'))} file, " \
                   f"or {option('lines')})"
        raise ProblemError(f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}{hint}") from None
    except RecursionError:
        raise ProblemError("invalid JSON: nested too deeply") from None
    except ProblemError:
        raise
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise ProblemError(f"invalid JSON: {error}") from None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) == len(pairs):  # no key twice (the common case, checked at C speed)
        return document
    document = {}
    for key, value in pairs:
        if key in document:
            raise ProblemError(f"key {key!r} appears twice in one object")
        document[key] = value
    return document


# one decoder for every document (json.loads with options makes one per call: a stream has many)
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicate_keys, parse_constant=float)


# --- choosing a reader from the registry -----------------------------------------------------------

def choose_format(reading: Reading) -> formats.InputFormat:
    """The registry's format for ``reading``: a binary format its suffix names; else the format
    (of those that hold what it should) whose signature its bytes begin with; else the one its
    suffix names; else, from standard input, the text format its text begins like, or the first."""
    named = formats.input_format(reading.suffix) if reading.suffix else None
    if named is not None and named.signature:
        return named
    candidates = _holding(reading.holds)
    data = reading.data()
    signed = next((entry for entry in candidates if entry.signature and data.startswith(entry.signature)), None)
    if signed is not None or named is not None:
        return signed or named  # type: ignore[return-value]
    text = [entry for entry in candidates if not entry.signature]
    start = data.removeprefix(BOM).lstrip()
    return next((entry for entry in text if entry.starts and start.startswith(entry.starts)), text[0])


@functools.cache
def _holding(holds: str) -> tuple[formats.InputFormat, ...]:
    return tuple(entry for entry in formats.INPUT_FORMATS if holds in entry.holds)


@functools.cache
def _reader(function: str) -> Callable[[Reading], Any]:
    """The reader a registry entry names, imported once."""
    return formats.load(function)


# --- whole problems -------------------------------------------------------------------------------

def read_problem(path: str, stdin: BinaryIO | None = None) -> Inputs:
    """The problem at ``path``: a JSON document (``-`` for stdin), an NPZ archive of named
    arrays, or a folder of one file per matrix (x.csv, w_query.npy, …) with an optional
    problem.json for the options."""
    source = source_name(path)
    require_existing(path)
    if path != "-" and Path(path).is_dir():
        return read_folder(Path(path))
    reading = Reading(path, "problem", stdin)
    # a JSON Lines file read as one problem is JSON (one line, one problem)
    if path != "-" and reading.suffix not in formats.input_suffixes("problem") + formats.input_suffixes("lines"):
        raise ProblemError(
            f"unknown extension {reading.suffix or '(none)'!r}: a problem is a "
            f"{formats.listed(formats.input_suffixes('problem'))} file or a folder "
            f"(single matrices go in {option('x')}, {option('w_query')}, …)"
        )
    chosen = choose_format(reading)
    document = _reader(chosen.function)(reading)
    # each key of a text document came from its file (an archive's errors name the archive anyway);
    # a document that is not an object is problem_from_document's to refuse
    named = isinstance(document, dict) and not chosen.signature
    return Inputs(document, {key: source for key in document} if named else {})


def read_folder(folder: Path) -> Inputs:
    """One file per matrix, named after its key (x.csv, w_query.npy: any matrix format), plus problem.json."""
    document: dict[str, Any] = {}
    sources: dict[str, str] = {}
    options_path = folder / OPTIONS_FILE
    if options_path.is_file():
        options = at_file(str(options_path), lambda: parse_json(read_bytes(str(options_path))))
        if not isinstance(options, dict):
            raise ProblemError(f"expected a JSON object of options, got {describe(options)}",
                               source=str(options_path))
        document.update(options)
        sources.update({key: str(options_path) for key in options})
    matrix_suffixes = formats.input_suffixes("matrix")
    for entry in sorted(folder.iterdir()):
        if entry.name == OPTIONS_FILE or entry.suffix.lower() not in matrix_suffixes or not entry.is_file():
            continue
        key = entry.stem
        if key in STEP_NAMES or (entry.suffix.lower() == ".txt" and key not in FILE_KEYS):
            continue  # a step attncli wrote here (one file per step), or notes beside the matrices
        if key not in FILE_KEYS:
            raise ProblemError(f"is not named after a matrix attncli knows{closest(key, FILE_KEYS, 0.6)}",
                               source=str(entry))
        if key in sources:
            raise ProblemError(f"{key} is given twice in this folder: {Path(sources[key]).name} and {entry.name}",
                               source=str(folder))
        document[key] = at_file(str(entry), lambda path=str(entry), key=key: read_matrix(path, key=key))
        sources[key] = str(entry)
    if "x" not in document:
        named_x = formats.listed(tuple(f"x{suffix}" for suffix in matrix_suffixes))
        raise ProblemError(f"holds no x ({named_x}); a problem folder has one file per matrix", source=str(folder))
    return Inputs(document, sources)


def at_file(path: str, read: Any) -> Any:
    """Run ``read``; its ProblemError names ``path`` when it names no file."""
    try:
        return read()
    except ProblemError as error:
        error.source = error.source or path
        raise


# --- models ---------------------------------------------------------------------------------------

def is_model(path: str) -> bool:
    """Whether ``path`` names a model rather than a problem: a file of a model format in the
    registry (.safetensors; a PyTorch pickle too, which the model reader refuses), or a folder
    holding config.json or a .safetensors file (a problem folder holds one file per matrix)."""
    if path == "-":
        return False
    candidate, suffixes = Path(path), formats.input_suffixes("model")
    if candidate.is_dir():
        try:
            return (candidate / "config.json").is_file() or any(entry.suffix in suffixes
                                                                for entry in candidate.iterdir())
        except OSError:
            return False  # unreadable: reading it as a problem folder says why
    return candidate.suffix.lower() in suffixes


# --- single matrices ------------------------------------------------------------------------------

def read_matrix(path: str, stdin: BinaryIO | None = None, key: str = "", allow_object: bool = False,
                masked: bool = False) -> Any:
    """One matrix from a .csv/.tsv, .json (a bare array; an object too with ``allow_object``) or
    .npy file, or ``-``: nested lists or an array, validated later as the document's ``key`` (a
    mask's CSV may say true/false; with ``masked``, a CSV may hold -inf, a masked logit)."""
    require_existing(path)
    reading = Reading(path, "matrix", stdin, key, allow_object, masked)
    if path != "-" and reading.suffix not in formats.input_suffixes("matrix"):
        raise ProblemError(f"unknown extension {reading.suffix or '(none)'!r} for a matrix: "
                           f"use {formats.listed(formats.input_suffixes('matrix'))}")
    return _reader(choose_format(reading).function)(reading)


def read_json(reading: Reading) -> Any:
    """A problem document; for a matrix, a bare array (an object too with ``allow_object``)."""
    if reading.holds != "matrix":
        return parse_json(reading.data())
    value = parse_json(reading.data(), "a JSON array")
    if isinstance(value, dict) and not reading.allow_object:
        raise ProblemError("holds a JSON object; a matrix file holds a bare array such as [[1, 2], [3, 4]]")
    return value


def read_csv(reading: Reading) -> np.ndarray:
    """A .csv file's matrix; from standard input, tab- or comma-separated as its first row says."""
    return _delimited(reading, "," if reading.suffix else None)


def read_tsv(reading: Reading) -> np.ndarray:
    """A .tsv file's matrix."""
    return _delimited(reading, "\t")


def read_text(reading: Reading) -> np.ndarray:
    """A .txt file's matrix: numbers separated by tabs, commas or spaces (numpy's savetxt)."""
    return _delimited(reading, None)


def _delimited(reading: Reading, delimiter: str | None) -> np.ndarray:
    from attncli.delimited import parse_csv  # here: the csv module is for delimited files only

    return parse_csv(reading.data(), delimiter, reading.key == "mask", reading.masked)


def read_npy(reading: Reading) -> np.ndarray:
    with reading.stream() as handle:
        return _load_npy(handle)


def _load_npy(handle: BinaryIO) -> np.ndarray:
    try:
        loaded = np.load(handle, allow_pickle=False)
    except ValueError as error:
        raise _unreadable_array(error, "is not a valid .npy file") from None
    except (OSError, EOFError) as error:
        raise ProblemError(f"is not a valid .npy file ({error})") from None
    except MemoryError:
        raise ProblemError("holds an array too large for this machine's memory") from None
    if not isinstance(loaded, np.ndarray):  # np.load reads whatever the bytes are: an archive too
        loaded.close()
        raise ProblemError("is an .npz archive of named arrays, not one .npy array: name it .npz, "
                           "or save the matrix alone with np.save")
    return loaded


def _unreadable_array(error: ValueError, damaged: str, pickled: str = "", key: str | None = None) -> ProblemError:
    """The error for an array numpy would not load: a pickle it was told not to load, or damage."""
    if "allow_pickle" in str(error) or "Object arrays" in str(error):
        return ProblemError(
            f"{pickled}holds Python objects (a pickle), which attncli never loads: "
            "save plain numeric arrays (np.save with a float or bool array)",
            key=key,
        )
    return ProblemError(f"{damaged} ({error})", key=key)


def read_npz(reading: Reading) -> dict[str, Any]:
    return parse_npz(reading.data())


def parse_npz(data: bytes) -> dict[str, Any]:
    """An NPZ archive's arrays by name; a 0-d array (heads, scale, a mask rule) becomes its value."""
    import zipfile  # here: a JSON problem has no use for it

    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ProblemError(f"is not a valid .npz file ({error})") from None
    if isinstance(archive, np.ndarray):  # the bytes of a single .npy array, under an .npz name
        raise ProblemError("holds a single .npy array, not an .npz archive of named arrays: save the problem "
                           "with np.savez(x=…, w_query=…, …), or give the matrix as a .npy file")
    document: dict[str, Any] = {}
    with archive:
        for key in archive.files:
            try:
                array = archive[key]
            except ValueError as error:
                raise _unreadable_array(error, f"array {key!r} cannot be read", f"array {key!r} ", key) from None
            except (OSError, zipfile.BadZipFile) as error:
                raise ProblemError(f"array {key!r} cannot be read ({error})", key=key) from None
            except MemoryError:
                raise ProblemError(f"array {key!r} is too large for this machine's memory", key=key) from None
            # heads and scale are single values, however they were saved (0-d or one element)
            single = array.ndim == 0 or (key in ("heads", "scale") and array.size == 1)
            document[key] = array.reshape(()).item() if single else array
    return document


# --- JSON Lines -----------------------------------------------------------------------------------

def json_line_chunks(stream: BinaryIO, lines: int, size: int) -> Iterator[list[tuple[int, Any]]]:
    """(line number, parsed document or ProblemError) for each non-blank line, a chunk at a time:
    at most ``lines`` lines or about ``size`` bytes (a longer line alone), read ``size`` bytes at a
    time, only those at hand: input is waited for only when the chunk has no line, so a program
    that writes a line and waits for its answer gets it."""
    read = getattr(stream, "read1", stream.read)
    number, chunk, begun, held = 0, [], [], 0  # begun: the pieces of a line not yet ended; held: the chunk's bytes
    while True:
        if chunk and (len(chunk) >= lines or held >= size or not at_hand(stream)):
            yield chunk
            chunk, held = [], 0
        data = read(size)
        if not data:
            break
        end = data.rfind(b"\n") + 1
        if not end:
            begun.append(data)
            continue
        block = b"".join([*begun, data[:end]]) if begun else data[:end]
        begun = [data[end:]] if end < len(data) else []
        for raw in block.split(b"\n")[:-1]:
            number += 1
            if raw and not raw.isspace():  # not blank
                chunk.append((number, _json_line(raw + b"\n")))  # as the line is read: its line break kept
                held += len(raw)
            if len(chunk) >= lines or held >= size:  # long lines: a few at a time, not 512 (memory)
                yield chunk
                chunk, held = [], 0
    last = b"".join(begun)
    if last.strip():
        chunk.append((number + 1, _json_line(last)))
    if chunk:
        yield chunk


def _json_line(raw: bytes) -> Any:
    try:
        return parse_json(raw)
    except ProblemError as error:
        # the stream's line number is given by the caller; within one line only the column counts
        error.message = re.sub(r"^(invalid JSON at )?line 1, column", r"\1column", error.message)
        error.__traceback__ = error.__context__ = None  # kept: its frames would hold the line in a cycle
        return error


def open_lines(path: str, stdin: BinaryIO | None = None) -> BinaryIO:
    """A binary stream of the JSON Lines at ``path`` (``-`` for standard input)."""
    if path == "-":
        return stdin_stream(stdin)
    return open_binary(path)


def read_inputs(path: str | None, matrix_paths: dict[str, str], stdin: BinaryIO | None = None) -> Inputs:
    """The problem at ``path`` (None for none), with each of ``matrix_paths`` (key -> file) read
    and put in place of the document's own: single matrix files override or supply matrices."""
    givers = [given for given in (path, *matrix_paths.values()) if given == "-"]
    if len(givers) > 1:
        raise ProblemError("standard input (-) can feed only one input", source=STDIN_NAME)
    inputs = at_file(source_name(path), lambda: read_problem(path, stdin)) if path is not None else Inputs({})
    for key, matrix_path in matrix_paths.items():
        inputs.document[key] = at_file(source_name(matrix_path), lambda p=matrix_path, k=key: read_matrix(p, stdin, k))
        inputs.sources[key] = source_name(matrix_path)
    return inputs
