"""What a user asked for, as parsed options (the problem ``Given``, how it is ``Shown``, a
request per command), and ``check_options``: the one place that finds options that do not go
together, before anything is read or computed.

No Typer and no numpy: the command line builds these from its options, and the application
layer (attncli.app) acts on them. Named tuples, not dataclasses: made on every run, they are
several times quicker to define.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from attncli.errors import ProblemError, option
from attncli.formats import input_suffixes, output_format
from attncli.keys import DEFAULT_ATOL, DEFAULT_RTOL, FILE_KEYS, REQUIRED_KEYS, REQUIRED_ROLES, STEP_NAMES


class UsageError(Exception):
    """Options that do not go together: ``message``, and the ``flag`` (or argument) to blame."""

    def __init__(self, message: str, flag: str):
        super().__init__(message)
        self.message = message
        self.flag = flag


class Given(NamedTuple):
    """A problem as the user gave it: a ``file`` (``-``: standard input; a folder; a model, whose
    attention ``layer`` is the problem) and/or one file per matrix (``matrices``: key -> path; a
    model's ``x`` comes from there), the dtype to compute in, and the overrides: each replaces a
    key of the document (see ``overrides``)."""

    file: str | None = None
    matrices: Mapping[str, str] = MappingProxyType({})
    heads: int | None = None
    scale: str | None = None
    causal: bool = False
    dtype: str = "float64"
    causal_lower_right: bool = False
    kv_heads: int | None = None
    rope: str | None = None
    rope_theta: float | None = None
    window: int | None = None
    softcap: float | None = None
    alibi: bool = False
    layer: int | None = None  # with a model for ``file``: which of its attention layers

    def overrides(self) -> dict[str, Any]:
        """The overrides given (field -> value), named as problem_from_document's keywords."""
        # `is`: a 0 (--window 0) is given, and checked
        return {name: value for name in OVERRIDES if (value := getattr(self, name)) is not None and value is not False}


def given_by(options: Mapping[str, Any]) -> Given:
    """The problem a command's ``options`` (its parameters by name: ``file``, one path per matrix
    key and ``padding``, Given's other fields) give; a matrix not given is None."""
    matrices = {key: options[key] for key in (*FILE_KEYS, "padding") if options.get(key) is not None}
    return Given(options["file"], matrices, **{name: options[name] for name in Given._fields[2:] if name in options})


# Given's fields that replace a key of the problem document, in the order of the options
OVERRIDES = ("heads", "scale", "causal", "causal_lower_right", "kv_heads", "rope", "rope_theta", "window",
             "softcap", "alibi")
# Options whose values the core checks as it checks the document's keys, and the key its messages
# about them begin with (--window 0: "window is 0; …"): see naming_options
CHECKED_AS_KEYS = {"kv_heads": "kv_heads", "rope_theta": "rope.theta", "window": "window", "softcap": "softcap",
                   "rope": "rope"}


@contextlib.contextmanager
def naming_options(given: Iterable[str]) -> Iterator[None]:
    """A ProblemError about the value of an option ``given`` names the option, not the key it
    replaced: the core says ``window is 0; it must be at least 1`` of a document's window and of
    ``--window 0`` alike; only the caller knows which it was (``--window is 0; …`` on the command line)."""
    try:
        yield
    except ProblemError as error:
        for field in given:
            key = CHECKED_AS_KEYS.get(field)
            if key is not None and error.message.startswith(key + " "):
                error.message = option(field) + error.message[len(key):]
                break
        raise


def about_option(error: ProblemError) -> bool:
    """Whether ``error`` is about an option's value (see naming_options), so no file is at fault."""
    return error.message.startswith(tuple(option(field) for field in CHECKED_AS_KEYS))


class Shown(NamedTuple):
    """How results are shown or written: ``format`` (None: from ``output``'s extension, else the
    table), ``output`` (None: stdout), the table's ``precision`` and ``full``, ``view``
    (table or heatmap), colour, and the pictures to save as well."""

    format: str | None = None
    output: str | None = None
    precision: int = 4
    full: bool = False
    no_color: bool = False
    view: str = "table"
    export_svg: str | None = None
    export_html: str | None = None


class ComputeRequest(NamedTuple):
    given: Given
    steps: list[str] | None = None
    shown: Shown = Shown()
    lines: bool = False  # the file holds JSON Lines, whatever its name
    strict: bool = False


class ShapesRequest(NamedTuple):
    file: str | None = None
    sizes: Mapping[str, int | None] = MappingProxyType({})  # option name -> value, in the options' order


class CheckRequest(NamedTuple):
    """check's request: the problem ``given``, the ``expected`` numbers' path, the ``step`` they
    are for (None: every step a dump names, or output for one array) and the tolerances."""

    given: Given
    expected: str
    step: str | None = None
    atol: float = 0.0
    rtol: float = 0.0


class RandomRequest(NamedTuple):
    """What ``random`` makes: the sizes, the parts (``out_proj``, ``bias``, a mask) and the
    variants (see generate.random_document), and the ``seed``."""

    seq_len: int
    d_model: int
    heads: int = 1
    batch: int | None = None
    context_len: int | None = None
    out_proj: bool = False
    bias: bool = False
    causal: bool = False
    seed: int | None = None
    causal_lower_right: bool = False
    kv_heads: int | None = None
    rope: str | None = None
    window: int | None = None
    softcap: float | None = None
    alibi: bool = False
    sinks: bool = False
    qk_norm: bool = False
    padding: bool = False
    tokens: bool = False


def check_options(request: ComputeRequest | ShapesRequest | CheckRequest | RandomRequest | Given) -> None:
    """Raise a UsageError (or a ProblemError naming the option) for options that do not go
    together, the first found in the order the options are read; nothing is read or computed.
    A bare Given is a problem's options alone (explain's)."""
    if isinstance(request, ShapesRequest):
        _check_shapes(request)
    elif isinstance(request, RandomRequest):
        _one_mask_rule(request.causal, request.causal_lower_right)
    elif isinstance(request, CheckRequest):
        if not (0 <= request.atol < float("inf") and 0 <= request.rtol < float("inf")):
            raise UsageError("tolerances must be finite numbers of 0 or more", "--atol/--rtol")
        if request.given.dtype != "float64" and (request.atol, request.rtol) != (DEFAULT_ATOL, DEFAULT_RTOL):
            raise UsageError(f"--dtype {request.given.dtype} derives the tolerance from that dtype's rounding: "
                             "give it or --atol/--rtol, not both", "--atol/--rtol")
        _check_given(request.given)
        _one_from_stdin(request.given.file, request.expected)
    elif isinstance(request, Given):
        _check_given(request)
    else:
        _check_compute(request)


def check_classic(given: Given) -> None:
    """demo without a FILE walks through the classic example, which takes no problem options."""
    asked = [*given.overrides(), *given.matrices, *(["layer"] if given.layer is not None else [])]
    if asked:
        raise UsageError("applies to a problem of your own: give its FILE (the classic example is fixed)",
                         _flag(asked[0]))


def _check_given(given: Given) -> None:
    _one_mask_rule(given.causal, given.causal_lower_right)
    if given.layer is not None and given.file is None:
        raise UsageError("give the model as FILE: --layer picks one of its attention layers", "--layer")


def _one_mask_rule(causal: bool, causal_lower_right: bool) -> None:
    if causal and causal_lower_right:
        raise UsageError("--causal (top-left) is given too: give one of the two masks", "--causal-lower-right")


def _check_shapes(request: ShapesRequest) -> None:
    given = [name for name, value in request.sizes.items() if value is not None]
    if request.file is not None and given:
        raise UsageError("a FILE brings its own sizes: give sizes or a FILE, not both", _flag(given[0]))
    if request.file is None and (request.sizes.get("seq_len") is None or request.sizes.get("d_model") is None):
        raise UsageError("give --seq-len and --d-model (or a problem FILE)", "--seq-len")


def _check_compute(request: ComputeRequest) -> None:
    given, shown = request.given, request.shown
    if given.file is None and "x" not in given.matrices:
        raise UsageError("give a problem FILE, or the matrices with --x, --w-query, --w-key and --w-value", "FILE")
    _check_given(given)
    missing = [key for key in REQUIRED_KEYS if given.file is None and key not in given.matrices]
    if missing:
        raise ProblemError(f"missing {option(missing[0])} ({REQUIRED_ROLES[missing[0]]})")
    unknown = [name for name in request.steps or () if name not in STEP_NAMES]
    if unknown:
        raise UsageError(f"{unknown[0]!r} is not a step; the steps are {', '.join(STEP_NAMES)}"
                         f"{step_suggestion(unknown[0])}", "--step")
    pictures = shown.export_svg is not None or shown.export_html is not None
    if is_lines(request):
        if given.layer is not None:
            raise UsageError("a layer of a model is one problem, not JSON Lines", "--layer")
        if given.matrices:
            raise UsageError("matrix options do not combine with JSON Lines", "--lines")
        if shown.format not in (None, "json"):
            raise UsageError("JSON Lines are written as JSON lines", "--format")
        if shown.view != "table" or pictures:
            raise UsageError("JSON Lines are written as JSON lines, not shown as pictures",
                             "--view/--export-svg/--export-html")
        return
    _one_from_stdin(given.file, *given.matrices.values())
    to_terminal = shown.format in (None, "table") and shown.output is None
    if shown.view == "heatmap":
        if request.steps:
            raise UsageError("the heatmap shows the softmax weights; --step does not apply", "--step")
        if not to_terminal:
            raise UsageError("the heatmap is a view: it goes to the terminal (and --export-svg/--export-html)",
                             "--view")
    elif pictures and not to_terminal:
        raise UsageError("pictures record the table view", "--export-svg/--export-html")
    elif shown.output is None and shown.format is not None and output_format(shown.format).binary \
            and sys.stdout.isatty():
        suffix = output_format(shown.format).suffixes[0]
        raise ProblemError(f"is binary: write it with -o FILE{suffix} or redirect stdout",
                           source=f"--format {shown.format}")


def step_suggestion(name: str) -> str:
    """``; did you mean 'STEP'?`` for a step name's near miss (``weights`` and ``attn`` are the
    softmax's), or an empty string."""
    from attncli.wording import step_suggestion as suggestion  # difflib, only for a message

    return suggestion(name)


def _one_from_stdin(*paths: str | None) -> None:
    if paths.count("-") > 1:
        from attncli.sources import STDIN_NAME

        raise ProblemError("standard input (-) can feed only one input", source=STDIN_NAME)


def is_lines(request: ComputeRequest) -> bool:
    """Whether the request is for JSON Lines: --lines, or a FILE named as JSON Lines."""
    file = request.given.file
    return request.lines or (file is not None and file.lower().endswith(input_suffixes("lines")))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")
