"""How the shapes flow through attention: every step's shape, its named axes and how it got there.

Pure: sizes in, rows out. Every row after the inputs is read from the stage definitions
(stages.py): their axes, formulas and explanations, so the flow shown is the one computed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from attncli.errors import ProblemError
from attncli.sizes import Sizes
from attncli.stages import STAGES, STEP_AXES
from attncli.trace import present_axes, present_shape, shaped_as_x
from attncli.wording import head_counts


@dataclass(frozen=True)
class ShapeRow:
    """One line of the flow: the ``step``, its ``formula``, its ``shape`` with one name per axis
    in ``axes``, and ``how`` it got that shape."""

    step: str
    formula: str
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    how: str

    @property
    def shape_text(self) -> str:
        """The shape as the views write it: ``(2, 4, 3)``."""
        return "(" + ", ".join(map(str, self.shape)) + ")"


def shape_flow(sizes: Sizes) -> list[ShapeRow]:
    """Every step from the inputs to the output, in order, for these sizes (a real problem's
    formulas when the sizes are a problem's, see sizes_of; general ones otherwise).

    Raises ProblemError when d_model does not split into the heads (naming the counts that would).
    """
    heads = sizes.heads
    if sizes.head_dim is None and sizes.d_model % heads:
        raise ProblemError(
            f"d_model {sizes.d_model} does not split into {heads} heads "
            f"(head counts that would: {head_counts(sizes.d_model, heads)})"
        )
    axis_sizes = sizes.axis_sizes()
    lead = ("batch",) if sizes.batched else ()

    def given(name: str, length: int, width_in: int, length_axis: str) -> ShapeRow:
        shape = ((sizes.batch,) if sizes.batched else ()) + (length, width_in)
        return ShapeRow(name, "given", shape, lead + (length_axis, "d_model" if name == "x" else "d_context"),
                        "the input" if name == "x" else "the input keys and values are computed from")

    rows = [given("x", sizes.seq_len, sizes.d_model, "q_len")]
    if sizes.context_len:
        # its rows are the keys, but for those appended after the projections
        rows.append(given("context", sizes.context_len, sizes.d_source, "context_len" if sizes.appended else "k_len"))
    for stage in STAGES:
        if stage.shown and not stage.requested and stage.present(sizes):
            full_shape = tuple(axis_sizes[axis] for axis in stage.axes)
            rows.append(ShapeRow(stage.name, stage.formula(sizes),
                                 present_shape(full_shape, stage.name, sizes.batched, heads, sizes.key_heads),
                                 present_axes(stage.name, sizes.batched, heads, sizes.key_heads), stage.how(sizes)))
    return [_seq_first(row) for row in rows] if sizes.seq_first else rows


def _seq_first(row: ShapeRow) -> ShapeRow:
    """A row as a batch_first=False document has it: the inputs and the steps shaped as x (batch,
    seq, width), the output and the joined heads, sequence first (as trace.in_layout gives them)."""
    # a row without its batch axis (an unbatched problem) reads the same either way
    if row.axes[:1] != ("batch",) or (row.step in STEP_AXES and not shaped_as_x(row.step)):
        return row
    return dataclasses.replace(row, shape=(row.shape[1], row.shape[0], *row.shape[2:]),
                               axes=(row.axes[1], row.axes[0], *row.axes[2:]))
