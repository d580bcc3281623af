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
from attncli.keys import FILE_KEYS, STEP_NAMES

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


COMPUTE_FORMATS = ("table", "json", "csv", "npz")
DEMO_FORMATS = ("table", "json")


def _write_error(message: str) -> None:
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()


def _fail(source: str, message: str) -> NoReturn:
    _write_error(f"{source}: {message}")
    raise typer.Exit(EXIT_BAD_INPUT)


def _warn(source: str, warning: str) -> None:
    sys.stderr.write(f"Warning: {source}: {warning}\n")


def _version(value: bool) -> None:
    if value:
        with _stdout_guard():
            sys.stdout.write(f"attncli {__version__}\n")
            sys.stdout.flush()
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """See and check the arithmetic of attention, step by step."""


def _choice(choices: tuple[str, ...]):
    # validated here rather than as an Enum so the message is ours, and JSON works as well as json
    def check(value: str | None) -> str | None:
        if value is not None and value.lower() not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}")
        return value.lower() if value is not None else None

    return check


def _whole_number(minimum: int, maximum: int | None = None):
    def check(value: int | None) -> int | None:
        if value is not None and (value < minimum or (maximum is not None and value > maximum)):
            bounds = f"of at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise typer.BadParameter(f"{value} is not allowed; use a whole number {bounds}")
        return value

    return check


def _matrix_option(key: str):
    return typer.Option(
        "--" + key.replace("_", "-"),
        metavar="PATH",
        help=f"{key} from a .csv, .tsv, .json or .npy file, or -.",
    )


PrecisionOption = Annotated[
    int,
    typer.Option("--precision", metavar="N", callback=_whole_number(0, 17), help="Decimals shown in tables."),
]
FullOption = Annotated[
    bool, typer.Option("--full", help="Show every row and column of large tables instead of eliding the middle.")
]
MatrixPath = str | None


@app.command()
def compute(
    file: Annotated[
        str | None,
        typer.Argument(
            metavar="FILE",
            help="A problem: .json, .npz, a folder of one file per matrix, .jsonl (one problem per line), "
            "or - for standard input.",
            show_default=False,
        ),
    ] = None,
    x: Annotated[MatrixPath, _matrix_option("x")] = None,
    context: Annotated[MatrixPath, _matrix_option("context")] = None,
    w_query: Annotated[MatrixPath, _matrix_option("w_query")] = None,
    w_key: Annotated[MatrixPath, _matrix_option("w_key")] = None,
    w_value: Annotated[MatrixPath, _matrix_option("w_value")] = None,
    b_query: Annotated[MatrixPath, _matrix_option("b_query")] = None,
    b_key: Annotated[MatrixPath, _matrix_option("b_key")] = None,
    b_value: Annotated[MatrixPath, _matrix_option("b_value")] = None,
    w_out: Annotated[MatrixPath, _matrix_option("w_out")] = None,
    b_out: Annotated[MatrixPath, _matrix_option("b_out")] = None,
    mask: Annotated[MatrixPath, _matrix_option("mask")] = None,
    heads: Annotated[
        int | None,
        typer.Option(
            "--heads", metavar="N", callback=_whole_number(1), help="Number of heads (overrides the document)."
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
    output_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="table|json|csv|npz",
            callback=_choice(COMPUTE_FORMATS),
            help="table (default), json (all digits), csv (one step, or -o FOLDER for one file each), npz.",
        ),
    ] = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", metavar="PATH",
            help="Write to PATH (atomically) instead of stdout; its extension picks the format "
            "(.json .csv .npz .txt); a folder takes one CSV per step.",
        ),
    ] = None,
    lines: Annotated[
        bool, typer.Option("--lines", help="FILE (or -) holds one JSON problem per line; write one JSON line each.")
    ] = False,
    strict: Annotated[bool, typer.Option("--strict", help="With --lines: stop at the first bad line.")] = False,
    precision: PrecisionOption = 4,
    full: FullOption = False,
) -> None:
    """Compute attention for FILE (or the matrices given as options) and show every step."""
    from attncli.errors import ProblemError

    matrix_paths = {
        key: path
        for key, path in zip(
            FILE_KEYS,
            (x, context, w_query, w_key, w_value, b_query, b_key, b_value, w_out, b_out, mask),
            strict=True,
        )
        if path is not None
    }
    if file is None and "x" not in matrix_paths:
        raise typer.BadParameter("give a problem FILE, or the matrices with --x, --w-query, --w-key and --w-value",
                                 param_hint="FILE")
    unknown_steps = [name for name in step or () if name not in STEP_NAMES]
    if unknown_steps:
        raise typer.BadParameter(f"{unknown_steps[0]!r} is not a step; the steps are {', '.join(STEP_NAMES)}",
                                 param_hint="--step")
    if lines or (file is not None and file.lower().endswith(".jsonl")):
        if matrix_paths:
            raise typer.BadParameter("matrix options do not combine with JSON Lines", param_hint="--lines")
        if output_format not in (None, "json"):
            raise typer.BadParameter("JSON Lines are written as JSON lines", param_hint="--format")
        _compute_lines(file or "-", output, heads, scale, causal, step, strict)
        return

    from attncli.pipeline import attention
    from attncli.problem import problem_from_document
    from attncli.readers import Inputs, read_inputs, source_name

    default_source = source_name(file) if file is not None else source_name(matrix_paths["x"])
    inputs = Inputs({})
    try:
        inputs = read_inputs(file, matrix_paths)
        problem = problem_from_document(inputs.document, heads=heads, scale=scale, causal=causal)
        trace = attention(problem)
        steps = trace.select(step)
    except ProblemError as error:
        _fail(inputs.source_of(error, default_source), error.message)
    except MemoryError:
        _fail(default_source, "is too large for this machine's memory (try --step output, or a smaller problem)")
    for warning in trace.warnings:
        _warn(default_source, warning)
    # every file read, those inside a folder included: none may be written over
    input_paths = [path for path in (file, *matrix_paths.values(), *inputs.sources.values()) if path is not None]
    _emit(trace, steps, output_format, output, input_paths, precision, full)


def _compute_lines(path: str, output: str | None, heads: int | None, scale: str | None, causal: bool,
                   step: list[str] | None, strict: bool) -> None:
    from attncli.errors import ProblemError
    from attncli.readers import open_lines, source_name
    from attncli.stream import compute_lines
    from attncli.writers import atomic_file, plan_output, refuse_inputs

    source = source_name(path)
    failures = 0
    try:
        plan = plan_output("json" if output is None else None, output, ["output"])
        if plan.format != "json" or plan.folder:
            raise ProblemError("JSON Lines are written as JSON: give a .jsonl or .json file", source=output)
        stream = open_lines(path)
        if plan.target is not None:
            refuse_inputs([plan.target], [path])
        with contextlib.ExitStack() as stack, _stdout_guard():
            sink = stack.enter_context(atomic_file(plan.target)) if plan.target else sys.stdout.buffer
            for result in compute_lines(stream, heads=heads, scale=scale, causal=causal, step_names=step):
                for warning in result.warnings:
                    _warn(source, warning)
                if result.error is not None:
                    failures += 1
                    _write_error(f"{source}: {result.error.message}")
                    if strict:
                        break
                # a failed line still gets its line of output, null, so outputs stay aligned with inputs
                sink.write((result.output or "null\n").encode())
            sink.flush()
    except ProblemError as error:
        _fail(error.source or source, error.message)
    if failures:
        raise typer.Exit(EXIT_BAD_INPUT)


def _emit(trace: Trace, steps: list[Step], output_format: str | None, output: str | None, input_paths: list[str],
          precision: int, full: bool) -> None:
    """Show the chosen steps on stdout, or write them to files, in the chosen format."""
    from attncli.errors import ProblemError
    from attncli.writers import plan_output, write_files

    try:
        plan = plan_output(output_format, output, [step.name for step in steps])
        if plan.folder:
            write_files({plan.target / f"{step.name}.csv": _render([step], trace, "csv", precision, full)
                         for step in steps}, input_paths)
            return
        if plan.target is not None:
            write_files({plan.target: _render(steps, trace, plan.format, precision, full)}, input_paths)
            return
    except ProblemError as error:
        _fail(error.source or "output", error.message)
    if plan.format == "npz" and sys.stdout.isatty():
        _fail("--format npz", "is binary: write it with -o FILE.npz or redirect stdout")
    with _stdout_guard():
        if plan.format == "table":
            from attncli.view import print_trace

            print_trace(trace, steps, precision, full)
            return
        data = _render(steps, trace, plan.format, precision, full)
        # in pieces: one huge write() to a closed pipe can end "successfully" after 64 KiB
        for start in range(0, len(data), 1 << 16):
            sys.stdout.buffer.write(data[start : start + (1 << 16)])
        sys.stdout.buffer.flush()


def _render(steps: list[Step], trace: Trace, chosen: str, precision: int, full: bool) -> bytes:
    if chosen == "table":
        from attncli.view import trace_text

        return trace_text(trace, steps, precision, full).encode()
    from attncli.export import render

    return render(trace, steps, chosen)


@app.command()
def demo(
    output_format: Annotated[
        str,
        typer.Option(
            "--format", "-f", metavar="table|json", callback=_choice(DEMO_FORMATS),
            help="table (Rich tables) or json (all digits, for pipelines).",
        ),
    ] = "table",
    precision: PrecisionOption = 4,
) -> None:
    """Walk through the classic worked example, step by step."""
    from attncli.demo import CLASSIC_DOCUMENT, walkthrough
    from attncli.pipeline import attention
    from attncli.problem import problem_from_document

    problem = problem_from_document(CLASSIC_DOCUMENT)
    trace = attention(problem)
    if output_format == "json":
        _emit(trace, trace.select(None), "json", None, [], precision, False)
        return
    from attncli.view import print_demo

    sections, warning = walkthrough(problem, trace)
    with _stdout_guard():
        print_demo(sections, warning, precision)


@app.command("random")
def random_problem(
    seq_len: Annotated[int, typer.Option("--seq-len", metavar="L", callback=_whole_number(1),
                                         help="Tokens in x.")],
    d_model: Annotated[int, typer.Option("--d-model", metavar="E", callback=_whole_number(1),
                                         help="Width of x and of every weight.")],
    heads: Annotated[int, typer.Option("--heads", metavar="H", callback=_whole_number(1),
                                       help="Heads; must divide E.")] = 1,
    batch: Annotated[int | None, typer.Option("--batch", metavar="N", callback=_whole_number(1),
                                              help="Give x a batch axis of N.")] = None,
    context_len: Annotated[int | None, typer.Option("--context-len", metavar="M", callback=_whole_number(1),
                                                    help="Add a context of M tokens (cross-attention).")] = None,
    out_proj: Annotated[bool, typer.Option("--out-proj", help="Add an output projection W_O.")] = False,
    bias: Annotated[bool, typer.Option("--bias", help="Add biases.")] = False,
    causal: Annotated[bool, typer.Option("--causal", help="Add a causal mask.")] = False,
    seed: Annotated[int | None, typer.Option("--seed", metavar="S", callback=_whole_number(0),
                                             help="Same seed, same document.")] = None,
) -> None:
    """Print a random, valid problem document as one line of JSON."""
    import json

    from attncli.errors import ProblemError
    from attncli.generate import random_document

    try:
        document = random_document(seq_len, d_model, heads=heads, batch=batch, context_len=context_len,
                                   out_proj=out_proj, bias=bias, causal=causal, seed=seed)
    except ProblemError as error:
        _fail("random", error.message)
    with _stdout_guard():
        sys.stdout.write(json.dumps(document) + "\n")
        sys.stdout.flush()


@contextlib.contextmanager
def _stdout_guard() -> Iterator[None]:
    """A reader that closed the pipe (``| head``) ends the run quietly, as Python's docs advise."""
    try:
        yield
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except OSError as error:  # a full disk behind a redirect, say
        _fail("<stdout>", f"cannot be written ({error.strerror or error})")


def _silence_stdout() -> None:
    # the flush at exit would fail again and print a traceback-like complaint: point stdout at devnull
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    """Console-script entry point: run the app; a closed pipe ends quietly."""
    if sys.stdout is None:  # started with stdout closed (>&-): nowhere for results to go
        _write_error("standard output is closed")
        sys.exit(EXIT_BAD_INPUT)
    try:
        app()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except KeyboardInterrupt:
        _write_error("interrupted")
        sys.exit(EXIT_INTERRUPTED)
