"""Where results go: a trace emitted in the asked format (stdout or files), a view shown (stdout,
and the same again as an SVG picture; and the page of a trace, --export-html), JSON or a view; and
``blaming``, which names the file or place an error is about. Rich and numpy are imported inside
functions, when a result is shown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attncli import formats
from attncli.errors import ProblemError

if TYPE_CHECKING:
    from attncli.problem import Problem
    from attncli.request import Shown
    from attncli.trace import Step, Trace


@contextlib.contextmanager
def blaming(source: str, *, always: bool = False) -> Iterator[None]:
    """ProblemErrors raised inside name ``source``: those that name no file, or all of them
    (``always``: the core's errors about a problem as a whole, or about numbers read from one file)."""
    try:
        yield
    except ProblemError as error:
        error.source = source if always else error.source or source
        raise


# --- emit and show --------------------------------------------------------------------------------

def emit(trace: Trace, steps: list[Step], shown: Shown, inputs: list[str]) -> None:
    """The chosen steps on stdout, or in files, in the format ``shown`` asks for."""
    from attncli.export import render, rendering
    from attncli.writers import plan_output, write_files, write_stdout

    with blaming("output"):
        plan = plan_output(shown.format, shown.output, [step.name for step in steps])
        if plan.folder:
            write_files({plan.target / f"{step.name}.csv": render(trace, [step], "csv") for step in steps}, inputs,
                        plan.target)
            return
        if plan.target is not None:
            write_files({plan.target: rendering(trace, steps, plan.format, shown.precision, shown.full)}, inputs)
            return
    if plan.format == "table":
        from attncli.view import print_trace

        show(lambda console: print_trace(trace, steps, shown.precision, shown.full, console), shown)
        return
    write_stdout(render(trace, steps, plan.format))


def show(render: Callable[[Any], None], shown: Shown, inputs: Iterable[str] = (),
         page: Callable[[], bytes] | None = None) -> None:
    """Render a view on stdout and, when ``shown`` asks, the same again as an SVG picture at the
    width shown (--export-svg), and the ``page`` (--export-html: attncli.view.page, made only
    then). The paths are checked before anything is shown."""
    from attncli.view import recording, stdout_console
    from attncli.writers import check_folder_exists, refuse_inputs, stdout_guard, write_files

    pictures_at = {}
    with blaming("picture"):
        for option, path in (("--export-svg", shown.export_svg), ("--export-html", shown.export_html)):
            if path is None:
                continue
            if path == "" or path.endswith(("/", os.sep)) or Path(path).is_dir():
                raise ProblemError("needs a file name, not a folder", source=option if path == "" else path)
            pictures_at[option] = Path(path)
            check_folder_exists(pictures_at[option])
        refuse_inputs(pictures_at.values(), inputs)
    console = stdout_console(shown.no_color)
    with stdout_guard():
        render(console)
    pictures = {}
    if "--export-svg" in pictures_at:
        recorder = recording(console.width)
        render(recorder)
        pictures[pictures_at["--export-svg"]] = recorder.export_svg(title="attncli", clear=False).encode()
    if "--export-html" in pictures_at:
        if page is None:
            raise ValueError("this view has no page: --export-html is for compute and demo")
        pictures[pictures_at["--export-html"]] = page()
    if pictures:
        with blaming("picture"):
            write_files(pictures, inputs)


def page_of(problem: Problem, trace: Trace, steps: list[Step], shown: Shown, title: str) -> Callable[[], bytes]:
    """What makes the page of ``steps`` (--export-html), at the precision and fullness ``shown`` asks."""
    def make() -> bytes:
        from attncli.view.page import trace_page

        return trace_page(problem, trace, steps, shown.precision, shown.full, title).encode()

    return make


def json_or_view(shown: Shown, exporter: str, viewer: str, *values: Any) -> None:
    """JSON (attncli.export's ``exporter(*values)``) when ``shown`` asks, else the view ``viewer``."""
    if shown.format == "json":
        from attncli.writers import write_stdout

        write_stdout(formats.load(f"attncli.export:{exporter}")(*values).encode())
    else:
        show(lambda console: formats.load(f"attncli.view:{viewer}")(*values, console), shown)


