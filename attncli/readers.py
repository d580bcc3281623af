"""Read problem documents from files or standard input.

Readers return plain Python values and raise ProblemError for anything
unreadable; the caller prefixes the message with the file's name.
"""

from __future__ import annotations

import json
import sys
from typing import Any, BinaryIO

from attncli.errors import ProblemError

STDIN_NAME = "<stdin>"
# Far beyond any problem a table can show, small enough that a wrong file fails fast.
MAX_INPUT_BYTES = 2 * 1024**3


def source_name(path: str) -> str:
    """How errors name the input: ``<stdin>`` for ``-``, else the path as given."""
    return STDIN_NAME if path == "-" else path


def read_bytes(path: str, stdin: BinaryIO | None = None) -> bytes:
    """The raw bytes of ``path``, or of standard input when ``path`` is ``-``."""
    if path == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        data = stream.read(MAX_INPUT_BYTES + 1)
    else:
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_INPUT_BYTES + 1)
        except FileNotFoundError:
            raise ProblemError("no such file") from None
        except IsADirectoryError:
            raise ProblemError("is a directory, not a file") from None
        except PermissionError:
            raise ProblemError("permission denied") from None
        except OSError as error:
            raise ProblemError(f"cannot be read ({error.strerror or error})") from None
    if len(data) > MAX_INPUT_BYTES:
        raise ProblemError(f"is larger than {MAX_INPUT_BYTES // 1024**3} GiB")
    return data


def parse_json_document(data: bytes) -> Any:
    """Parse UTF-8 JSON strictly: duplicate keys are an error; NaN and Infinity
    literals become float nan/inf so that validation can say which cell holds them."""
    if not data.strip():
        raise ProblemError("is empty; expected a JSON object")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        hint = " (it looks like UTF-16: save it as UTF-8)" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise ProblemError(
            f"is not UTF-8 text: byte 0x{data[error.start]:02x} at offset {error.start}{hint}"
        ) from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=float,
        )
    except json.JSONDecodeError as error:
        raise ProblemError(
            f"invalid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except RecursionError:
        raise ProblemError("invalid JSON: nested too deeply") from None


def read_json_document(path: str, stdin: BinaryIO | None = None) -> Any:
    """Read and parse the JSON problem document at ``path`` (``-`` for stdin)."""
    return parse_json_document(read_bytes(path, stdin))


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise ProblemError(f"key {key!r} appears twice in one object")
        document[key] = value
    return document

