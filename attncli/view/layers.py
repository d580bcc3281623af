"""A model's attention layers as a table: one row per layer, what attncli computes for it."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from attncli.view.console import PipeAwareConsole, measure_width

NONE = "—"
BIAS_LETTERS = {"b_query": "q", "b_key": "k", "b_value": "v", "b_out": "o"}
COLUMNS = ("layer", "family", "heads", "kv_heads", "head_dim", "scale", "RoPE", "window", "soft-cap", "sinks",
           "QK-norm", "biases", "mask")


def _number(value: float) -> str:
    return f"{value:.6g}"


def rope_text(rope: dict[str, Any] | None) -> str:
    """``neox, default, θ 10000``; a partial rotation's dims and an attention factor when not 1."""
    if rope is None:
        return NONE
    words = [rope["style"], rope["type"], f"θ {_number(rope['theta'])}"]
    if rope["attention_factor"] != 1.0:
        words.append(f"×{_number(rope['attention_factor'])}")
    return ", ".join(words)


def layer_cells(row: dict[str, Any]) -> list[str]:
    """A row of the table, as words (--format json gives every digit)."""
    return [
        str(row["layer"]), row["family"], str(row["heads"]), str(row["kv_heads"]), str(row["head_dim"]),
        _number(row["scale"]), rope_text(row["rope"]),
        NONE if row["window"] is None else str(row["window"]),
        NONE if row["softcap"] is None else _number(row["softcap"]),
        "yes" if row["sinks"] else NONE,
        NONE if row["qk_norm"] is None else f"RMSNorm, eps {row['qk_norm']['eps']:g}",
        " ".join(BIAS_LETTERS[key] for key in row["biases"]) or NONE,
        row["mask"] or "none",
    ]


def print_layers(model: str, rows: list[dict[str, Any]], console: Console | None = None) -> None:
    """The attention layers of ``model``, one row each; never squeezed (wider than the console, it
    is as wide as it needs)."""
    console = console or PipeAwareConsole()
    count = f"{len(rows)} attention layer{'s' * (len(rows) != 1)}"
    table = Table(title=Text(f"{model}: {count}", style="bold"), title_justify="left")
    for name in COLUMNS:
        table.add_column(name, no_wrap=True, justify="right" if name in ("layer", "heads", "kv_heads", "head_dim",
                                                                           "window") else "left")
    for row in rows:
        table.add_row(*layer_cells(row))
    console.width = max(console.width, measure_width(console, table))
    console.print(table)
