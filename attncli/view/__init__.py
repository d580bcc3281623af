"""Everything attncli shows on a terminal: Rich lives in this package and in the CLI only.

``tables`` (a Trace's steps and the demo), ``heatmap`` (compact grids of the weights), ``text``
(shapes, explanations, verdicts), ``layers`` (a model's attention layers), ``numbers`` (how
values are written; no Rich), ``console`` (stdout, pictures, the progress bar).
"""

from attncli.view.console import PipeAwareConsole, progress_bar, recording, stdout_console
from attncli.view.heatmap import print_heatmaps
from attncli.view.layers import print_layers
from attncli.view.numbers import format_number
from attncli.view.tables import print_demo, print_trace, trace_text
from attncli.view.text import print_explanation, print_sections, print_shapes, print_steps_verdict, print_verdict

__all__ = [
    "PipeAwareConsole", "format_number", "print_demo", "print_explanation", "print_heatmaps", "print_layers",
    "print_sections", "print_shapes", "print_steps_verdict", "print_trace", "print_verdict", "progress_bar",
    "recording", "stdout_console", "trace_text",
]
