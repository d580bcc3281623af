"""Everything attncli shows on a terminal: Rich lives in this package and in the CLI only.

``tables`` (a Trace's steps and the demo), ``heatmap`` (compact grids of the weights), ``text``
(shapes, explanations, verdicts), ``layers`` (a model's attention layers), ``numbers`` (how
values are written; no Rich), ``console`` (stdout, pictures, the progress bar).

Each name is imported from its module when first asked for, so that showing tables does not
import the heatmap, the text views and the rest (a few milliseconds of every run's start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from attncli.view.console import PipeAwareConsole, progress_bar, recording, stdout_console
    from attncli.view.heatmap import print_heatmaps
    from attncli.view.layers import print_layers
    from attncli.view.numbers import format_number
    from attncli.view.tables import print_demo, print_trace, trace_text
    from attncli.view.text import print_explanation, print_sections, print_shapes, print_steps_verdict, print_verdict

_MODULES = {
    "console": ("PipeAwareConsole", "progress_bar", "recording", "stdout_console"),
    "heatmap": ("print_heatmaps",),
    "layers": ("print_layers",),
    "numbers": ("format_number",),
    "tables": ("print_demo", "print_trace", "trace_text"),
    "text": ("print_explanation", "print_sections", "print_shapes", "print_steps_verdict", "print_verdict"),
}
_MODULE_OF = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "PipeAwareConsole", "format_number", "print_demo", "print_explanation", "print_heatmaps", "print_layers",
    "print_sections", "print_shapes", "print_steps_verdict", "print_trace", "print_verdict", "progress_bar",
    "recording", "stdout_console", "trace_text",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
