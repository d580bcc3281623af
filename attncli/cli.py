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
from attncli.keys import DEFAULT_ATOL, DEFAULT_RTOL, FILE_KEYS, STEP_NAMES

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from attncli.problem import Problem
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
NoColorOption = Annotated[bool, typer.Option("--no-color", help="Plain output without colour (as NO_COLOR=1).")]
ExportSvgOption = Annotated[
    str | None, typer.Option("--export-svg", metavar="FILE", help="Also save what is shown as an SVG picture.")
]
ExportHtmlOption = Annotated[
    str | None, typer.Option("--export-html", metavar="FILE", help="Also save what is shown as an HTML page.")
]
HeadsOption = Annotated[
    int | None,
    typer.Option("--heads", metavar="N", callback=_whole_number(1), help="Number of heads (overrides the document)."),
]
ScaleOption = Annotated[
    str | None,
    typer.Option("--scale", metavar="RULE",
                 help="sqrt (1/sqrt(head_dim), the default), none (1), or a positive number."),
]
CausalOption = Annotated[
    bool, typer.Option("--causal", help="Query i sees keys 0..i only (replaces the document's mask).")
]
ProblemArgument = Annotated[
    str, typer.Argument(metavar="FILE", help="A problem: .json, .npz, a folder, or - for standard input.",
                        show_default=False),
]


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
    heads: HeadsOption = None,
    scale: ScaleOption = None,
    causal: CausalOption = False,
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
    dtype: Annotated[
        str, typer.Option("--dtype", metavar="float64|float32", callback=_choice(("float64", "float32")),
                          help="Compute in float64 (default) or float32, to match a framework's float32 numbers."),
    ] = "float64",
    view: Annotated[
        str, typer.Option("--view", metavar="table|heatmap", callback=_choice(("table", "heatmap")),
                          help="table: every step as tables; heatmap: the softmax weights as compact colour grids."),
    ] = "table",
    precision: PrecisionOption = 4,
    full: FullOption = False,
    no_color: NoColorOption = False,
    export_svg: ExportSvgOption = None,
    export_html: ExportHtmlOption = None,
) -> None:
    """Compute attention for FILE (or the matrices given as options) and show every step."""

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
    if output == "-":
        output = None  # - is standard output, as it is standard input for FILE
    if lines or (file is not None and file.lower().endswith(".jsonl")):
        if matrix_paths:
            raise typer.BadParameter("matrix options do not combine with JSON Lines", param_hint="--lines")
        if output_format not in (None, "json"):
            raise typer.BadParameter("JSON Lines are written as JSON lines", param_hint="--format")
        if view != "table" or export_svg is not None or export_html is not None:
            raise typer.BadParameter("JSON Lines are written as JSON lines, not shown as pictures",
                                     param_hint="--view/--export-svg/--export-html")
        _compute_lines(file or "-", output, heads, scale, causal, step, strict, dtype)
        return

    problem, input_paths, source = _load_problem(file, matrix_paths, heads, scale, causal)
    if dtype == "float32":
        problem = problem.astype("float32")
    trace = _computed(problem, source, None if view == "heatmap" else step)
    steps = _selected(trace, step, source)
    if view == "heatmap":
        if step:
            raise typer.BadParameter("the heatmap shows the softmax weights; --step does not apply",
                                     param_hint="--step")
        if output_format not in (None, "table") or output is not None:
            raise typer.BadParameter("the heatmap is a view: it goes to the terminal (and --export-svg/--export-html)",
                                     param_hint="--view")
        from attncli.view import print_heatmaps

        _show(lambda console: print_heatmaps(trace, full, console), no_color, export_svg, export_html, input_paths)
        return
    if export_svg is not None or export_html is not None:
        from attncli.view import print_trace

        if output_format not in (None, "table") or output is not None:
            raise typer.BadParameter("pictures record the table view", param_hint="--export-svg/--export-html")
        _show(lambda console: print_trace(trace, steps, precision, full, console), no_color, export_svg, export_html,
              input_paths)
        return
    _emit(trace, steps, output_format, output, input_paths, precision, full, no_color)


def _load_problem(file: str | None, matrix_paths: dict[str, str], heads: int | None, scale: str | None,
                  causal: bool) -> tuple[Problem, list[str], str]:
    """The validated problem, every file it was read from, and the name errors give it."""
    from attncli.errors import ProblemError
    from attncli.problem import problem_from_document
    from attncli.readers import Inputs, read_inputs, source_name

    source = source_name(file) if file is not None else source_name(matrix_paths["x"])
    inputs = Inputs({})
    try:
        inputs = read_inputs(file, matrix_paths)
        problem = problem_from_document(inputs.document, heads=heads, scale=scale, causal=causal)
    except ProblemError as error:
        _fail(inputs.source_of(error, source), error.message)
    # every file read, those inside a folder included: none may be written over
    input_paths = [path for path in (file, *matrix_paths.values(), *inputs.sources.values()) if path is not None]
    return problem, input_paths, source


def _computed(problem: Problem, source: str, steps: list[str] | None = None) -> Trace:
    """The trace of ``steps`` (all when None); only the output steps: computed in blocks."""
    from attncli.errors import ProblemError
    from attncli.pipeline import LIGHT_STEPS, attention

    try:
        if steps and set(steps) <= LIGHT_STEPS:
            from attncli.view import progress_bar

            with progress_bar() as report:
                trace = attention(problem, steps, progress=report)
        else:
            _check_memory(problem, source)
            trace = attention(problem, steps)
    except ProblemError as error:
        _fail(source, error.message)
    except MemoryError:
        _fail(source, "is too large for this machine's memory (try --step output, or a smaller problem)")
    for warning in trace.warnings:
        _warn(source, warning)
    return trace


def _check_memory(problem: Problem, source: str) -> None:
    """Refuse, before allocating, a trace larger than the memory this machine has free."""
    from attncli.machine import available_memory
    from attncli.pipeline import full_trace_bytes

    needed, available = full_trace_bytes(problem), available_memory()
    if available is not None and needed > available:
        _fail(source, f"every step of this problem needs about {needed / 2**30:.1f} GiB, but "
                      f"{available / 2**30:.1f} GiB is free: ask for --step output (computed in blocks), "
                      "or give a smaller problem")


def _selected(trace: Trace, names: list[str] | None, source: str) -> list[Step]:
    from attncli.errors import ProblemError

    try:
        return trace.select(names)
    except ProblemError as error:
        _fail(source, error.message)


def _show(render: Callable[[Console], None], no_color: bool, export_svg: str | None, export_html: str | None,
          input_paths: list[str]) -> None:
    """Render to stdout and, when asked, the same again into SVG/HTML pictures at the width shown."""
    from pathlib import Path

    from attncli.errors import ProblemError
    from attncli.view import recording, stdout_console
    from attncli.writers import refuse_inputs, write_files

    pictures_at = {}
    try:
        for option, path in (("--export-svg", export_svg), ("--export-html", export_html)):
            if path is None:
                continue
            if path == "" or path.endswith(("/", os.sep)) or Path(path).is_dir():
                raise ProblemError("needs a file name, not a folder", source=option if path == "" else path)
            pictures_at[option] = Path(path)
        refuse_inputs(pictures_at.values(), input_paths)
    except ProblemError as error:
        _fail(error.source or "picture", error.message)
    console = stdout_console(no_color)
    with _stdout_guard():
        render(console)
    if not pictures_at:
        return
    recorder = recording(console.width)
    render(recorder)
    pictures = {}
    if "--export-svg" in pictures_at:
        pictures[pictures_at["--export-svg"]] = recorder.export_svg(title="attncli", clear=False).encode()
    if "--export-html" in pictures_at:
        pictures[pictures_at["--export-html"]] = recorder.export_html(clear=False).encode()
    try:
        write_files(pictures, input_paths)
    except ProblemError as error:
        _fail(error.source or "picture", error.message)


def _compute_lines(path: str, output: str | None, heads: int | None, scale: str | None, causal: bool,
                   step: list[str] | None, strict: bool, dtype: str) -> None:
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
            for result in compute_lines(stream, heads=heads, scale=scale, causal=causal, step_names=step,
                                        dtype=dtype):
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
          precision: int, full: bool, no_color: bool = False) -> None:
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
    if plan.format == "table":
        from attncli.view import print_trace

        _show(lambda console: print_trace(trace, steps, precision, full, console), no_color, None, None, [])
        return
    _write_stdout(_render(steps, trace, plan.format, precision, full))


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
    no_color: NoColorOption = False,
    export_svg: ExportSvgOption = None,
    export_html: ExportHtmlOption = None,
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
    _show(lambda console: print_demo(sections, warning, precision, console), no_color, export_svg, export_html, [])


@app.command()
def shapes(
    file: Annotated[str | None, typer.Argument(metavar="[FILE]", show_default=False,
                                               help="Read the sizes from this problem instead.")] = None,
    batch: Annotated[int | None, typer.Option("--batch", metavar="N", callback=_whole_number(1),
                                              help="Batch size (none: x has no batch axis).")] = None,
    seq_len: Annotated[int | None, typer.Option("--seq-len", metavar="L", callback=_whole_number(1),
                                                help="Tokens in x (queries).")] = None,
    d_model: Annotated[int | None, typer.Option("--d-model", metavar="E", callback=_whole_number(1),
                                                help="Width of x.")] = None,
    heads: Annotated[int | None, typer.Option("--heads", metavar="H", callback=_whole_number(1),
                                              help="Heads; must divide E (default 1).")] = None,
    context_len: Annotated[int | None, typer.Option("--context-len", metavar="M", callback=_whole_number(1),
                                                    help="Tokens of a separate context (keys and values).")] = None,
    head_dim_v: Annotated[int | None, typer.Option("--head-dim-v", metavar="D", callback=_whole_number(1),
                                                   help="Width of one head's values, if not E/H.")] = None,
    d_out: Annotated[int | None, typer.Option("--d-out", metavar="W", callback=_whole_number(1),
                                              help="Width of an output projection W_O, if there is one.")] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", metavar="table|json",
                                               callback=_choice(DEMO_FORMATS), help="table or json.")] = "table",
    no_color: NoColorOption = False,
) -> None:
    """Show how the shapes flow through every step, from sizes or from a problem FILE."""
    from attncli.errors import ProblemError
    from attncli.shapes import Sizes, shape_flow, sizes_of

    formulas = None
    sizes_given = [name for name, value in (("--batch", batch), ("--seq-len", seq_len), ("--d-model", d_model),
                                            ("--heads", heads), ("--context-len", context_len),
                                            ("--head-dim-v", head_dim_v), ("--d-out", d_out)) if value is not None]
    if file is not None and sizes_given:
        raise typer.BadParameter("a FILE brings its own sizes: give sizes or a FILE, not both",
                                 param_hint=sizes_given[0])
    if file is not None:
        from attncli.pipeline import formula

        problem, _, source = _load_problem(file, {}, None, None, False)
        sizes = sizes_of(problem)
        formulas = {name: formula(name, problem) for name in STEP_NAMES}
    else:
        if seq_len is None or d_model is None:
            raise typer.BadParameter("give --seq-len and --d-model (or a problem FILE)", param_hint="--seq-len")
        source = "shapes"
        sizes = Sizes(seq_len=seq_len, d_model=d_model, heads=heads or 1, batch=batch, context_len=context_len,
                      head_dim_v=head_dim_v, d_out=d_out)
    try:
        rows = shape_flow(sizes, formulas)
    except ProblemError as error:
        _fail(source, error.message)
    if output_format == "json":
        from attncli.export import shapes_to_json

        _write_stdout(shapes_to_json(rows).encode())
        return
    from attncli.view import print_shapes

    _show(lambda console: print_shapes(rows, console), no_color, None, None, [])


@app.command()
def explain(
    file: ProblemArgument,
    query: Annotated[int, typer.Option("--query", "-q", metavar="I", help="The query (row) to explain.")],
    key: Annotated[int | None, typer.Option("--key", "-k", metavar="J",
                                            help="Spell out this key's dot product only.")] = None,
    head: Annotated[int, typer.Option("--head", metavar="H", help="The head (default 0).")] = 0,
    batch: Annotated[int, typer.Option("--batch", metavar="B", help="The batch item (default 0).")] = 0,
    heads: HeadsOption = None,
    scale: ScaleOption = None,
    causal: CausalOption = False,
    precision: PrecisionOption = 4,
    no_color: NoColorOption = False,
) -> None:
    """Show the arithmetic behind one query's row: dot products, scale, mask, softmax, weighted sum."""
    from attncli.errors import ProblemError
    from attncli.explain import explain_query

    problem, _, source = _load_problem(file, {}, heads, scale, causal)
    trace = _computed(problem, source)
    try:
        sections = explain_query(problem, trace, query, key, head, batch, precision)
    except ProblemError as error:
        _fail(source, error.message)
    from attncli.view import print_sections

    _show(lambda console: print_sections(sections, console), no_color, None, None, [])


@app.command()
def check(
    file: ProblemArgument,
    expected: Annotated[str, typer.Option("--expected", "-e", metavar="PATH",
                                          help="Your numbers: .json (an array, or a key named after the step), "
                                          ".csv/.tsv or .npy; - for standard input.")],
    step: Annotated[str, typer.Option("--step", "-s", metavar="NAME", callback=_choice(STEP_NAMES),
                                      help="The step your numbers are for (default output).")] = "output",
    atol: Annotated[float, typer.Option("--atol", metavar="A", help="Absolute tolerance.")] = DEFAULT_ATOL,
    rtol: Annotated[float, typer.Option("--rtol", metavar="R", help="Relative tolerance.")] = DEFAULT_RTOL,
    heads: HeadsOption = None,
    scale: ScaleOption = None,
    causal: CausalOption = False,
    output_format: Annotated[str, typer.Option("--format", "-f", metavar="table|json",
                                               callback=_choice(DEMO_FORMATS),
                                               help="table (words) or json (the verdict as data).")] = "table",
    no_color: NoColorOption = False,
) -> None:
    """Check your numbers for one step against attncli's; name the common mistake they show.

    Exit 0 when they agree within the tolerance, 1 when they do not, 2 on bad input."""
    from attncli.errors import ProblemError
    from attncli.mistakes import check_step
    from attncli.readers import read_expected, source_name

    if not (0 <= atol < float("inf") and 0 <= rtol < float("inf")):
        raise typer.BadParameter("tolerances must be finite numbers of 0 or more", param_hint="--atol/--rtol")
    if file == "-" and expected == "-":
        _fail("<stdin>", "standard input (-) can feed only one input")
    problem, _, source = _load_problem(file, {}, heads, scale, causal)
    trace = _computed(problem, source)
    if step not in trace.steps:
        _fail(source, f"step {step!r}: this problem has no such step; the steps are {', '.join(trace.steps)}")
    try:
        yours = read_expected(expected, step)
    except ProblemError as error:
        _fail(error.source or source_name(expected), error.message)
    try:
        verdict = check_step(problem, trace, step, yours, atol, rtol)
    except ProblemError as error:
        _fail(source_name(expected), error.message)
    if output_format == "json":
        from attncli.export import verdict_to_json

        _write_stdout(verdict_to_json(verdict).encode())
    else:
        from attncli.view import print_verdict

        _show(lambda console: print_verdict(verdict, console), no_color, None, None, [])
    if not verdict.agree:
        raise typer.Exit(EXIT_MISMATCH)


def _write_stdout(data: bytes) -> None:
    with _stdout_guard():
        # in pieces: one huge write() to a closed pipe can end "successfully" after 64 KiB
        for start in range(0, len(data), 1 << 16):
            sys.stdout.buffer.write(data[start : start + (1 << 16)])
        sys.stdout.buffer.flush()


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
    from attncli.generate import document_bytes, random_document
    from attncli.machine import available_memory

    needed, available = document_bytes(seq_len, d_model, batch=batch, context_len=context_len, out_proj=out_proj,
                                       bias=bias), available_memory()
    if available is not None and needed > available:
        _fail("random", f"that document needs about {needed / 2**30:.1f} GiB to make, but {available / 2**30:.1f} GiB "
                        "is free: ask for fewer tokens or a smaller d_model")
    try:
        document = random_document(seq_len, d_model, heads=heads, batch=batch, context_len=context_len,
                                   out_proj=out_proj, bias=bias, causal=causal, seed=seed)
    except ProblemError as error:
        _fail("random", error.message)
    except MemoryError:
        _fail("random", "that document is too large for this machine's memory")
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
