"""The one error type that attncli raises for a user's mistake, and how options appear in it."""

from __future__ import annotations

import re
from collections.abc import Callable

# An option (a field a command-line flag also sets) inside a message, between two unit separators:
# repr() escapes that character, so no user text quoted in a message can contain it.
_OPTION_MARK = "\x1f"
_OPTION = re.compile(f"{_OPTION_MARK}([a-z_]+){_OPTION_MARK}")


def option(field: str) -> str:
    """``field`` marked as an option in a message: the CLI shows its flag (``--query``), anything
    else the plain name (``query``). Core modules name fields this way, never flags."""
    return f"{_OPTION_MARK}{field}{_OPTION_MARK}"


class ProblemError(ValueError):
    """A problem that cannot be read or computed, in words a user can act on.

    ``message`` names the matrix and what is wrong; options in it are marked with ``option()``.
    ``shapes`` maps the names of the arrays involved to their shapes, the one the message is
    about first. ``key`` names the document key the message is about when no shape is involved
    (e.g. a NaN cell), so a caller that read each matrix from its own file can name that file.
    ``source`` is set by readers that know better than their caller which file is at fault (a
    file inside a folder, a line of a stream).
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

    def render(self, flag: Callable[[str], str] = str) -> str:
        """The message with each marked option shown as ``flag(field)`` (the plain name by default)."""
        return _OPTION.sub(lambda match: flag(match.group(1)), self.message)

    def __str__(self) -> str:
        return self.render()
