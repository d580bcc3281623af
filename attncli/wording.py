"""How messages word what a user gave: a suggestion for a near miss, a JSON value, the head counts
that would fit. No numpy: the CLI's option checks use it without paying numpy's import."""

from __future__ import annotations

import difflib
import math
from typing import Any

from attncli.keys import STEP_NAMES


def _usual_spellings() -> dict[str, str]:
    """How other code and papers spell the weights and biases (``Wq``, ``W_Q``, ``q_proj``,
    ``q_weight``, ``query``, ``bq``, …), as ``_plain`` writes them, and attncli's name for each."""
    spellings = {}
    for letter, name in (("q", "query"), ("k", "key"), ("v", "value"), ("o", "out")):
        weight, bias = f"w_{name}", f"b_{name}"
        spellings.update(dict.fromkeys((f"w{letter}", f"{letter}weight", f"{letter}proj", f"w{name}",
                                        f"{name}weight", f"{name}proj"), weight))
        spellings.update(dict.fromkeys((f"b{letter}", f"{letter}bias", f"{letter}projbias", f"b{name}",
                                        f"{name}bias"), bias))
    spellings.update({"query": "w_query", "key": "w_key", "value": "w_value"})
    # Hugging Face's config names for the variants' keys
    spellings.update({"numkeyvalueheads": "kv_heads", "kvheads": "kv_heads", "slidingwindow": "window",
                      "windowsize": "window", "ropetheta": "rope", "ropescaling": "rope", "rotary": "rope",
                      "attnlogitsoftcapping": "softcap", "attentionmask": "padding", "positionids": "positions",
                      "attentionsinks": "sinks", "sink": "sinks", "qknorm": "qk_norm"})
    return spellings


def _plain(word: str) -> str:
    """``word`` in lower case without ``_``, ``-``, ``.`` and spaces: ``W_Q`` → ``wq``."""
    return "".join(character for character in word.lower() if character not in "_-. ")


USUAL_SPELLINGS = _usual_spellings()


def closest(word: Any, choices: tuple[str, ...], cutoff: float = 0.5) -> str:
    """``; did you mean 'CHOICE'?`` for the choice most like ``word`` (in any case; a usual
    spelling of a weight or bias, such as ``Wq`` or ``q_proj``, for its name), or an empty string."""
    usual = USUAL_SPELLINGS.get(_plain(str(word)))
    matches = [usual] if usual in choices else \
        difflib.get_close_matches(str(word).lower(), choices, n=1, cutoff=cutoff)
    return f"; did you mean {matches[0]!r}?" if matches else ""


# What PyTorch (``attn_weights``, ``need_weights``) and papers call the softmax's output, spelt plainly
_SOFTMAX_SPELLINGS = ("weights", "attn", "attention", "attnweights", "attentionweights", "attnprobs",
                      "attentionprobs", "probs", "probabilities")


def step_suggestion(name: str) -> str:
    """``; did you mean 'STEP'?`` for a step name's near miss (``weights`` and ``attn`` are the
    softmax's), or an empty string."""
    if _plain(name) in _SOFTMAX_SPELLINGS:
        return "; did you mean 'softmax'?"
    return closest(name, STEP_NAMES)


def describe(value: Any) -> str:
    """A JSON value as a message names it: null, true, the string '…', an object, an array, 3."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"the string {shown!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def head_counts(width: int, wanted: int | None = None, most: int = 8) -> str:
    """The head counts that split ``width`` evenly, for a message: ``1, 2, 4``; for a width with
    many, the ``most`` nearest to ``wanted``. Divisors are found up to √width, so a huge width is quick."""
    small = [number for number in range(1, math.isqrt(width) + 1) if width % number == 0]
    counts = sorted(set(small + [width // number for number in small]))
    if len(counts) > most:
        counts = sorted(sorted(counts, key=lambda count: abs(count - (wanted or 1)))[:most])
    return ", ".join(map(str, counts))


# Python's json messages at a closing bracket that follows a comma, by the bracket (3.13 and later
# say "Illegal trailing comma before end of object" at the comma itself)
_AFTER_A_COMMA = {"}": "Expecting property name enclosed in double quotes", "]": "Expecting value"}


def json_slip(message: str, text: str, position: int) -> str | None:
    """A JSON syntax error (Python's ``message`` at ``position`` of ``text``) in plain words when
    it is a usual slip: a trailing comma (``line 5, column 18: a comma before '}' is not allowed in
    JSON``, where the comma is) or a comma missing at the end of a line (``line 6: expected a comma
    after the value on line 5``); None for any other error."""
    before = len(text[:position].rstrip())  # just after the last character before the error
    if message.startswith("Illegal trailing comma"):
        comma, closing = position, "}" if message.endswith("object") else "]"
    elif _AFTER_A_COMMA.get(text[position:position + 1]) == message and text[before - 1:before] == ",":
        comma, closing = before - 1, text[position]
    elif message == "Expecting ',' delimiter" and text[position:].strip() and "\n" in text[before:position]:
        return f"line {_line(text, position)}: expected a comma after the value on line {_line(text, before - 1)}"
    else:
        return None
    column = comma - text.rfind("\n", 0, comma)
    return f"line {_line(text, comma)}, column {column}: a comma before {closing!r} is not allowed in JSON"


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1
