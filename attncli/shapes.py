"""How the shapes flow through attention: every step's shape, its named axes and how it got there.

Pure: sizes in, rows out. The shapes are those the Trace really has (the same rules drop the
batch axis when x has none and the heads axis for a single head); the tests hold them to that.
"""

from __future__ import annotations

from dataclasses import dataclass

from attncli.errors import ProblemError
from attncli.keys import head_counts
from attncli.problem import Problem
from attncli.trace import STEP_AXES, present_axes, present_shape


@dataclass(frozen=True)
class ShapeRow:
    """One line of the flow: the ``step``, its ``formula``, its ``shape`` with one name per axis
    in ``axes``, and ``how`` it got that shape."""

    step: str
    formula: str
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    how: str


@dataclass(frozen=True)
class Sizes:
    """The sizes that fix every shape. ``batch`` None: x has no batch axis."""

    seq_len: int
    d_model: int
    heads: int = 1
    batch: int | None = None
    context_len: int | None = None
    d_context: int | None = None
    head_dim: int | None = None
    head_dim_v: int | None = None
    d_out: int | None = None
    scaled: bool = True
    masked: bool = False


def sizes_of(problem: Problem) -> Sizes:
    """The Sizes of a validated Problem."""
    return Sizes(
        seq_len=problem.x.shape[1],
        d_model=problem.x.shape[2],
        heads=problem.heads,
        batch=problem.x.shape[0] if problem.batched else None,
        context_len=problem.context.shape[1] if problem.cross else None,
        d_context=problem.context.shape[2] if problem.cross else None,
        head_dim=problem.head_dim,
        head_dim_v=problem.head_dim_v,
        d_out=problem.w_out.shape[1] if problem.w_out is not None else None,
        scaled=problem.scale_factor != 1.0,
        masked=problem.mask is not None,
    )


def shape_flow(sizes: Sizes, formulas: dict[str, str] | None = None) -> list[ShapeRow]:
    """Every step from the inputs to the output, in order, for these sizes; ``formulas`` (step ->
    formula, as a real problem's trace has them) replace the generic ones.

    Raises ProblemError when d_model does not split into the heads (naming the counts that would).
    """
    heads = sizes.heads
    if sizes.head_dim is None and sizes.d_model % heads:
        raise ProblemError(
            f"d_model {sizes.d_model} does not split into {heads} heads "
            f"(head counts that would: {head_counts(sizes.d_model, heads)})"
        )
    head_dim = sizes.head_dim or sizes.d_model // heads
    head_dim_v = sizes.head_dim_v or head_dim
    width, width_v = heads * head_dim, heads * head_dim_v
    k_len = sizes.context_len or sizes.seq_len
    d_context = sizes.d_context or sizes.d_model
    source = "context" if sizes.context_len else "x"
    full = {
        "batch": sizes.batch or 1, "heads": heads, "q_len": sizes.seq_len, "k_len": k_len,
        "head_dim": head_dim, "head_dim_v": head_dim_v, "heads*head_dim_v": width_v,
        "d_out": sizes.d_out or width_v,
    }
    batched = sizes.batch is not None
    lead = ("batch",) if batched else ()

    def row(step: str, formula: str, how: str) -> ShapeRow:
        axes = present_axes(step, batched, heads)
        shape = present_shape(tuple(full[axis] for axis in STEP_AXES[step]), step, batched, heads)
        return ShapeRow(step, (formulas or {}).get(step, formula), shape, axes, how)

    def given(name: str, length: int, width_in: int, length_axis: str) -> ShapeRow:
        shape = ((sizes.batch,) if batched else ()) + (length, width_in)
        return ShapeRow(name, "given", shape, lead + (length_axis, "d_model" if name == "x" else "d_context"),
                        "the input" if name == "x" else "the input keys and values are computed from")

    def split(weight: str, d_in: int, width_out: int, dim: int) -> str:
        text = f"times {weight} ({d_in}×{width_out})"
        return text + (f", split into {heads} heads × {dim}" if heads > 1 else "")

    rows = [given("x", sizes.seq_len, sizes.d_model, "q_len")]
    if sizes.context_len:
        rows.append(given("context", k_len, d_context, "k_len"))
    rows += [
        row("q", "Q = x·W_Q", split("W_Q", sizes.d_model, width, head_dim)),
        row("k", f"K = {source}·W_K", split("W_K", d_context, width, head_dim)),
        row("v", f"V = {source}·W_V", split("W_V", d_context, width_v, head_dim_v)),
        row("scores", "scores = Q·Kᵀ", f"each query·each key{', per head' if heads > 1 else ''}: "
            f"{head_dim} dims summed away"),
    ]
    if sizes.scaled or sizes.masked:
        what = " and ".join(word for word, flag in (("scaled", sizes.scaled), ("masked", sizes.masked)) if flag)
        rows.append(row("logits", "logits = scores × scale", f"{what} cell by cell"))
    rows.append(row("softmax", "softmax over keys", "along k_len: each row sums to 1"))
    merge = (f"softmax·V per head, heads joined: {heads}×{head_dim_v} = {width_v}"
             if heads > 1 else "softmax·V: weighted sums of V's rows")
    if sizes.d_out is not None:
        rows.append(row("concat", "concat = [softmax·V for each head]", merge))
        rows.append(row("output", "output = concat·W_O", f"times W_O ({width_v}×{sizes.d_out})"))
    else:
        rows.append(row("output", "output = [softmax·V for each head]" if heads > 1 else "output = softmax·V", merge))
    return rows
