"""The consoles attncli prints on: stdout (a closed pipe ends the run as the CLI decides), the
recorder for pictures, and the progress bar on stderr. Rich lives in this package and the CLI only."""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.segment import Segment
from rich.style import Style
from rich.text import Text


class PipeAwareConsole(Console):
    """A Console that lets a closed pipe propagate as BrokenPipeError, for the CLI to end the
    run as it ends every other (Rich itself would exit 1, the code attncli keeps for mismatches)."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        # No line ends in spaces: Rich pads wrapped words, table titles and side-by-side columns.
        return super()._render_buffer(without_trailing_spaces(buffer))


def without_trailing_spaces(segments: Iterable[Segment]) -> list[Segment]:
    """The segments with each line's trailing spaces removed, where those spaces show nothing
    (no background, underline or reverse): what a person sees is unchanged."""
    kept: list[Segment] = []
    line: list[Segment] = []
    for segment in segments:
        if segment.control or "\n" not in segment.text:
            line.append(segment)
            continue
        *ended, rest = segment.text.split("\n")
        for text in ended:
            line.append(Segment(text, segment.style))
            while line and not line[-1].control and _invisible(line[-1].style) and line[-1].text[-1:] in ("", " "):
                text = line[-1].text.rstrip(" ")
                line = line[:-1] + ([Segment(text, line[-1].style)] if text else [])
            kept.extend(line)
            kept.append(Segment.line())
            line = []
        line.append(Segment(rest, segment.style))
    return kept + line


def _invisible(style: Style | None) -> bool:
    return style is None or not (style.bgcolor or style.underline or style.reverse)


def measure_width(console: Console, renderable: RenderableType) -> int:
    return Measurement.get(console, console.options.update_width(1_000_000), renderable).maximum


def print_blocks(console: Console, blocks: list[RenderableType]) -> None:
    # Rich would squeeze a table wider than the console (piped: 80 columns) to "0.…" or empty cells:
    # widen to the widest table instead, in a terminal too (--full, or a table that cannot be cut
    # further); the terminal scrolls, or the user pipes to `less -S`. A number is never cut.
    # Words still wrap at the width the console had.
    width = console.width
    needed = max((measure_width(console, block) for block in blocks if isinstance(block, Group)), default=0)
    if needed > console.width:
        console.width = needed
    for block in blocks:
        console.print(block, width=width if isinstance(block, Text) else None)


def stdout_console(no_color: bool = False) -> Console:
    """The console results are printed on: stdout, colour as the terminal and NO_COLOR allow."""
    return PipeAwareConsole(no_color=no_color or None)


# Rich's SVG template without its web font (Fira Code from a CDN) and link: a picture draws with the
# viewer's own monospace font, offline. xml:space="preserve" and white-space: pre keep every space
# (rsvg and others collapse leading ones, which moved right-aligned numbers to the left).
SVG_FORMAT = """\
<svg class="rich-terminal" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" xml:space="preserve">
    <style>

    .{unique_id}-matrix {{
        font-family: "DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", "Courier New", monospace;
        font-size: {char_height}px;
        line-height: {line_height}px;
        font-variant-east-asian: full-width;
        white-space: pre;
    }}

    .{unique_id}-title {{
        font-size: 18px;
        font-weight: bold;
        font-family: "DejaVu Sans", Helvetica, Arial, sans-serif;
    }}

    {styles}
    </style>

    <defs>
    <clipPath id="{unique_id}-clip-terminal">
      <rect x="0" y="0" width="{terminal_width}" height="{terminal_height}" />
    </clipPath>
    {lines}
    </defs>

    {chrome}
    <g transform="translate({terminal_x}, {terminal_y})" clip-path="url(#{unique_id}-clip-terminal)">
    {backgrounds}
    <g class="{unique_id}-matrix">
    {matrix}
    </g>
    </g>
</svg>
"""
# Cells a little wider than a character of the fonts above (DejaVu Sans Mono and Menlo 0.602 of the
# font size, Liberation Mono and Courier New 0.600, Consolas 0.55): a renderer that ignores
# textLength (rsvg) then never overlaps or clips text, it only leaves a hair between runs.
SVG_FONT_ASPECT_RATIO = 0.61


class RecordingConsole(Console):
    """A recording Console whose SVG pictures are self-contained: no font or anything else fetched
    from the network, and spaces kept, so columns line up in any renderer, offline."""

    def export_svg(self, *, title: str = "attncli", theme: Any = None, clear: bool = True,
                   code_format: str = SVG_FORMAT, font_aspect_ratio: float = SVG_FONT_ASPECT_RATIO,
                   unique_id: str | None = None) -> str:
        return super().export_svg(title=title, theme=theme, clear=clear, code_format=code_format,
                                  font_aspect_ratio=font_aspect_ratio, unique_id=unique_id)

    def save_svg(self, path: str, *, title: str = "attncli", theme: Any = None, clear: bool = True,
                 code_format: str = SVG_FORMAT, font_aspect_ratio: float = SVG_FONT_ASPECT_RATIO,
                 unique_id: str | None = None) -> None:
        svg = self.export_svg(title=title, theme=theme, clear=clear, code_format=code_format,
                              font_aspect_ratio=font_aspect_ratio, unique_id=unique_id)
        with open(path, "w", encoding="utf-8") as file:
            file.write(svg)


def recording(width: int) -> Console:
    """A console that records in colour at ``width`` columns, for SVG and HTML pictures (its SVG
    is self-contained: see ``RecordingConsole``)."""
    return RecordingConsole(record=True, file=io.StringIO(), force_terminal=True, color_system="truecolor",
                            width=width)


@contextlib.contextmanager
def progress_bar(description: str = "computing") -> Iterator[Callable[[int, int], None] | None]:
    """A progress reporter for ``attention(progress=...)``: a bar on stderr that appears once a run
    has taken a second, only when stderr is a terminal (never on stdout, never in a pipe)."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    started = time.monotonic()
    bar: dict[str, Any] = {}

    def report(done: int, total: int) -> None:
        if "progress" not in bar:
            if time.monotonic() - started < 1.0:
                return
            bar["progress"] = Progress(TextColumn(description), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                       TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            bar["progress"].start()
            bar["task"] = bar["progress"].add_task(description, total=total)
        bar["progress"].update(bar["task"], completed=done)

    try:
        yield report
    finally:
        if "progress" in bar:
            bar["progress"].stop()
