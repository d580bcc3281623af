"""A user's numbers for ``check --expected``: one array (for one step), or a dump of several
steps under their names: a JSON object (attncli's own ``--format json`` output, its ``meta``
too), an NPZ archive (``np.savez(q=…, scores=…)``, or attncli's ``-o trace.npz``) or a folder of
one file per step (attncli's ``-o folder/``: softmax.csv, …). Readers return plain values and
numpy arrays and raise ProblemError; nothing is unpickled.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from attncli import formats
from attncli.errors import ProblemError
from attncli.keys import FILE_KEYS, STEP_NAMES
from attncli.numbers import float_array, nested_shape
from attncli.readers import OPTIONS_FILE, at_file, parse_npz, read_matrix
from attncli.sources import read_bytes, require_existing, source_name
from attncli.wording import step_suggestion

# What attncli writes beside the steps, which a dump may keep: the JSON's and the NPZ's meta, and
# the words a document of its samples describes itself with
WRITTEN_BESIDE = frozenset({"meta", "about"})
NPZ_SIGNATURE = formats.input_format(".npz").signature  # type: ignore[union-attr]


def read_dump(path: str, stdin: BinaryIO | None = None) -> Any:
    """What ``path`` (``-``: standard input) holds: one array (nested lists or an ndarray, from a
    .json, .csv/.tsv/.txt or .npy file), or a dict of values by name (a JSON object, an NPZ
    archive, a folder of one file per step: its problem's own files are passed over)."""
    require_existing(path)
    if path != "-" and Path(path).is_dir():
        return _read_folder(Path(path))
    if path != "-" and Path(path).suffix.lower() == ".npz":
        return parse_npz(read_bytes(path))
    if path == "-":  # an archive on standard input is known by its first bytes
        data = read_bytes(path, stdin)
        if data.startswith(NPZ_SIGNATURE):
            return parse_npz(data)
        stdin = io.BytesIO(data)
    return read_matrix(path, stdin, allow_object=True, masked=True)


def _read_folder(folder: Path) -> dict[str, Any]:
    """A folder's matrix files by name; a problem's own (x.csv, problem.json, notes in .txt) passed over."""
    dump: dict[str, Any] = {}
    named: dict[str, str] = {}
    for entry in sorted(folder.iterdir()):
        suffix, key = entry.suffix.lower(), entry.stem
        if suffix not in formats.input_suffixes("matrix") or not entry.is_file() or entry.name == OPTIONS_FILE:
            continue
        if key in FILE_KEYS or (suffix == ".txt" and key not in STEP_NAMES):
            continue  # the problem the steps were computed from, or notes
        if key in named:
            raise ProblemError(f"{key} is given twice in this folder: {named[key]} and {entry.name}")
        dump[key] = at_file(str(entry), lambda path=str(entry), key=key: read_matrix(path, key=key, masked=True))
        named[key] = entry.name
    return dump


def step_numbers(dump: Any, step: str, source: str) -> np.ndarray:
    """The user's numbers for ``step``: the dump's key of that name, or the dump itself when it
    is one array; ``null`` (JSON's) is a masked logit, −∞."""
    if isinstance(dump, dict):
        if step not in dump:
            raise ProblemError(f"holds no key {step!r} (its keys: {', '.join(map(repr, dump)) or 'none'})",
                               source=source)
        dump = dump[step]
    shape = at_file(source, lambda: nested_shape(step, dump, [], (int, float, type(None))))
    if not shape:
        raise ProblemError(f"{step} is a single number, not an array", source=source)
    if isinstance(dump, np.ndarray):
        return dump.astype(np.float64)
    # null is a masked logit, as attncli writes it; a NaN stays NaN
    return at_file(source, lambda: float_array(step, _nulls_as_masked(dump)))


def dump_steps(dump: dict[str, Any], source: str) -> dict[str, np.ndarray]:
    """The user's numbers for every step a dump names, in pipeline order. Keys that are not steps
    (but the meta attncli writes beside them) are an error naming them and the steps."""
    unknown = [key for key in dump if key not in STEP_NAMES and key not in WRITTEN_BESIDE]
    if unknown:
        said = "keys that are not steps" if len(unknown) > 1 else "a key that is not a step"
        raise ProblemError(f"holds {said}: {', '.join(map(repr, unknown))}; the steps are {', '.join(STEP_NAMES)}"
                           f"{step_suggestion(unknown[0]) if len(unknown) == 1 else ''}", source=source)
    steps = [name for name in STEP_NAMES if name in dump]
    if not steps:
        raise ProblemError(f"holds no step (its keys: {', '.join(map(repr, dump)) or 'none'}); the steps are "
                           f"{', '.join(STEP_NAMES)}", source=source)
    return {name: step_numbers(dump, name, source) for name in steps}


def read_expected(path: str, step: str, stdin: BinaryIO | None = None) -> np.ndarray:
    """A user's numbers for ``step``: a .json array (or an object with a key named ``step``, as
    attncli's own JSON output has), a .csv/.tsv matrix, a .npy array, or a step of an NPZ archive
    or a folder; ``null`` reads as −∞ (a masked logit)."""
    source = source_name(path)
    return step_numbers(at_file(source, lambda: read_dump(path, stdin)), step, source)


def _nulls_as_masked(value: Any) -> Any:
    if isinstance(value, list):
        return [_nulls_as_masked(item) for item in value]
    return -math.inf if value is None else value
