"""The application layer: what each command does, between the command line and the core.

``load`` makes a problem of what the user gave (a file, matrix files, overrides), ``compute`` its
trace (in blocks or in full, memory checked once, here), ``emit`` the trace in the asked format
(stdout or files) and ``show`` a view (stdout, and pictures). The ``run_*`` functions are the
commands: each takes what was asked (attncli.request), checks the options go together, then works.

Errors are ProblemErrors whose ``source`` names the file at fault, or UsageErrors naming the option
to blame; the command line turns them into messages and exit codes. Results go to stdout through
the view, export and writers; warnings to stderr. No Typer here, and numpy and Rich are imported
inside functions, so that option checks stay fast.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from attncli.errors import ProblemError, option
from attncli.models import describe_layers, read_given
from attncli.request import (
    CHECKED_AS_KEYS,
    CheckRequest,
    ComputeRequest,
    Given,
    RandomRequest,
    ShapesRequest,
    Shown,
    about_option,
    check_classic,
    check_options,
    is_lines,
    naming_options,
)
from attncli.results import blaming, emit, json_or_view, page_of, show

if TYPE_CHECKING:
    from attncli.problem import Problem
    from attncli.sizes import Sizes
    from attncli.trace import Trace

Report = Callable[[ProblemError], None]  # how an error that does not end the run is reported


class Loaded(NamedTuple):
    """A validated ``problem``, the files read (none may be overwritten), its ``source`` and ``weight_names``."""

    problem: Problem
    inputs: list[str]
    source: str
    weight_names: tuple[str, ...] = ()


# --- load and compute -----------------------------------------------------------------------------

def problem_of(document: dict[str, Any], given: Given) -> Problem:
    """The validated problem of a document, with the overrides and in the dtype ``given``."""
    from attncli.problem import problem_from_document

    overrides = given.overrides()
    if overrides:
        with naming_options(overrides):
            problem = problem_from_document(document, **overrides)
    else:  # once per problem of a stream: no context to enter
        problem = problem_from_document(document)
    return problem if given.dtype == "float64" else problem.astype(given.dtype)


def load(given: Given) -> Loaded:
    """Read and validate the problem ``given`` (a layer of a model too); ProblemError naming the
    file at fault (none when an option's value is)."""
    from attncli.readers import Inputs, source_name

    source = source_name(given.file) if given.file is not None else source_name(given.matrices["x"])
    inputs = Inputs({})
    try:
        inputs = read_given(given)  # a problem, or a model's layer (compute MODEL --layer N --x HIDDEN)
        problem = problem_of(inputs.document, given)
    except ProblemError as error:
        if not about_option(error):  # an option's value is at fault, not a file
            error.source = inputs.source_of(error, source)
        raise
    # every file read, those inside a folder included: none may be written over
    read = [path for path in (given.file, *given.matrices.values(), *inputs.sources.values()) if path is not None]
    return Loaded(problem, read, source, inputs.weight_names)


def compute(problem: Problem, steps: list[str] | None = None, source: str = "") -> Trace:
    """The trace of ``steps`` (None: all) of one problem a user waits for. Output steps only: in
    blocks where that pays, with a progress bar on a terminal; otherwise every step, refused
    before allocating when larger than the free memory. Warnings go to stderr; ProblemErrors
    (a MemoryError too) name ``source``."""
    from attncli.pipeline import LIGHT_STEPS, attention

    try:
        with blaming(source, always=True):
            # output steps need no room for the scores when they are made in blocks, and are small
            # when they are not: only a trace of every step is measured against the free memory
            if steps and set(steps) <= LIGHT_STEPS:
                from attncli.view import progress_bar

                with progress_bar() as report:
                    trace = attention(problem, steps, progress=report)
            else:
                check_memory(problem, source, steps)
                trace = attention(problem, steps)
    except MemoryError:
        raise ProblemError(f"is too large for this machine's memory (try {option('step')} output, "
                           "or a smaller problem)", source=source) from None
    for warning in trace.warnings:
        warn(source, warning)
    return trace


def check_memory(problem: Problem, source: str, steps: list[str] | None = None) -> None:
    """Refuse, before allocating, a full trace larger than the memory this machine has free. The
    message names the ``steps`` asked for (None: all): the full path makes every step on the way
    to them, so that is what they need."""
    from attncli.machine import available_memory
    from attncli.pipeline import full_trace_bytes

    needed, available = full_trace_bytes(problem), available_memory()
    if available is not None and needed > available:
        asked = f"computing {option('step')} {', '.join(steps)} needs every step of this problem, about" \
            if steps else "every step of this problem needs about"
        raise ProblemError(f"{asked} {needed / 2**30:.1f} GiB, but "
                           f"{available / 2**30:.1f} GiB is free: ask for {option('step')} output (computed in "
                           "blocks), or give a smaller problem", source=source)


def warn(source: str, warning: str) -> None:
    sys.stderr.write(f"Warning: {source}: {warning}\n")


# --- the commands ---------------------------------------------------------------------------------

def run_compute(request: ComputeRequest, report: Report) -> bool:
    """compute: the trace of a problem, emitted or shown; or JSON Lines, one result per line
    (errors of single lines reported as they come). False when a line failed."""
    if request.shown.output == "-":  # - is standard output, as it is standard input for FILE
        request = request._replace(shown=request.shown._replace(output=None))
    check_options(request)
    if is_lines(request):
        return run_lines(request, report)
    shown = request.shown
    loaded = load(request.given)
    heatmap = shown.view == "heatmap"
    # the page explains the weights it shows from every step (explain's arithmetic)
    every = heatmap or shown.export_html is not None
    trace = compute(loaded.problem, None if every else request.steps, loaded.source)
    with blaming(loaded.source, always=True):
        steps = trace.select(request.steps)
    page = page_of(loaded.problem, trace, steps, shown, f"attncli compute {loaded.source}")
    if heatmap:
        from attncli.view import print_heatmaps

        show(lambda console: print_heatmaps(trace, shown.full, console), shown, loaded.inputs, page)
    elif shown.export_svg is not None or shown.export_html is not None:
        from attncli.view import print_trace

        show(lambda console: print_trace(trace, steps, shown.precision, shown.full, console), shown, loaded.inputs,
             page)
    else:
        emit(trace, steps, shown, loaded.inputs)
    return True


def run_lines(request: ComputeRequest, report: Report) -> bool:
    """JSON Lines: each line's problem computed and written as one JSON line, a chunk of lines at a
    time, those of one shape as stacks (attncli.stream, attncli.stacks; a failed line gives ``null``,
    or ends the run when ``strict``); into a .json file, as the elements of one JSON array. False
    when a line failed."""
    from attncli import stacks
    from attncli.pipeline import attention
    from attncli.readers import open_lines, source_name
    from attncli.stream import compute_lines, json_array
    from attncli.writers import atomic_file, plan_output, refuse_inputs, stdout_guard

    path, output = request.given.file or "-", request.shown.output
    source = source_name(path)
    failures = 0
    with blaming(source):
        plan = plan_output("json" if output is None else None, output, ["output"])
        if plan.format != "json" or plan.folder:
            raise ProblemError("JSON Lines are written as JSON: give a .jsonl or .json file", source=output)
        stream = open_lines(path)
        if plan.target is not None:
            refuse_inputs([plan.target], [path])
        with contextlib.ExitStack() as stack, stdout_guard():
            sink = stack.enter_context(atomic_file(plan.target)) if plan.target else sys.stdout.buffer
            if plan.target is not None and plan.target.suffix.lower() == ".json":  # one document: an array
                sink = stack.enter_context(json_array(sink))
            # one problem among many: no progress bar, no memory check (it would cost more than a small problem)
            given, steps = request.given, request.steps
            exact = given._replace(dtype="float64")  # a stack's template: stacked, then rounded to the dtype

            def traces_of(documents: list[Any]) -> list[Trace] | None:
                return stacks.traces_of(documents, lambda document: problem_of(document, exact), given.dtype, steps)

            for result in compute_lines(stream, lambda document: attention(problem_of(document, given), steps),
                                        steps, traces_of):
                for warning in result.warnings:
                    warn(source, warning)
                if result.error is not None:
                    failures += 1
                    report(ProblemError(result.error.message, result.error.shapes, source=source))
                    if request.strict:
                        break
                # a failed line still gets its line of output, null, so outputs stay aligned with inputs
                sink.write((result.output or "null\n").encode())
            sink.flush()
    return failures == 0


def run_demo(given: Given, shown: Shown) -> None:
    """demo: the classic worked example, walked through (or its trace as JSON); with a problem
    FILE, the same walk through that problem (its sections as JSON)."""
    if given.file is None:
        _demo_classic(given, shown)
        return
    from attncli.walkthrough import walk

    check_options(given)
    loaded = load(given)
    trace = compute(loaded.problem, None, loaded.source)
    with blaming(loaded.source, always=True):
        sections = walk(loaded.problem, trace, shown.precision)
    if shown.format == "json":
        from attncli.export import walk_to_json
        from attncli.writers import write_stdout

        write_stdout(walk_to_json(sections).encode())
        return
    from attncli.view import print_demo

    show(lambda console: print_demo(sections, "", shown.precision, console, trace, shown.full), shown,
         loaded.inputs, page_of(loaded.problem, trace, trace.select(None), shown, f"attncli demo {loaded.source}"))


def _demo_classic(given: Given, shown: Shown) -> None:
    from attncli.demo import CLASSIC_DOCUMENT, walkthrough

    check_classic(given)
    problem = problem_of(CLASSIC_DOCUMENT, Given())
    trace = compute(problem, None, "demo")
    if shown.format == "json":
        emit(trace, trace.select(None), shown, [])
        return
    from attncli.view import print_demo

    sections, warning = walkthrough(problem, trace)
    show(lambda console: print_demo(sections, warning, shown.precision, console), shown, (),
         page_of(problem, trace, trace.select(None), shown, "attncli demo: the classic example"))


def run_shapes(request: ShapesRequest, shown: Shown) -> None:
    """shapes: how the shapes flow through every step, for sizes or a problem file's."""
    from attncli.shapes import shape_flow
    from attncli.sizes import Sizes, sizes_of

    check_options(request)
    if request.file is not None:
        # a problem's sizes carry its scale, mask and biases: the rows show its own formulas
        loaded = load(Given(request.file))
        source, sizes = loaded.source, sizes_of(loaded.problem)
    else:
        source, given = "shapes", request.sizes
        heads, kv_heads = given.get("heads") or 1, given.get("kv_heads")
        sizes = Sizes(seq_len=given["seq_len"], d_model=given["d_model"], heads=heads,
                      batch=given.get("batch"), context_len=given.get("context_len"),
                      head_dim_v=given.get("head_dim_v"), d_out=given.get("d_out"),
                      masked=given.get("window") is not None, kv_heads=None if kv_heads == heads else kv_heads,
                      rope=given.get("rope"), softcap=given.get("softcap"), alibi=bool(given.get("alibi")),
                      window=given.get("window"))
    with blaming(source, always=True), naming_options(CHECKED_AS_KEYS):
        if request.file is None:
            _check_variant_sizes(sizes)
        rows = shape_flow(sizes)
    json_or_view(shown, "shapes_to_json", "print_shapes", rows)


def _check_variant_sizes(sizes: Sizes) -> None:
    """The variants shapes is given, checked as a problem's keys are: key/value heads that divide
    the heads, a head_dim a rotation can turn, a positive cap, a window of at least 1."""
    from attncli import variants

    if sizes.kv_heads is not None:
        variants.kv_heads(sizes.kv_heads, sizes.heads, {})
    variants.softcap(sizes.softcap)
    variants.window(sizes.window)
    if sizes.rope is not None and sizes.d_model % sizes.heads == 0:  # else shape_flow says so
        variants.rope(sizes.rope, sizes.dim)


def run_explain(given: Given, query: int, key: int | None, head: int, batch: int, shown: Shown) -> None:
    """explain: the arithmetic behind one query's row."""
    from attncli.explain import explain_query

    check_options(given)
    loaded = load(given)
    trace = compute(loaded.problem, None, loaded.source)
    with blaming(loaded.source, always=True):
        explained = explain_query(loaded.problem, trace, query, key, head, batch)
    from attncli.view import print_explanation

    show(lambda console: print_explanation(explained, shown.precision, console), shown)


def run_check(request: CheckRequest, shown: Shown) -> bool:
    """check: your numbers for one step (``--step``, or a single array: output) against attncli's,
    and the mistake they show; or, for a dump of several steps, a verdict for each and the first
    that differs. True when they agree within the tolerances."""
    from attncli.dumps import dump_steps, read_dump, step_numbers
    from attncli.mistakes import check_step, check_steps
    from attncli.pipeline import REQUESTED, problem_steps
    from attncli.readers import source_name

    check_options(request)
    dtype = request.given.dtype  # with float32, float16, bfloat16: the tolerance that dtype's rounding explains
    loaded = load(request.given._replace(dtype="float64"))  # yours are compared with the exact numbers
    problem, theirs = loaded.problem, source_name(request.expected)
    with blaming(theirs):
        dump = read_dump(request.expected)
        given = dump_steps(dump, theirs) if request.step is None and isinstance(dump, dict) else {}
    if len(given) > 1:
        trace = compute(problem, list(problem_steps(problem)) if set(given) & REQUESTED else None, loaded.source)
        lacking = [name for name in given if name not in trace.steps]
        if lacking:
            raise ProblemError(f"holds step {lacking[0]!r}, which this problem does not have; its steps are "
                               f"{', '.join(problem_steps(problem))}", source=theirs)
        spreads = {name: _rounding_spread(loaded, trace, name, dtype) for name in given} if dtype != "float64" else None
        with blaming(theirs, always=True):
            checked = check_steps(problem, trace, given, request.atol, request.rtol, loaded.weight_names, spreads)
        json_or_view(shown, "verdict_to_json", "print_steps_verdict", checked)
        return checked.agree
    step = request.step or next(iter(given), "output")  # a dump of one step is that step's numbers
    trace = compute(problem, [step] if step in REQUESTED else None, loaded.source)
    if step not in trace.steps:
        raise ProblemError(f"step {step!r}: this problem has no such step; the steps are "
                           f"{', '.join(problem_steps(problem))}", source=loaded.source)
    yours = given[step] if given else step_numbers(dump, step, theirs)
    spread = None if dtype == "float64" else _rounding_spread(loaded, trace, step, dtype)
    with blaming(theirs, always=True):
        verdict = check_step(problem, trace, step, yours, request.atol, request.rtol, loaded.weight_names,
                             spread=spread)
    json_or_view(shown, "verdict_to_json", "print_verdict", verdict)
    return verdict.agree


def _rounding_spread(loaded: Loaded, trace: Trace, step: str, dtype: str) -> Any:
    """What rounding to ``dtype`` explains of ``step`` (attncli.tolerance), for check --dtype."""
    from attncli.tolerance import rounding_spread

    with blaming(loaded.source, always=True):
        return rounding_spread(loaded.problem, step, trace.steps[step].array, dtype)


def run_layers(path: str, shown: Shown) -> None:
    """layers: the attention layers of a model and what attncli computes for each."""
    json_or_view(shown, "layers_to_json", "print_layers", path, describe_layers(path))


def run_random(request: RandomRequest) -> None:
    """random: a random, valid problem document as one line of JSON on stdout; refused before
    making it when larger than the free memory."""
    import json

    from attncli.generate import document_bytes, random_document
    from attncli.machine import available_memory
    from attncli.writers import write_stdout

    check_options(request)
    needed, available = document_bytes(request.seq_len, request.d_model, batch=request.batch,
                                       context_len=request.context_len, out_proj=request.out_proj,
                                       bias=request.bias), available_memory()
    if available is not None and needed > available:
        raise ProblemError(f"that document needs about {needed / 2**30:.1f} GiB to make, but "
                           f"{available / 2**30:.1f} GiB is free: ask for fewer tokens or a smaller d_model",
                           source="random")
    try:
        with blaming("random", always=True), naming_options(CHECKED_AS_KEYS):
            document = random_document(**request._asdict())
    except MemoryError:
        raise ProblemError("that document is too large for this machine's memory", source="random") from None
    # in pieces, as every result: one huge write to a pipe closed meanwhile can seem to succeed
    write_stdout((json.dumps(document) + "\n").encode())
