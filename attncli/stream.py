"""Many problems in one run: JSON Lines in, one JSON line out per problem, in order.

Lines are read a chunk at a time (those at hand, at most CHUNK_LINES or about CHUNK_BYTES), and
the problems of one shape among them computed as one stack (attncli.stacks), so memory stays that
of a chunk however long the stream; each line's output is the one it gets alone, in the lines'
order. What a line's
problem is and how it is computed is the caller's (the application layer's): this module numbers
the lines, groups them, names them in errors and warnings, and writes each trace as JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from attncli.errors import ProblemError
from attncli.export import trace_to_json, traces_to_json
from attncli.readers import json_line_chunks
from attncli.stacks import signature

if TYPE_CHECKING:
    from attncli.trace import Trace


class LineResult(NamedTuple):  # a tuple: one is made per line
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
    stream: BinaryIO, trace_of: Callable[[Any], Trace], step_names: list[str] | None,
    traces_of: Callable[[list[Any]], list[Trace] | None],
) -> Iterator[LineResult]:
    """Compute each JSON Lines problem of ``stream`` in turn: ``trace_of(document)`` validates and
    computes one line's document, and the trace's ``step_names`` (None: all) make its line.

    The lines are read a chunk at a time (CHUNK_LINES lines or about CHUNK_BYTES of them at most,
    read CHUNK_BYTES at a time: memory is bounded by the chunk) and those of one signature
    (attncli.stacks) are given to ``traces_of`` together: it gives their traces, or None when they
    are not stacked (each line is then computed alone). A ProblemError from it (a line of the
    group is wrong, or overflows) splits the group in two, down to single lines, which take
    ``trace_of``: a wrong line gets the error it gets alone. The results come in the lines' order
    either way."""
    for chunk in json_line_chunks(stream, CHUNK_LINES, CHUNK_BYTES):
        groups: dict[Any, list[tuple[int, Any]]] = {}
        results: dict[int, LineResult] = {}
        for number, parsed in chunk:
            key = None if isinstance(parsed, ProblemError) else signature(parsed)
            if key is None:
                results[number] = _line_result(number, parsed, trace_of, step_names)
            else:
                groups.setdefault(key, []).append((number, parsed))
        for lines in groups.values():
            _group_results(lines, trace_of, traces_of, step_names, results)
        for number, _ in chunk:
            yield results[number]


# Lines read and computed together, at most (JSON Lines with stacking): the memory they hold
CHUNK_LINES = 512
CHUNK_BYTES = 1 << 20


def _group_results(lines: list[tuple[int, Any]], trace_of: Callable[[Any], Trace],
                   traces_of: Callable[[list[Any]], list[Trace] | None], step_names: list[str] | None,
                   results: dict[int, LineResult]) -> None:
    traces = None
    if len(lines) > 1:
        try:
            traces = traces_of([document for _, document in lines])
        except (ProblemError, MemoryError) as error:  # a line alone says what is wrong, or fits the memory
            error.__traceback__ = error.__context__ = None  # its frames hold the stack's arrays (see _failed)
            middle = len(lines) // 2
            _group_results(lines[:middle], trace_of, traces_of, step_names, results)
            _group_results(lines[middle:], trace_of, traces_of, step_names, results)
            return
    if traces is None:
        for number, document in lines:
            results[number] = _line_result(number, document, trace_of, step_names)
        return
    outputs = traces_to_json(traces, step_names)
    for (number, _), trace, output in zip(lines, traces, outputs, strict=True):
        results[number] = LineResult(output, None, _numbered(number, trace.warnings))


def _line_result(number: int, parsed: Any, trace_of: Callable[[Any], Trace],
                 step_names: list[str] | None) -> LineResult:
    if isinstance(parsed, ProblemError):  # not JSON: passed on, not raised (see _failed)
        return _failed(number, parsed)
    try:
        trace = trace_of(parsed)
    except ProblemError as error:
        return _failed(number, error)
    return _result(number, trace, step_names)


def _result(number: int, trace: Trace, step_names: list[str] | None) -> LineResult:
    try:
        output = trace_to_json(trace, trace.select(step_names))
    except ProblemError as error:
        return _failed(number, error)
    return LineResult(output, None, _numbered(number, trace.warnings))


def _failed(number: int, error: ProblemError) -> LineResult:
    """Line ``number``'s result when ``error`` is what is wrong with it: the error, numbered."""
    # with no traceback: its frames may hold the line (its text, its arrays) in a cycle with the
    # error, which only the cyclic collector would free, and the process's entry runs it rarely
    # (attncli.__main__)
    error.__traceback__ = error.__context__ = None
    return LineResult(None, ProblemError(f"line {number}: {error.message}", error.shapes))


def _numbered(number: int, warnings: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"line {number}: {warning}" for warning in warnings) if warnings else ()
