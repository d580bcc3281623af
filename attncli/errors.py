"""The one error type that attncli raises for a user's mistake."""

from __future__ import annotations


class ProblemError(ValueError):
    """A problem that cannot be read or computed, in words a user can act on.

    ``message`` names the matrix and what is wrong. ``shapes`` maps the names of
    the arrays involved to their shapes, the one the message is about first.
    ``key`` names the document key the message is about when no shape is involved
    (e.g. a NaN cell), so a caller that read each matrix from its own file can
    name that file. ``source`` is set by readers that know better than their
    caller which file is at fault (a file inside a folder, a line of a stream).
    """

    def __init__(
        self,
        message: str,
        shapes: dict[str, tuple[int, ...]] | None = None,
        *,
        key: str | None = None,
        source: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.shapes = dict(shapes or {})
        self.key = key if key is not None else next(iter(self.shapes), None)
        self.source = source
