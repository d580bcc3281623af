"""Write output files atomically, and never over an input.

A file appears whole or not at all: it is written to a temporary file in the
same folder, flushed to disk, then renamed over the target. An interrupted or
failed run leaves the target as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from attncli.errors import ProblemError


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary handle whose contents replace ``path`` only when the block ends without error:
    written to a temporary file in the same folder, flushed to disk, then renamed."""
    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except FileNotFoundError:
        raise ProblemError("cannot be written: its folder does not exist", source=str(path)) from None
    except PermissionError:
        raise ProblemError("cannot be written: permission denied", source=str(path)) from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        # whatever stopped us (a full disk, Ctrl-C, a bug): no half-written file stays behind
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, IsADirectoryError):
            raise ProblemError("cannot be written: it is a folder", source=str(path)) from None
        if isinstance(error, OSError) and not isinstance(error, BrokenPipeError):
            raise ProblemError(f"cannot be written ({error.strerror or error})", source=str(path)) from None
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see atomic_file)."""
    with atomic_file(path) as handle:
        handle.write(data)


def refuse_inputs(outputs: Iterable[Path], inputs: Iterable[str]) -> None:
    """ProblemError when an output path is one of the input files (the same file by any name)."""
    existing_inputs = [Path(path) for path in inputs if path != "-" and Path(path).exists()]
    for output in outputs:
        if not output.exists():
            continue
        for source in existing_inputs:
            if os.path.samefile(output, source):
                raise ProblemError(
                    f"is one of this run's inputs ({source}); attncli never writes over its input",
                    source=str(output),
                )


OUTPUT_SUFFIXES = {".json": "json", ".jsonl": "json", ".csv": "csv", ".npz": "npz", ".txt": "table"}


def output_format(requested: str | None, output: str | None) -> str:
    """The format to write: the one asked for, else the output file's extension, else table.
    A folder (existing, or a path ending in /) takes CSV, one file per step."""
    if output is not None and is_folder_target(output):
        if requested not in (None, "csv"):
            raise ProblemError(f"is a folder, which takes --format csv (one file per step), not {requested}",
                               source=output)
        return "csv"
    if requested is not None:
        return requested
    if output is None:
        return "table"
    try:
        return OUTPUT_SUFFIXES[Path(output).suffix.lower()]
    except KeyError:
        raise ProblemError(
            f"has no extension attncli writes ({', '.join(OUTPUT_SUFFIXES)}); give --format, "
            "or end a folder's name with /",
            source=output,
        ) from None


def is_folder_target(output: str) -> bool:
    """Whether ``output`` names a folder: one that exists, or a path ending in a slash
    (kept as typed: pathlib would drop the slash)."""
    return output.endswith(("/", os.sep)) or Path(output).is_dir()
