"""The sizes and switches that fix every step's shape and formula, with or without the numbers.

A real Problem has them (``sizes_of``); ``attncli shapes --seq-len … --d-model …`` has only the
sizes, and then the formulas are shown in their general form. Pure Python: no numpy needed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from attncli.problem import Problem


class Sizes(NamedTuple):
    """The sizes that fix every shape. ``batch`` None: x has no batch axis; ``context_len`` None:
    self-attention. ``scale`` None: only the sizes are known (no problem), so formulas are general;
    otherwise the problem's scale rule ("sqrt", "none" or a number) with its ``factor``, and
    ``biases`` names the biases it has."""

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
    scale: str | float | None = None
    factor: float = 1.0
    biases: frozenset[str] = frozenset()
    kv_heads: int | None = None
    rope: str | None = None
    qk_norm: str | None = None
    softcap: float | None = None
    alibi: bool = False
    bias: bool = False
    sinks: bool = False
    window: int | None = None
    padding: bool = False
    masked_rows: str = "zero"
    # the rows appended after K's and V's projections: "bias_k" (add_bias_kv), "zero" (add_zero_attn)
    appended: tuple[str, ...] = ()
    # the document's 3-D inputs were (seq, batch, E), PyTorch's batch_first=False: its output is given so
    seq_first: bool = False

    @property
    def key_heads(self) -> int:
        """Key/value heads: ``kv_heads``, or ``heads`` when not grouped."""
        return self.kv_heads or self.heads

    @property
    def additive(self) -> bool:
        """Whether anything is added to the logits (ALiBi or a bias)."""
        return self.alibi or self.bias

    @property
    def exact(self) -> bool:
        """Whether these are a real problem's sizes (formulas name its scale and biases)."""
        return self.scale is not None

    @property
    def batched(self) -> bool:
        return self.batch is not None

    @property
    def source(self) -> str:
        """What keys and values are computed from: ``context`` (cross-attention) or ``x``."""
        return "context" if self.context_len else "x"

    @property
    def k_len(self) -> int:
        return (self.context_len or self.seq_len) + len(self.appended)

    @property
    def d_source(self) -> int:
        return self.d_context or self.d_model

    @property
    def dim(self) -> int:
        """One head's width of queries and keys."""
        return self.head_dim or self.d_model // self.heads

    @property
    def dim_v(self) -> int:
        """One head's width of values."""
        return self.head_dim_v or self.dim

    @property
    def width_v(self) -> int:
        """The heads' values side by side: heads × head_dim_v."""
        return self.heads * self.dim_v

    def axis_sizes(self) -> dict[str, int]:
        """The size of every axis a step can have (batch 1 when x has none)."""
        return {
            "batch": self.batch or 1, "heads": self.heads, "kv_heads": self.key_heads,
            "q_len": self.seq_len, "k_len": self.k_len,
            "head_dim": self.dim, "head_dim_v": self.dim_v, "heads*head_dim_v": self.width_v,
            "d_out": self.d_out or self.width_v,
        }


def layout_key(problem: Problem) -> tuple:
    """Everything sizes_of and TraceMeta.of read from a problem, as a tuple quicker to make than
    either: problems with equal keys have equal Sizes and metadata. A new field either reads must
    join it (a test holds the three together)."""
    w_out = problem.w_out
    return (problem.x.shape, problem.context.shape if problem.cross else None, problem.heads,
            problem.w_query.shape[1], problem.w_key.shape[1], problem.w_value.shape[1],
            None if w_out is None else w_out.shape[1], problem.scale, problem.visibility is None, problem.mask_rule,
            problem.b_query is None, problem.b_key is None, problem.b_value is None, problem.b_out is None,
            problem.batched, problem.cross, problem.x.dtype.char, problem.kv_heads,
            None if problem.rope is None else (problem.rope.style, problem.rope.rotary_dim, problem.rope.theta),
            None if problem.qk_norm is None else problem.qk_norm.over, problem.softcap,
            problem.alibi is None, problem.bias is None, problem.sinks is None, problem.window,
            problem.padding is None, problem.masked_rows, None if problem.appended is None else problem.appended.names,
            problem.seq_first, problem.precision and problem.precision.name)


def sizes_of(problem: Problem) -> Sizes:
    """The Sizes (and scale, mask and biases) of a validated Problem."""
    batch, seq_len, d_model = problem.x.shape
    heads, w_out = problem.heads, problem.w_out
    # once per problem of a JSON Lines stream: plain attribute reads, no properties twice
    factor = problem.scale_factor
    return Sizes(
        seq_len, d_model, heads,
        batch if problem.batched else None,
        problem.context.shape[1] if problem.cross else None,
        problem.context.shape[2] if problem.cross else None,
        problem.w_query.shape[1] // heads,
        problem.w_value.shape[1] // problem.kv_heads,
        None if w_out is None else w_out.shape[1],
        factor != 1.0,
        problem.visibility is not None,
        problem.scale,
        factor,
        frozenset(name for name, bias in (("b_query", problem.b_query), ("b_key", problem.b_key),
                                          ("b_value", problem.b_value), ("b_out", problem.b_out))
                  if bias is not None),
        problem.kv_heads if problem.kv_heads != heads else None,
        None if problem.rope is None else problem.rope.style,
        None if problem.qk_norm is None else problem.qk_norm.over,
        problem.softcap,
        problem.alibi is not None,
        problem.bias is not None,
        problem.sinks is not None,
        problem.window,
        problem.padding is not None,
        problem.masked_rows,
        () if problem.appended is None else problem.appended.names,
        problem.seq_first,
    )
