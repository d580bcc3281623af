"""Write output files atomically, and never over an input; write results to stdout.

A file appears whole or not at all: it is written to a temporary file in the
same folder, flushed to disk, then renamed over the target. An interrupted or
failed run leaves the target as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from attncli.errors import ProblemError
from attncli.formats import output_names, output_suffixes

STDOUT_NAME = "<stdout>"


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary handle whose contents replace ``path`` only when the block ends without error:
    written to a temporary file in the same folder, flushed to disk, then renamed.

    A symbolic link is followed (the file it points to is replaced, not the link); a target that
    is not a regular file (/dev/null, a FIFO) is written directly, as it cannot be renamed over.
    The file keeps the permissions of the one it replaces, or gets the usual ones (0666 less the umask).
    """
    target = Path(os.path.realpath(path))
    if target.exists() and not target.is_file():
        if target.is_dir():
            raise ProblemError("cannot be written: it is a folder", source=str(path))
        with _writing(path), open(target, "wb") as handle:
            yield handle
        return
    import tempfile  # here, not on every run's import path: --version has no use for it

    mode = target.stat().st_mode & 0o7777 if target.exists() else 0o666 & ~_umask()
    with _writing(path):
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            os.fchmod(handle.fileno(), mode)
        os.replace(temporary, target)
    except BaseException as error:
        # whatever stopped us (a full disk, Ctrl-C, a bug): no half-written file stays behind
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and not isinstance(error, BrokenPipeError):
            raise _write_error(error, path) from None
        raise


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as error:
        raise _write_error(error, path) from None


def _write_error(error: OSError, path: Path) -> ProblemError:
    reason = {
        FileNotFoundError: "its folder does not exist",
        NotADirectoryError: "a file stands where its folder should be",
        FileExistsError: "a file stands where its folder should be",
        PermissionError: "permission denied",
        IsADirectoryError: "it is a folder",
    }.get(type(error), error.strerror or str(error))
    return ProblemError(f"cannot be written: {reason}", source=str(path))


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_atomic(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write ``data`` to ``path`` atomically (see atomic_file): bytes, or a function that writes
    them into the file (a large output, never all in memory)."""
    with atomic_file(path) as handle:
        if callable(data):
            data(handle)
        else:
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


class OutputPlan(NamedTuple):  # a named tuple: quicker to define than a dataclass, on every run
    """Where and how results go: ``format`` (table, json, csv, npz), ``target`` (None for
    stdout) and ``folder`` (one STEP.csv per step inside ``target``)."""

    format: str
    target: Path | None = None
    folder: bool = False


def plan_output(requested: str | None, output: str | None, step_names: list[str]) -> OutputPlan:
    """Check the asked-for format and output path against each other and the steps; the format
    is the one asked for, else the output file's extension, else the default (table). A folder (existing, or
    a path ending in /) takes CSV, one file per step."""
    if output == "":
        raise ProblemError("is empty: give a file or a folder ending in /", source="--output")
    if output is not None and is_folder_target(output):
        if requested not in (None, "csv"):
            raise ProblemError(f"is a folder, which takes --format csv (one file per step), not {requested}",
                               source=output)
        return OutputPlan("csv", Path(output), folder=True)
    suffixes = output_suffixes()
    chosen = requested or (output_names()[0] if output is None else suffixes.get(Path(output).suffix.lower()))
    if chosen is None:
        raise ProblemError(
            f"has no extension attncli writes ({', '.join(suffixes)}); give --format, "
            "or end a folder's name with /",
            source=output,
        )
    if chosen == "csv" and len(step_names) > 1:
        raise ProblemError(
            f"holds one step; choose it with --step ({', '.join(step_names)}), "
            "or give -o FOLDER/ for one file per step",
            source=output if output is not None else "--format csv",
        )
    if output is not None:
        check_folder_exists(Path(output))
    return OutputPlan(chosen, Path(output) if output is not None else None)


def check_folder_exists(path: Path) -> None:
    """ProblemError when the folder ``path`` would go into does not exist: attncli makes a folder
    only when asked for one (a path ending in /), as cp and jq do."""
    if not path.parent.exists():
        raise _write_error(FileNotFoundError(), path)


def is_folder_target(output: str) -> bool:
    """Whether ``output`` names a folder: one that exists, or a path ending in a slash
    (kept as typed: pathlib would drop the slash)."""
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


def write_files(files: dict[Path, bytes | Callable[[BinaryIO], None]], inputs: Iterable[str],
                folder: Path | None = None) -> None:
    """Write each file atomically (see write_atomic), after checking none is an input; ``folder``, the one the user
    asked for (-o FOLDER/), is made first if need be."""
    refuse_inputs(files, inputs)
    for path, data in files.items():
        if folder is not None:
            with _writing(path):
                folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)


@contextlib.contextmanager
def stdout_guard() -> Iterator[None]:
    """Writing to stdout: a failure (a full disk behind a redirect, say) becomes a ProblemError
    naming ``<stdout>``. A closed pipe (``| head``), BrokenPipeError, is let through: it is not an
    error but the end of the run, which the command line makes quiet."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as error:
        raise ProblemError(f"cannot be written ({error.strerror or error})", source=STDOUT_NAME) from None


def write_stdout(data: bytes) -> None:
    """Write ``data`` to stdout and flush it (see stdout_guard)."""
    with stdout_guard():
        # in pieces: one huge write() to a closed pipe can end "successfully" after 64 KiB
        for start in range(0, len(data), 1 << 16):
            sys.stdout.buffer.write(data[start : start + (1 << 16)])
        sys.stdout.buffer.flush()
