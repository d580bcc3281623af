"""Many problems in one run: JSON Lines in, one JSON line out per problem, in order.

One line is read, computed and written before the next is read, so memory stays
that of the largest single problem however long the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from attncli.errors import ProblemError
from attncli.export import trace_to_json
from attncli.pipeline import attention
from attncli.problem import problem_from_document
from attncli.readers import iter_json_lines


@dataclass(frozen=True)
class LineResult:
    """What one input line gave: the JSON ``output`` line or the ``error``, and any ``warnings``."""

    output: str | None
    error: ProblemError | None
    warnings: tuple[str, ...] = ()


def compute_lines(
    stream: BinaryIO,
    *,
    heads: int | None = None,
    scale: str | float | None = None,
    causal: bool = False,
    step_names: list[str] | None = None,
    dtype: str = "float64",
) -> Iterator[LineResult]:
    """Compute each JSON Lines problem of ``stream`` in turn, with the command-line overrides,
    in ``dtype``."""
    for number, parsed in iter_json_lines(stream):
        try:
            if isinstance(parsed, ProblemError):
                raise parsed
            problem = problem_from_document(parsed, heads=heads, scale=scale, causal=causal)
            if dtype != "float64":
                problem = problem.astype(dtype)
            trace = attention(problem, step_names)
            output = trace_to_json(trace, trace.select(step_names))
        except ProblemError as error:
            yield LineResult(None, ProblemError(f"line {number}: {error.message}", error.shapes))
            continue
        yield LineResult(output, None, tuple(f"line {number}: {warning}" for warning in trace.warnings))
