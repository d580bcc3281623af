"""The attncli command line: declare the commands, call the application layer, report its errors.

The options are declared in attncli/options.py and the work is done in attncli/app.py; errors
become messages and exit codes in one place, ``_reported``. numpy and Rich are imported only when
a command runs, so that ``--help`` and ``--version`` start fast.
"""

# No `from __future__ import annotations` here nor in options.py: Typer reads the commands'
# annotations at every run, and strings would be evaluated each time (milliseconds).

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from attncli import __version__
from attncli import app as work
from attncli import options as opt
from attncli.errors import ProblemError
from attncli.keys import DEFAULT_ATOL, DEFAULT_RTOL
from attncli.request import CheckRequest, ComputeRequest, RandomRequest, ShapesRequest, Shown, UsageError, given_by

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
    instead of Click's usage block or Typer's Rich panel. Its commands are made when first asked
    for (``LazyCommands``): a run makes the one it runs."""

    def __init__(self, *args: Any, **settings: Any) -> None:
        super().__init__(*args, **settings)
        self.commands = opt.LazyCommands(_COMMANDS, app)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)  # the names, in the order declared, without making the commands

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            if named := opt.named_shell(sys.argv[1:] if args is None else list(args)):
                sys.exit(opt.complete_named_shell(*named))
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.Abort:
            _write_error("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        except SystemExit as error:
            # Click ends a closed pipe under its help with 1, having wrapped stdout: end it as compute does
            if error.code == 1 and type(sys.stdout).__name__ == "PacifyFlushWrapper":
                raise BrokenPipeError from None
            raise
        except _CLICK_EXCEPTION as error:
            if type(error).__name__ == "NoArgsIsHelpError":
                # bare `attncli`: the help itself is the message, as Click gives it
                sys.stderr.write(error.format_message() + "\n")
                sys.exit(EXIT_BAD_INPUT)
            if type(error).__name__ == "NoSuchOption":
                error.possibilities = opt.close_options(error.option_name, error.ctx)
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
    # --install-completion and --show-completion (bash, zsh, fish), Typer's: they cost well under
    # a millisecond a run, and Typer imports shellingham whether they are offered or not
    add_completion=True,
)


def _write_error(message: str) -> None:
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()


def _report(error: ProblemError) -> None:
    """One ``Error:`` line naming the file at fault (if one is); options in the message shown as flags."""
    at = f"{error.source}: " if error.source else ""
    _write_error(f"{at}{error.render(lambda field: '--' + field.replace('_', '-'))}")


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """The one place where the application layer's errors become messages and exit codes: a
    ProblemError one Error line and exit 2, a UsageError a usage error (Click's words, exit 2),
    a closed pipe (``| head``) a quiet exit 141 as Python's docs advise. Ctrl-C is Typer's (130)."""
    try:
        yield
    except ProblemError as error:
        _report(error)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except UsageError as error:
        raise typer.BadParameter(error.message, param_hint=error.flag) from None
    except BrokenPipeError:
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None


def _version(value: bool) -> None:
    if value:
        from attncli.writers import stdout_guard

        with _reported(), stdout_guard():
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


@app.command()
@_reported()
def compute(
    file: opt.ComputeProblem = None,
    x: opt.X = None, context: opt.Context = None,
    w_query: opt.WQuery = None, w_key: opt.WKey = None, w_value: opt.WValue = None,
    b_query: opt.BQuery = None, b_key: opt.BKey = None, b_value: opt.BValue = None,
    w_out: opt.WOut = None, b_out: opt.BOut = None, mask: opt.Mask = None,
    heads: opt.Heads = None, scale: opt.Scale = None, causal: opt.Causal = False,
    causal_lower_right: opt.CausalLowerRight = False, kv_heads: opt.KvHeads = None, rope: opt.Rope = None,
    rope_theta: opt.RopeTheta = None, window: opt.Window = None, softcap: opt.Softcap = None,
    alibi: opt.Alibi = False, layer: opt.Layer = None, padding: opt.PaddingFile = None,
    step: opt.Steps = None, output_format: opt.TraceFormat = None, output: opt.Output = None,
    lines: opt.Lines = False, strict: opt.Strict = False, dtype: opt.Dtype = "float64", view: opt.View = "table",
    precision: opt.Precision = 4, full: opt.Full = False, no_color: opt.NoColor = False,
    export_svg: opt.ExportSvg = None, export_html: opt.ExportHtml = None,
) -> None:
    """Compute attention for FILE (or the matrices given as options) and show every step."""
    request = ComputeRequest(
        given_by(locals()), step,
        Shown(output_format, output, precision, full, no_color, view, export_svg, export_html), lines, strict,
    )
    if not work.run_compute(request, _report):
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
@_reported()
def demo(
    file: opt.DemoProblem = None,
    heads: opt.Heads = None, scale: opt.Scale = None, causal: opt.Causal = False,
    causal_lower_right: opt.CausalLowerRight = False, kv_heads: opt.KvHeads = None, rope: opt.Rope = None,
    rope_theta: opt.RopeTheta = None, window: opt.Window = None, softcap: opt.Softcap = None,
    alibi: opt.Alibi = False, layer: opt.Layer = None, x: opt.X = None, padding: opt.PaddingFile = None,
    output_format: opt.DemoFormat = "table", precision: opt.Precision = 4, full: opt.Full = False,
    no_color: opt.NoColor = False, export_svg: opt.ExportSvg = None, export_html: opt.ExportHtml = None,
) -> None:
    """Walk through the classic worked example, or your own problem FILE, step by step."""
    work.run_demo(given_by(locals()), Shown(output_format, precision=precision, full=full, no_color=no_color,
                                            export_svg=export_svg, export_html=export_html))


@app.command()
@_reported()
def shapes(
    file: opt.ShapesFile = None,
    batch: opt.Batch = None, seq_len: opt.SeqLen = None, d_model: opt.DModel = None, heads: opt.ShapesHeads = None,
    context_len: opt.ContextLen = None, head_dim_v: opt.HeadDimV = None, d_out: opt.DOut = None,
    kv_heads: opt.ShapesKvHeads = None, rope: opt.ShapesRope = None, softcap: opt.ShapesSoftcap = None,
    alibi: opt.ShapesAlibi = False, window: opt.ShapesWindow = None,
    output_format: opt.ShapesFormat = "table", no_color: opt.NoColor = False,
) -> None:
    """Show how the shapes flow through every step, from sizes or from a problem FILE."""
    sizes = {"batch": batch, "seq_len": seq_len, "d_model": d_model, "heads": heads, "context_len": context_len,
             "head_dim_v": head_dim_v, "d_out": d_out, "kv_heads": kv_heads, "rope": rope, "softcap": softcap,
             "alibi": alibi or None, "window": window}
    work.run_shapes(ShapesRequest(file, sizes), Shown(output_format, no_color=no_color))


@app.command(cls=opt.PlainUsageCommand)
@_reported()
def explain(
    file: opt.Problem,
    query: opt.Query,
    key: opt.Key = None, head: opt.Head = 0, batch: opt.BatchItem = 0,
    heads: opt.Heads = None, scale: opt.Scale = None, causal: opt.Causal = False,
    causal_lower_right: opt.CausalLowerRight = False, kv_heads: opt.KvHeads = None, rope: opt.Rope = None,
    rope_theta: opt.RopeTheta = None, window: opt.Window = None, softcap: opt.Softcap = None,
    alibi: opt.Alibi = False, layer: opt.Layer = None, x: opt.X = None, padding: opt.PaddingFile = None,
    precision: opt.Precision = 4, no_color: opt.NoColor = False,
) -> None:
    """Show the arithmetic behind one query's row: dot products, scale, mask, softmax, weighted sum."""
    work.run_explain(given_by(locals()), query, key, head, batch, Shown(precision=precision, no_color=no_color))


@app.command(cls=opt.PlainUsageCommand)
@_reported()
def check(
    file: opt.Problem,
    expected: opt.Expected,
    step: opt.CheckStep = None,
    atol: opt.Atol = DEFAULT_ATOL, rtol: opt.Rtol = DEFAULT_RTOL,
    heads: opt.Heads = None, scale: opt.Scale = None, causal: opt.Causal = False,
    causal_lower_right: opt.CausalLowerRight = False, kv_heads: opt.KvHeads = None, rope: opt.Rope = None,
    rope_theta: opt.RopeTheta = None, window: opt.Window = None, softcap: opt.Softcap = None,
    alibi: opt.Alibi = False, layer: opt.Layer = None, x: opt.X = None, padding: opt.PaddingFile = None,
    dtype: opt.CheckDtype = "float64", output_format: opt.CheckFormat = "table", no_color: opt.NoColor = False,
) -> None:
    """Check your numbers for one step (or every step of a dump) against attncli's; name the mistake they show.

    Exit 0 when they agree within the tolerance, 1 when they do not, 2 on bad input."""
    request = CheckRequest(given_by(locals()), expected, step, atol, rtol)
    if not work.run_check(request, Shown(output_format, no_color=no_color)):
        raise typer.Exit(EXIT_MISMATCH)


@app.command(cls=opt.PlainUsageCommand)
@_reported()
def layers(model: opt.Model, output_format: opt.LayersFormat = "table", no_color: opt.NoColor = False) -> None:
    """List a model's attention layers and what attncli computes for each (heads, RoPE, window…)."""
    work.run_layers(model, Shown(output_format, no_color=no_color))


@app.command("random")
@_reported()
def random_problem(
    seq_len: opt.RandomSeqLen,
    d_model: opt.RandomDModel,
    heads: opt.RandomHeads = 1,
    batch: opt.RandomBatch = None,
    context_len: opt.RandomContextLen = None,
    out_proj: opt.OutProj = False,
    bias: opt.Bias = False,
    causal: opt.RandomCausal = False,
    causal_lower_right: opt.RandomCausalLowerRight = False, kv_heads: opt.RandomKvHeads = None,
    rope: opt.RandomRope = None, window: opt.RandomWindow = None, softcap: opt.RandomSoftcap = None,
    alibi: opt.RandomAlibi = False, sinks: opt.Sinks = False, qk_norm: opt.QkNorm = False,
    padding: opt.Padding = False, tokens: opt.Tokens = False,
    seed: opt.Seed = None,
) -> None:
    """Print a random, valid problem document as one line of JSON."""
    work.run_random(RandomRequest(seq_len, d_model, heads=heads, batch=batch, context_len=context_len,
                                  out_proj=out_proj, bias=bias, causal=causal, seed=seed,
                                  causal_lower_right=causal_lower_right, kv_heads=kv_heads, rope=rope, window=window,
                                  softcap=softcap, alibi=alibi, sinks=sinks, qk_norm=qk_norm, padding=padding,
                                  tokens=tokens))


_COMMANDS = opt.take_commands(app)  # the commands above: the group makes each when asked for


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
