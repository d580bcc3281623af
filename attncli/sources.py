"""Where input comes from: a path as given or standard input (``-``), its bytes (within a limit),
its text, and what a reader named in the registry (attncli.formats) is given to read."""

from __future__ import annotations

import io
import os
import select
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from attncli.errors import ProblemError

STDIN_NAME = "<stdin>"
# Far beyond any problem a table can show, small enough that a wrong file fails fast.
MAX_INPUT_BYTES = 2 * 1024**3
# the UTF-8 byte order mark some editors write first
BOM = b"\xef\xbb\xbf"


def source_name(path: str) -> str:
    """How errors name the input: ``<stdin>`` for ``-``, else the path as given."""
    return STDIN_NAME if path == "-" else path


def read_bytes(path: str, stdin: BinaryIO | None = None) -> bytes:
    """The raw bytes of ``path``, or of standard input when ``path`` is ``-``."""
    if path == "-":
        data = stdin_stream(stdin).read(MAX_INPUT_BYTES + 1)
    else:
        with open_binary(path) as handle:
            data = handle.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        raise ProblemError(f"is larger than {MAX_INPUT_BYTES // 1024**3} GiB")
    return data


def require_existing(path: str) -> None:
    """ProblemError ``no such file`` (``no such folder`` for a path ending in ``/``) when nothing is
    at ``path``; standard input (``-``) and anything that is there pass. Checked before a reader is
    chosen by suffix, so a missing file is not called an unknown kind of file."""
    if path == "-":
        return
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise ProblemError("no such folder" if path.endswith(("/", os.sep)) else "no such file") from None
    except OSError:
        pass  # e.g. permission denied: opening it says so


def open_binary(path: str) -> BinaryIO:
    """``open(path, "rb")``, its failures turned into ProblemErrors in a user's words."""
    try:
        return open(path, "rb")  # the caller closes it
    except FileNotFoundError:
        raise ProblemError("no such file") from None
    except IsADirectoryError:
        raise ProblemError("is a directory, not a file") from None
    except PermissionError:
        raise ProblemError("permission denied") from None
    except OSError as error:
        raise ProblemError(f"cannot be read ({error.strerror or error})") from None


def decode_text(data: bytes) -> str:
    """UTF-8 text (a BOM is dropped); ProblemError saying where it is not UTF-8."""
    try:  # utf-8, then the BOM: the utf-8-sig codec is Python code, slow on every line of a stream
        text = data.decode()
        return text[1:] if text.startswith("\ufeff") else text
    except UnicodeDecodeError:
        pass
    try:  # its error's offsets are those a user has seen (after a BOM, counted from it)
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        hint = " (it looks like UTF-16: save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ProblemError(
            f"is not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start}{hint}"
        ) from None


@dataclass
class Reading:
    """One input being read, as a reader named in the registry gets it: the ``path`` (``-`` for
    standard input) and what it should hold ("problem" or "matrix"); for a matrix, the document
    ``key`` it is read for (a mask's CSV may say true/false), whether a JSON object may stand for
    it (``allow_object``) and whether a CSV may hold -inf (``masked``, a masked logit). Its bytes
    are read once, when first asked for."""

    path: str
    holds: str
    stdin: BinaryIO | None = None
    key: str = ""
    allow_object: bool = False
    masked: bool = False
    # the file's suffix in lower case, with its dot; "" for standard input
    suffix: str = field(init=False)
    _data: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.suffix = "" if self.path == "-" else Path(self.path).suffix.lower()

    def data(self) -> bytes:
        """Its bytes, read on first use."""
        if self._data is None:
            self._data = read_bytes(self.path, self.stdin)
        return self._data

    def stream(self) -> BinaryIO:
        """The input as a binary stream: its bytes when read already, else the file itself, opened
        (numpy reads an array straight from it)."""
        if self._data is None and self.path != "-":
            return open_binary(self.path)
        return io.BytesIO(self.data())


def stdin_stream(stdin: BinaryIO | None) -> BinaryIO:
    """``stdin`` when given (tests pass their own), else the process's standard input, as bytes."""
    if stdin is not None:
        return stdin
    if sys.stdin is None:
        raise ProblemError("standard input is closed", source=STDIN_NAME)
    return sys.stdin.buffer


def at_hand(stream: BinaryIO) -> bool:
    """Whether reading ``stream`` now does not wait for a writer: a file, or a pipe with bytes in it
    (a reader that takes what the stream buffered, as readers.json_line_chunks, may ask the
    descriptor)."""
    try:
        descriptor = stream.fileno()
    except (AttributeError, OSError, ValueError):  # a stream in memory (io.BytesIO): all at hand
        return True
    try:
        return bool(select.select([descriptor], [], [], 0)[0])
    except (OSError, ValueError):  # select cannot tell (a descriptor it does not take): no waiting
        return False
