"""The attncli command line: parse options, call readers, the pipeline and a view.

No arithmetic lives here. numpy and Rich are imported inside the commands so
that ``--help`` and ``--version`` start fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from attncli import __version__

if TYPE_CHECKING:
    from attncli.trace import Step, Trace

EXIT_OK = 0
EXIT_MISMATCH = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
# A closed pipe ends the program as SIGPIPE would: the shell reports 128 + 13.
EXIT_BROKEN_PIPE = 141


# Typer vendors Click privately; its public BadParameter leads to the base of every usage error.
_CLICK_EXCEPTION = next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


class OneLineErrorGroup(TyperGroup):
    """Report usage errors (unknown option, missing argument…) as one ``Error:`` line, exit 2,
    instead of Click's usage block or Typer's Rich panel."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            _write_error("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        except _CLICK_EXCEPTION as error:
            if type(error).__name__ == "NoArgsIsHelpError":
                # bare `attncli`: the help itself is the message, as Click gives it
                sys.stderr.write(error.format_message() + "\n")
                sys.exit(EXIT_BAD_INPUT)
            command = getattr(getattr(error, "ctx", None), "command_path", None) or "attncli"
            _write_error(f"{error.format_message()} (see '{command} --help')")
            sys.exit(error.exit_code)
        if result == EXIT_INTERRUPTED:
            # Typer turns Ctrl-C into this exit code without a word
            _write_error("interrupted")
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else EXIT_OK)


app = typer.Typer(
    cls=OneLineErrorGroup,
    help="See and check the arithmetic of attention, step by step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


OUTPUT_FORMATS = ("table", "json")


def _write_error(message: str) -> None:
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()


def _fail(source: str, message: str) -> NoReturn:
    _write_error(f"{source}: {message}")
    raise typer.Exit(EXIT_BAD_INPUT)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"attncli {__version__}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """See and check the arithmetic of attention, step by step."""


def _check_format(value: str) -> str:
    # validated here rather than as an Enum so the message is ours, and JSON works as well as json
    if value.lower() not in OUTPUT_FORMATS:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    return value.lower()


def _check_at_least(minimum: int, maximum: int | None = None):
    def check(value: int | None) -> int | None:
        if value is not None and (value < minimum or (maximum is not None and value > maximum)):
            bounds = f"of at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise typer.BadParameter(f"{value} is not allowed; use a whole number {bounds}")
        return value

    return check


PrecisionOption = Annotated[
    int,
    typer.Option("--precision", metavar="N", callback=_check_at_least(0, 17), help="Decimals shown in tables."),
]
FormatOption = Annotated[
    str,
    typer.Option(
        "--format",
        "-f",
        metavar="table|json",
        callback=_check_format,
        help="table (Rich tables) or json (all digits, for pipelines).",
    ),
]


@app.command()
def compute(
    file: Annotated[
        str,
        typer.Argument(metavar="FILE", help="A JSON problem document, or - for standard input.", show_default=False),
    ],
    heads: Annotated[
        int | None,
        typer.Option(
            "--heads", metavar="N", callback=_check_at_least(1), help="Number of heads (overrides the document)."
        ),
    ] = None,
    scale: Annotated[
        str | None,
        typer.Option(
            "--scale", metavar="RULE", help="sqrt (1/sqrt(head_dim), the default), none (1), or a positive number."
        ),
    ] = None,
    causal: Annotated[
        bool, typer.Option("--causal", help="Query i sees keys 0..i only (replaces the document's mask).")
    ] = False,
    step: Annotated[
        list[str] | None,
        typer.Option(
            "--step",
            "-s",
            metavar="NAME",
            help="Show only this step (repeatable): q k v scores logits softmax concat output.",
        ),
    ] = None,
    output_format: FormatOption = "table",
    precision: PrecisionOption = 4,
    full: Annotated[
        bool, typer.Option("--full", help="Show every row and column of large tables instead of eliding the middle.")
    ] = False,
) -> None:
    """Compute attention for FILE and show every intermediate step."""
    from attncli.errors import ProblemError
    from attncli.pipeline import attention
    from attncli.problem import problem_from_document
    from attncli.readers import read_json_document, source_name

    source = source_name(file)
    try:
        document = read_json_document(file)
        problem = problem_from_document(document, heads=heads, scale=scale, causal=causal)
        trace = attention(problem)
        steps = trace.select(step)
    except ProblemError as error:
        _fail(source, error.message)
    for warning in trace.warnings:
        sys.stderr.write(f"Warning: {source}: {warning}\n")
    _show(trace, steps, output_format, precision, full)


@app.command()
def demo(
    output_format: FormatOption = "table",
    precision: PrecisionOption = 4,
) -> None:
    """Walk through the classic worked example, step by step."""
    from attncli.demo import CLASSIC_DOCUMENT, walkthrough
    from attncli.pipeline import attention
    from attncli.problem import problem_from_document

    problem = problem_from_document(CLASSIC_DOCUMENT)
    trace = attention(problem)
    if output_format == "json":
        _show(trace, trace.select(None), output_format, precision)
        return
    from attncli.view import print_demo

    sections, warning = walkthrough(problem, trace)
    with _stdout_guard():
        print_demo(sections, warning, precision)


def _show(trace: Trace, steps: list[Step], output_format: str, precision: int, full: bool = False) -> None:
    with _stdout_guard():
        if output_format == "json":
            from attncli.export import trace_to_json

            text = trace_to_json(trace, steps)
            # in pieces: one huge write() to a closed pipe can end "successfully" after 64 KiB
            for start in range(0, len(text), 1 << 16):
                sys.stdout.write(text[start : start + (1 << 16)])
            sys.stdout.flush()
            return
        from attncli.view import print_trace

        print_trace(trace, steps, precision, full)


@contextlib.contextmanager
def _stdout_guard() -> Iterator[None]:
    """A reader that closed the pipe (``| head``) ends the run quietly, as Python's docs advise."""
    try:
        yield
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None


def _silence_stdout() -> None:
    # the flush at exit would fail again and print a traceback-like complaint: point stdout at devnull
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    """Console-script entry point: run the app; a closed pipe ends quietly."""
    try:
        app()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except KeyboardInterrupt:
        _write_error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
