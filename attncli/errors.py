"""The one error type that attncli's core raises for a user's mistake."""

from __future__ import annotations


class ProblemError(ValueError):
    """A problem that cannot be computed, in words a user can act on.

    ``message`` names the matrix and what is wrong (without the file name: only
    the caller knows where the problem came from). ``shapes`` maps the names of
    the arrays involved to their shapes, for callers that want more than words.
    """

    def __init__(self, message: str, shapes: dict[str, tuple[int, ...]] | None = None):
        super().__init__(message)
        self.message = message
        self.shapes = dict(shapes or {})
