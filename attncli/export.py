"""Machine-readable output of a Trace: strict JSON (no NaN or Infinity literals)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from attncli.trace import Step, Trace


def array_to_json_value(array: np.ndarray) -> Any:
    """Nested lists of floats at full float64 precision; −∞ (a masked logit) becomes None."""
    if np.isfinite(array).all():
        return array.tolist()
    return np.where(np.isfinite(array), array, None).tolist()


def trace_meta(trace: Trace, steps: list[Step]) -> dict[str, Any]:
    """The trace's meta plus, for each step shown, its shape, axis names and formula."""
    return {
        **trace.meta,
        "steps": {
            step.name: {"shape": list(step.shape), "axes": list(step.axes), "formula": step.formula}
            for step in steps
        },
    }


def trace_to_json(trace: Trace, steps: list[Step]) -> str:
    """One JSON object: a key per step holding its nested lists, then ``meta``; ends in a newline."""
    document: dict[str, Any] = {step.name: array_to_json_value(step.array) for step in steps}
    document["meta"] = trace_meta(trace, steps)
    return json.dumps(document, allow_nan=False) + "\n"
