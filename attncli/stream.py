"""Many problems in one run: JSON Lines in, one JSON line out per problem, in order.

One line is read, computed and written before the next is read, so memory stays
that of the largest single problem however long the stream. What a line's problem is and how it
is computed is the caller's (the application layer's): this module numbers the lines, names
them in errors and warnings, and writes each trace as JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from attncli.errors import ProblemError
from attncli.export import trace_to_json
from attncli.readers import iter_json_lines

if TYPE_CHECKING:
    from attncli.trace import Trace


@dataclass(frozen=True)
class LineResult:
    """What one input line gave: the JSON ``output`` line or the ``error``, and any ``warnings``."""

    output: str | None
    error: ProblemError | None
    warnings: tuple[str, ...] = ()


class _ArrayElements:
    """Writes each JSON line given as the next element of one JSON array, one element per line."""

    def __init__(self, sink: BinaryIO):
        self.sink, self.count = sink, 0

    def write(self, line: bytes) -> None:
        self.sink.write((b"\n" if self.count == 0 else b",\n") + line.rstrip(b"\n"))
        self.count += 1

    def flush(self) -> None:
        self.sink.flush()


@contextlib.contextmanager
def json_array(sink: BinaryIO) -> Iterator[_ArrayElements]:
    """JSON lines written inside the block become one JSON array on ``sink`` (for a .json file,
    which json.load must read), closed when the block ends without error."""
    sink.write(b"[")
    elements = _ArrayElements(sink)
    yield elements
    sink.write(b"\n]\n" if elements.count else b"]\n")


def compute_lines(
    stream: BinaryIO, trace_of: Callable[[Any], Trace], step_names: list[str] | None = None,
) -> Iterator[LineResult]:
    """Compute each JSON Lines problem of ``stream`` in turn: ``trace_of(document)`` validates and
    computes one line's document, and the trace's ``step_names`` (None: all) make its line."""
    for number, parsed in iter_json_lines(stream):
        try:
            if isinstance(parsed, ProblemError):
                raise parsed
            trace = trace_of(parsed)
            output = trace_to_json(trace, trace.select(step_names))
        except ProblemError as error:
            yield LineResult(None, ProblemError(f"line {number}: {error.message}", error.shapes))
            continue
        yield LineResult(output, None, tuple(f"line {number}: {warning}" for warning in trace.warnings))
