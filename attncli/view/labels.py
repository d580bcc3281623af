"""Tokens as the views show them: beside the indices, escaped, and cut to a width with an ellipsis.

A token is any string: subword marks ("▁the", "Ġcat"), CJK (two cells a character), Rich markup
("[bold]", shown literally: the views put labels in Text, never in markup), a line break or a tab
(shown escaped, so one label stays one line), or nothing at all. No Rich here: view.numbers
writes the explanation's labels with it too.
"""

from __future__ import annotations

import unicodedata

from attncli.trace import Step, Trace

# A label is cut to this many cells (a column's header, a row's label after its index); the numbers never are.
TOKEN_WIDTH = 12
ELLIPSIS = "…"


def cell_len(text: str) -> int:
    """The cells ``text`` takes in a terminal: two for a wide (CJK) character, none for a combining one."""
    return sum(0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
               for char in text)


def shown_token(token: str, width: int = TOKEN_WIDTH) -> str:
    """``token`` on one line, at most ``width`` cells: characters that print nothing visible or
    break the line (control and format characters) escaped as Python writes them (``\\n``,
    ``\\u200b``), an empty token as ``""``, a longer one cut with an ellipsis."""
    text = "".join(char if char.isprintable() else repr(char)[1:-1] for char in token) or '""'
    if cell_len(text) <= width:
        return text
    kept = []
    room = width - cell_len(ELLIPSIS)
    for char in text:
        room -= cell_len(char)
        if room < 0:
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS


def labelled(index: int, labels: tuple[str, ...] | None, width: int = TOKEN_WIDTH) -> str:
    """``index`` and its token (``2 sat``), or the index alone without labels."""
    return str(index) if labels is None else f"{index} {shown_token(labels[index], width)}"


def axis_labels(trace: Trace, axis: str, batch: int = 0) -> tuple[str, ...] | None:
    """The labels of ``axis`` in batch item ``batch``: the tokens of the queries (q_len) or of the
    keys (k_len, the appended keys by their names); None for another axis or without tokens."""
    tokens = trace.meta.tokens
    if tokens is None:
        return None
    if axis == "q_len":
        return tokens.query_labels(batch)
    return tokens.key_labels(batch) if axis == "k_len" else None


def table_labels(trace: Trace, step: Step, index: tuple[int, ...]) -> tuple[tuple[str, ...] | None, ...]:
    """The labels of the rows and columns of the table at ``index`` (the leading axes' positions)
    of ``step``: per the batch item it is of, when the tokens differ by item."""
    leading = step.axes[:-2]
    batch = index[leading.index("batch")] if "batch" in leading else 0
    return axis_labels(trace, step.axes[-2], batch), axis_labels(trace, step.axes[-1], batch)
