"""The command line's options: their names, metavars, help texts and checks, as Typer declares them;
and how the commands are made from them (each when first asked for) and shown.

CLI-only (Typer), as cli.py is; the commands in cli.py take these. Texts that list formats come
from attncli.formats, so they name what attncli reads and writes.
"""

# No `from __future__ import annotations`: Typer reads the annotations of these checks at every
# run, and would evaluate strings each time.

from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from attncli.formats import input_suffixes, listed, output_help, output_names
from attncli.keys import STEP_NAMES
from attncli.request import step_suggestion

TEXT_FORMATS = ("table", "json")  # the commands that show words and tables, not a trace
FORMAT_HELP, OUTPUT_SUFFIXES_HELP = output_help()
PROBLEM_SUFFIXES = ", ".join(input_suffixes("problem"))
MATRIX_SUFFIXES = listed(input_suffixes("matrix"))


# --- the commands ----------------------------------------------------------------------------------

def take_commands(app: typer.Typer) -> dict[str, Any]:
    """The commands declared on ``app`` by name, taken from Typer's list: Typer would make every
    command's options at every run (milliseconds each), LazyCommands makes each when asked for."""
    declared = {info.name or typer.main.get_command_name(info.callback.__name__): info
                for info in app.registered_commands}
    app.registered_commands.clear()
    return declared


class LazyCommands(Mapping[str, Any]):
    """The commands by name, each made from its declaration when first asked for: --help and
    completion ask for every one, a run for the one it runs."""

    def __init__(self, declared: dict[str, Any], app: typer.Typer) -> None:
        self.declared, self.app = declared, app
        self.made: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self.made:
            self.made[name] = typer.main.get_command_from_info(
                self.declared[name], pretty_exceptions_short=self.app.pretty_exceptions_short,
                rich_markup_mode=self.app.rich_markup_mode)
        return self.made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.declared)

    def __len__(self) -> int:
        return len(self.declared)


class PlainUsageCommand(TyperCommand):
    """A command whose usage line shows a required argument as FILE, as Click does, not Typer's {FILE}."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
                for piece in super().collect_usage_pieces(ctx)]


def close_options(name: str, ctx: Any) -> list[str]:
    """The command's options close to a mistyped ``name``, compared without their dashes (which
    every option shares) and with a stricter cutoff than Click's: --stpe suggests --step, --bogus nothing."""
    import difflib

    params = ctx.command.get_params(ctx) if ctx else ()
    options = [flag for param in params for flag in param.opts if flag.startswith("--")]
    close = difflib.get_close_matches(name.lstrip("-"), [flag[2:] for flag in options], n=3, cutoff=0.75)
    return ["--" + flag for flag in close]


# --- the options -----------------------------------------------------------------------------------

def choice(choices: tuple[str, ...], suggest: Callable[[str], str] = lambda value: ""):
    # validated here rather than as an Enum so the message is ours, and JSON works as well as json
    def check(value: str | None) -> str | None:
        if value is not None and value.lower() not in choices:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}{suggest(value)}")
        return value.lower() if value is not None else None

    return check


def completing(names: tuple[str, ...]) -> Callable[[str], list[str]]:
    """Shell completion for an option's value: the names that start with what was typed."""
    def complete(incomplete: str) -> list[str]:
        return [name for name in names if name.startswith(incomplete.lower())]

    return complete


def whole_number(minimum: int, maximum: int | None = None):
    def check(value: int | None) -> int | None:
        if value is not None and (value < minimum or (maximum is not None and value > maximum)):
            bounds = f"of at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise typer.BadParameter(f"{value} is not allowed; use a whole number {bounds}")
        return value

    return check


def _matrix(key: str) -> typer.models.OptionInfo:
    return typer.Option("--" + key.replace("_", "-"), metavar="PATH",
                        help=f"{key} from a {MATRIX_SUFFIXES} file, or -.")


def _count(flag: str, metavar: str, text: str, minimum: int = 1) -> typer.models.OptionInfo:
    return typer.Option(flag, metavar=metavar, callback=whole_number(minimum), help=text)


# --- shared ---------------------------------------------------------------------------------------
Precision = Annotated[
    int, typer.Option("--precision", metavar="N", callback=whole_number(0, 17), help="Decimals shown in tables.")
]
Full = Annotated[
    bool, typer.Option("--full", help="Show every row and column of large tables instead of eliding the middle.")
]
NoColor = Annotated[bool, typer.Option("--no-color", help="Plain output without colour (as NO_COLOR=1).")]
ExportSvg = Annotated[
    str | None, typer.Option("--export-svg", metavar="FILE", help="Also save what is shown as an SVG picture.")
]
ExportHtml = Annotated[
    str | None, typer.Option("--export-html", metavar="FILE",
                               help="Also save a page to open offline in a browser: every step's tables, the "
                                    "heatmaps per head, each weight's arithmetic (HTML).")
]
Heads = Annotated[int | None, _count("--heads", "N", "Number of heads (overrides the document).")]
Scale = Annotated[
    str | None,
    typer.Option("--scale", metavar="RULE",
                 help="sqrt (1/sqrt(head_dim), the default), none (1), or a positive number."),
]
Causal = Annotated[bool, typer.Option("--causal", help="Query i sees keys 0..i only (replaces the document's mask).")]

# --- the variants of modern attention: compute, explain and check override the document's keys ---
# Their values are checked by the core, as the document's keys are (--window 0: "--window is 0; …").
ROPE_STYLES = ("neox", "gptj")  # variants.ROPE_STYLES, without numpy
_KV_HEADS = "Key/value heads, dividing the heads (grouped-query attention; 1: multi-query)"
_ROPE = "Rotary embeddings of Q and K: neox (the two halves, Llama) or gptj (adjacent pairs)"
_WINDOW = "Sliding window: the query at position p sees the W keys p-W+1..p"
_SOFTCAP = "Soft-cap the logits to C·tanh(logits/C) (Gemma 2)"
_ALIBI = "ALiBi: add -slope·(query position - key position) to the logits, Press et al.'s slope per head"
_LOWER_RIGHT = "Query i sees keys 0..i+k_len-q_len: the last query sees every key (flash-attn's alignment)"


def _rope(text: str) -> typer.models.OptionInfo:
    return typer.Option("--rope", metavar="|".join(ROPE_STYLES), callback=choice(ROPE_STYLES),
                        autocompletion=completing(ROPE_STYLES), help=text)


CausalLowerRight = Annotated[
    bool, typer.Option("--causal-lower-right", help=f"{_LOWER_RIGHT} (replaces the document's mask).")
]
KvHeads = Annotated[int | None, typer.Option("--kv-heads", metavar="N", help=f"{_KV_HEADS}; overrides the document.")]
Rope = Annotated[str | None, _rope(f"{_ROPE}; overrides the document's style.")]
RopeTheta = Annotated[
    float | None,
    typer.Option("--rope-theta", metavar="T", help="The rotation's base: frequencies T^(-2i/rotary_dim) (default "
                 "10000); overrides the document's theta."),
]
Window = Annotated[int | None, typer.Option("--window", metavar="W", help=f"{_WINDOW}; overrides the document.")]
Softcap = Annotated[float | None, typer.Option("--softcap", metavar="C", help=f"{_SOFTCAP}; overrides the document.")]
Alibi = Annotated[bool, typer.Option("--alibi", help=f"{_ALIBI} (replaces the document's).")]
_MODEL = "a model (.safetensors, or a folder with config.json) with --layer and --x"
Problem = Annotated[
    str, typer.Argument(metavar="FILE", help=f"A problem: {PROBLEM_SUFFIXES}, a folder, {_MODEL}, or - for "
                        "standard input.", show_default=False),
]
Layer = Annotated[
    int | None, typer.Option("--layer", metavar="N", callback=whole_number(0),
                             help="With a model for FILE: its attention layer N is the problem "
                             "(see 'attncli layers')."),
]
PaddingFile = Annotated[
    str | None, typer.Option("--padding", metavar="PATH",
                             help=f"Which keys are real, 0/1 per key, (k_len) or (batch, k_len), as Hugging Face's "
                             f"attention_mask: from a {MATRIX_SUFFIXES} file, or -."),
]

# --- compute --------------------------------------------------------------------------------------
ComputeProblem = Annotated[
    str | None,
    typer.Argument(metavar="FILE", show_default=False,
                   help=f"A problem: {PROBLEM_SUFFIXES}, a folder of one file per matrix, "
                   f"{listed(input_suffixes('lines'))} (one problem per line), {_MODEL}, or - for standard input."),
]
X = Annotated[str | None, _matrix("x")]
Context = Annotated[str | None, _matrix("context")]
WQuery = Annotated[str | None, _matrix("w_query")]
WKey = Annotated[str | None, _matrix("w_key")]
WValue = Annotated[str | None, _matrix("w_value")]
BQuery = Annotated[str | None, _matrix("b_query")]
BKey = Annotated[str | None, _matrix("b_key")]
BValue = Annotated[str | None, _matrix("b_value")]
WOut = Annotated[str | None, _matrix("w_out")]
BOut = Annotated[str | None, _matrix("b_out")]
Mask = Annotated[str | None, _matrix("mask")]
Steps = Annotated[
    list[str] | None,
    typer.Option("--step", "-s", metavar="NAME", autocompletion=completing(STEP_NAMES),
                 help=f"Show only this step (repeatable): {' '.join(STEP_NAMES)}."),
]
TraceFormat = Annotated[
    str | None,
    typer.Option("--format", "-f", metavar="|".join(output_names()), callback=choice(output_names()),
                 autocompletion=completing(output_names()), help=FORMAT_HELP),
]
Output = Annotated[
    str | None,
    typer.Option("--output", "-o", metavar="PATH",
                 help="Write to PATH (atomically) instead of stdout; its extension picks the format "
                 f"({OUTPUT_SUFFIXES_HELP}); a folder takes one CSV per step."),
]
Lines = Annotated[
    bool, typer.Option("--lines", help="FILE (or -) holds one JSON problem per line; write one JSON line each "
                       "(into a .json file, one JSON array)."),
]
Strict = Annotated[bool, typer.Option("--strict", help="With --lines: stop at the first bad line.")]
DTYPES = ("float64", "float32", "float16", "bfloat16")
Dtype = Annotated[
    str, typer.Option("--dtype", metavar="|".join(DTYPES), callback=choice(DTYPES), autocompletion=completing(DTYPES),
                      help="Compute in float64 (default) or float32, to match a framework's float32 numbers; "
                      "float16 or bfloat16 as frameworks do: inputs and every step's result rounded to it, "
                      "products and the softmax in float32."),
]
CheckDtype = Annotated[
    str, typer.Option("--dtype", metavar="|".join(DTYPES), callback=choice(DTYPES), autocompletion=completing(DTYPES),
                      help="The dtype your numbers were computed in: float32, float16 or bfloat16 compares them with "
                      "the exact numbers within what that dtype's rounding explains on this problem (measured, "
                      "instead of --atol/--rtol)."),
]
View = Annotated[
    str, typer.Option("--view", metavar="table|heatmap", callback=choice(("table", "heatmap")),
                      autocompletion=completing(("table", "heatmap")),
                      help="table: every step as tables; heatmap: the softmax weights as compact colour grids."),
]

# --- demo, shapes, explain, check -----------------------------------------------------------------
DemoProblem = Annotated[
    str | None, typer.Argument(metavar="[FILE]", show_default=False,
                               help=f"Walk through this problem instead: {PROBLEM_SUFFIXES}, a folder, {_MODEL} "
                               "(with --layer and --x), or - for standard input.")
]
DemoFormat = Annotated[
    str, typer.Option("--format", "-f", metavar="table|json", callback=choice(TEXT_FORMATS),
                      autocompletion=completing(TEXT_FORMATS),
                      help="table (Rich tables) or json (all digits, for pipelines: the classic example's "
                      "trace; a FILE's walk, section by section)."),
]
ShapesFile = Annotated[
    str | None, typer.Argument(metavar="[FILE]", show_default=False, help="Read the sizes from this problem instead.")
]
Batch = Annotated[int | None, _count("--batch", "N", "Batch size (none: x has no batch axis).")]
SeqLen = Annotated[int | None, _count("--seq-len", "L", "Tokens in x (queries).")]
DModel = Annotated[int | None, _count("--d-model", "E", "Width of x.")]
ShapesHeads = Annotated[int | None, _count("--heads", "H", "Heads; must divide E (default 1).")]
ContextLen = Annotated[int | None, _count("--context-len", "M", "Tokens of a separate context (keys and values).")]
HeadDimV = Annotated[int | None, _count("--head-dim-v", "D", "Width of one head's values, if not E/H.")]
DOut = Annotated[int | None, _count("--d-out", "W", "Width of an output projection W_O, if there is one.")]
ShapesKvHeads = Annotated[int | None, typer.Option("--kv-heads", metavar="N", help=f"{_KV_HEADS}.")]
ShapesRope = Annotated[str | None, _rope(f"{_ROPE}: adds the q_rotated and k_rotated steps.")]
ShapesSoftcap = Annotated[float | None, typer.Option("--softcap", metavar="C", help=f"{_SOFTCAP}: the capped step.")]
ShapesAlibi = Annotated[bool, typer.Option("--alibi", help=f"{_ALIBI}: the biased step.")]
ShapesWindow = Annotated[int | None, typer.Option("--window", metavar="W", help=f"{_WINDOW}.")]
ShapesFormat = Annotated[
    str, typer.Option("--format", "-f", metavar="table|json", callback=choice(TEXT_FORMATS),
                      autocompletion=completing(TEXT_FORMATS), help="table or json.")
]
Query = Annotated[int, typer.Option("--query", "-q", metavar="I", help="The query (row) to explain.")]
Key = Annotated[int | None, typer.Option("--key", "-k", metavar="J", help="Spell out this key's dot product only.")]
Head = Annotated[int, typer.Option("--head", metavar="H", help="The head (default 0).")]
BatchItem = Annotated[int, typer.Option("--batch", metavar="B", help="The batch item (default 0).")]
Expected = Annotated[
    str, typer.Option("--expected", "-e", metavar="PATH",
                      help="Your numbers: .json (an array, or keys named after steps), .csv/.tsv, .npy, "
                      ".npz (arrays named after steps) or a folder of one file per step; - for standard input."),
]
CheckStep = Annotated[
    str | None, typer.Option("--step", "-s", metavar="NAME", callback=choice(STEP_NAMES, step_suggestion),
                      autocompletion=completing(STEP_NAMES),
                      help="Check only this step (without it: every step your file names, or output for "
                      "a single array).")
]
Atol = Annotated[float, typer.Option("--atol", metavar="A", help="Absolute tolerance.")]
Rtol = Annotated[float, typer.Option("--rtol", metavar="R", help="Relative tolerance.")]
CheckFormat = Annotated[
    str, typer.Option("--format", "-f", metavar="table|json", callback=choice(TEXT_FORMATS),
                      autocompletion=completing(TEXT_FORMATS),
                      help="table (words) or json (the verdict as data)."),
]

# --- layers ---------------------------------------------------------------------------------------
Model = Annotated[
    str, typer.Argument(metavar="MODEL", show_default=False,
                        help="A .safetensors file, or a folder with config.json and model.safetensors (or its "
                        "shards and model.safetensors.index.json)."),
]
LayersFormat = Annotated[
    str, typer.Option("--format", "-f", metavar="table|json", callback=choice(TEXT_FORMATS),
                      autocompletion=completing(TEXT_FORMATS),
                      help="table, or json (every digit, for pipelines)."),
]

# --- random ---------------------------------------------------------------------------------------
RandomSeqLen = Annotated[int, _count("--seq-len", "L", "Tokens in x.")]
RandomDModel = Annotated[int, _count("--d-model", "E", "Width of x and of every weight.")]
RandomHeads = Annotated[int, _count("--heads", "H", "Heads; must divide E.")]
RandomBatch = Annotated[int | None, _count("--batch", "N", "Give x a batch axis of N.")]
RandomContextLen = Annotated[int | None, _count("--context-len", "M", "Add a context of M tokens (cross-attention).")]
OutProj = Annotated[bool, typer.Option("--out-proj", help="Add an output projection W_O.")]
Bias = Annotated[bool, typer.Option("--bias", help="Add biases.")]
RandomCausal = Annotated[bool, typer.Option("--causal", help="Add a causal mask.")]
RandomCausalLowerRight = Annotated[
    bool, typer.Option("--causal-lower-right", help="Add a lower-right causal mask: query i sees keys "
                       "0..i+k_len-q_len (as --causal without a context; with one, the last query sees every key).")
]
RandomKvHeads = Annotated[
    int | None, typer.Option("--kv-heads", metavar="N", help=f"{_KV_HEADS}: w_key and w_value are N heads wide.")
]
RandomRope = Annotated[str | None, _rope(f"{_ROPE}.")]
RandomWindow = Annotated[int | None, typer.Option("--window", metavar="W", help=f"{_WINDOW}.")]
RandomSoftcap = Annotated[float | None, typer.Option("--softcap", metavar="C", help=f"{_SOFTCAP}.")]
RandomAlibi = Annotated[bool, typer.Option("--alibi", help=f"{_ALIBI}.")]
Sinks = Annotated[bool, typer.Option("--sinks", help="Add a random sink logit per head (gpt-oss): rows sum to "
                                     "less than 1.")]
QkNorm = Annotated[bool, typer.Option("--qk-norm", help="Add RMSNorm of each head's Q and K, with random weights "
                                      "near 1 (Qwen3).")]
Padding = Annotated[bool, typer.Option("--padding", help="Pad the keys at the end (with --batch, every item but "
                                       "the first has a random length): padded keys are hidden.")]
Tokens = Annotated[bool, typer.Option("--tokens", help="Label the queries (and a context's keys) with random words "
                                      "(tokens, context_tokens; padded keys <pad>): labels only, the numbers are "
                                      "the same as without.")]
Seed = Annotated[int | None, _count("--seed", "S", "Same seed, same document.", minimum=0)]

# --- shell completion -----------------------------------------------------------------------------
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
COMPLETION_FLAGS = ("--show-completion", "--install-completion")


def named_shell(args: list[str]) -> tuple[str, str] | None:
    """The flag and the shell of ``attncli --show-completion zsh`` (or --install-completion): Typer's
    flags detect the shell they run in and would otherwise ignore the name."""
    if len(args) != 2 or args[0] not in COMPLETION_FLAGS or args[1].startswith("-"):
        return None
    if args[1] not in SHELLS:
        raise typer.BadParameter(f"{args[1]!r} is not one of {', '.join(SHELLS)}", param_hint=f"'{args[0]}'")
    return args[0], args[1]


def complete_named_shell(flag: str, shell: str) -> None:
    """Print or install the completion script for ``shell``, with Typer's own scripts and installer."""
    from typer._completion_shared import get_completion_script, install

    names = {"prog_name": "attncli", "complete_var": "_ATTNCLI_COMPLETE"}
    if flag == "--show-completion":
        typer.echo(get_completion_script(shell=shell, **names))
    else:
        installed, path = install(shell=shell, **names)
        typer.echo(f"{installed} completion installed in {path}")
        typer.echo("Completion will take effect once you restart the terminal")
