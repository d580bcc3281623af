"""What a Trace becomes in a file or a pipe: strict JSON, CSV, NPZ, and `render`, which dispatches
any output format (the table too) through the registry in formats.py. Pure: text and bytes, no files."""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from attncli.formats import load, output_format
from attncli.trace import Step, Trace


def array_to_json_value(array: np.ndarray) -> Any:
    """Nested lists of floats at full float64 precision; −∞ (a masked logit) and NaN (a query that
    sees no key, with masked_rows "nan") become None."""
    if np.isfinite(array).all():
        return array.tolist()
    return np.where(np.isfinite(array), array, None).tolist()


def trace_meta(trace: Trace, steps: list[Step]) -> dict[str, Any]:
    """The trace's meta plus, for each step shown, its shape, axis names and formula."""
    return {
        **trace.meta.as_dict(),
        "steps": {
            step.name: {"shape": list(step.shape), "axes": list(step.axes), "formula": step.formula}
            for step in steps
        },
    }


def trace_to_json(trace: Trace, steps: list[Step]) -> str:
    """One JSON object on one line: a key per step holding its nested lists, then ``meta``."""
    document: dict[str, Any] = {step.name: array_to_json_value(step.array) for step in steps}
    document["meta"] = trace_meta(trace, steps)
    return json.dumps(document, allow_nan=False) + "\n"


def traces_to_json(traces: list[Trace], names: list[str] | None) -> list[str]:
    """trace_to_json of each trace's steps ``names`` (None: all), for traces that differ only in their
    steps' numbers (a stack's problems, attncli.stacks): the meta is written once for all."""
    steps = traces[0].select(names)
    # json.dumps writes a dict as {key: value, …}: each key and value dumped alone, so the same bytes
    meta = f'"meta": {_STRICT.encode(trace_meta(traces[0], steps))}}}\n'
    keys = [(step.name, json.dumps(step.name) + ": ") for step in steps]
    return ["{" + "".join(key + _values_json(trace.steps[name].array) + ", " for name, key in keys) + meta
            for trace in traces]


_STRICT = json.JSONEncoder(allow_nan=False)  # json.dumps(…, allow_nan=False) makes one per call


def _values_json(array: np.ndarray) -> str:
    """json.dumps(array_to_json_value(array), allow_nan=False), the finite case tried first."""
    try:
        return _STRICT.encode(array.tolist())
    except ValueError:  # −∞ or NaN: written null
        return _STRICT.encode(array_to_json_value(array))


def step_to_csv(step: Step) -> str:
    """A step as CSV at full precision, −∞ written as ``-inf`` and NaN (masked_rows "nan") as ``nan``.

    A 2-D step (rows, columns) is its plain rows, no header, so it reads back as the same matrix.
    A higher-rank step is in long form: a header naming the leading axes, ``row`` and the column
    indices, then one line per row, e.g. ``batch,heads,row,0,1,2`` for (batch, heads, q_len, k_len).
    """
    array = step.array
    lines = []
    if array.ndim > 2:
        leading = list(step.axes[:-2])
        lines.append(",".join([*leading, "row", *map(str, range(array.shape[-1]))]))
    for index in itertools.product(*(range(size) for size in array.shape[:-1])):
        values = ",".join(map(repr, array[index].tolist()))
        lines.append(values if array.ndim <= 2 else ",".join(map(str, index)) + "," + values)
    return "\n".join(lines) + "\n"


def write_npz(trace: Trace, steps: list[Step], handle: BinaryIO) -> None:
    """An NPZ archive into ``handle``: one array per step, named after it, as the trace holds it
    (no copy: each is written straight from its array), and ``meta`` (a 0-d string array holding
    the JSON meta, so nothing in it needs unpickling). Uncompressed, as np.savez writes."""
    arrays = {step.name: step.array for step in steps}
    arrays["meta"] = np.array(json.dumps(trace_meta(trace, steps)))
    np.savez(handle, **arrays)


Writing = Callable[[BinaryIO], None]  # what writes a large output into a file, never all in memory


def rendering(trace: Trace, steps: list[Step], chosen: str, precision: int = 4, full: bool = False
              ) -> bytes | Writing:
    """The steps in the output format ``chosen`` (a name in formats.OUTPUT_FORMATS), as the
    function its entry names renders them: bytes, or for NPZ the function that writes them into a
    file (attncli.writers takes either); ``precision`` and ``full`` matter to the table only."""
    rendered = load(output_format(chosen).function)(trace, steps, precision, full)
    return rendered.encode() if isinstance(rendered, str) else rendered


def render(trace: Trace, steps: list[Step], chosen: str, precision: int = 4, full: bool = False) -> bytes:
    """The steps in the output format ``chosen`` as bytes (see ``rendering``)."""
    rendered = rendering(trace, steps, chosen, precision, full)
    if not callable(rendered):
        return rendered
    buffer = io.BytesIO()
    rendered(buffer)
    return buffer.getvalue()


def json_output(trace: Trace, steps: list[Step], precision: int, full: bool) -> str:
    """--format json: the steps at full precision (``precision`` and ``full`` are the table's)."""
    return trace_to_json(trace, steps)


def csv_output(trace: Trace, steps: list[Step], precision: int, full: bool) -> str:
    """--format csv: the first of the steps (one per file) at full precision."""
    return step_to_csv(steps[0])


def npz_output(trace: Trace, steps: list[Step], precision: int, full: bool) -> Writing:
    """--format npz: the steps at full precision, written into a file as they are (every step of a
    medium problem is hundreds of MB: never copied into memory first)."""
    return lambda handle: write_npz(trace, steps, handle)


def shapes_to_json(rows: list) -> str:
    """The shape flow as one JSON object: ``steps``, a list of {step, formula, shape, axes, how}."""
    return json.dumps({"steps": [dataclasses.asdict(row) for row in rows]}) + "\n"


def layers_to_json(model: str, rows: list[dict[str, Any]]) -> str:
    """A model's attention layers as one JSON object: ``model`` and ``layers``, one object per
    layer (see app.describe_layers)."""
    return json.dumps({"model": model, "layers": rows}, allow_nan=False) + "\n"


def verdict_to_json(verdict: Any) -> str:
    """A check's verdict as one strict JSON object."""
    return json.dumps(verdict.as_dict(), allow_nan=False) + "\n"


def walk_to_json(sections: list) -> str:
    """A walk through a problem (attncli.walkthrough) as one JSON object: ``sections``, each with its
    heading, explanation, formula, notes (their text and numbers), the mask's grid (one string per
    row of each table, and the legend) and its steps at full precision."""
    def grid(mask: Any) -> dict[str, Any] | None:
        if mask is None:
            return None
        return {"legend": [{"mark": mark, "means": words, "cells": cells} for mark, words, cells in mask.legend],
                "tables": [{"title": title, "rows": ["".join(mask.marks[code] for code in row) for row in codes]}
                           for title, codes in zip(mask.titles, mask.codes, strict=True)]}

    return json.dumps({"sections": [{
        "heading": section.heading, "explanation": section.explanation, "formula": section.formula,
        "notes": [{"text": note.text, **note.data} for note in section.notes], "grid": grid(section.grid),
        "steps": {step.name: {"formula": step.formula, "axes": list(step.axes), "shape": list(step.shape),
                              "values": array_to_json_value(step.array)} for step in section.steps},
    } for section in sections]}, allow_nan=False, ensure_ascii=False) + "\n"
