"""Problems of one layout computed as one: a JSON Lines stream's problems stacked along the batch axis.

A stream is usually thousands of problems of one shape. Their documents are grouped by
``signature`` (the same keys, the same shapes of their matrices, the same value of every other
key); the group's first document is validated as any line is (the template), and the others'
matrices are then only checked for what can still differ (their numbers: of a type, finite) and
stacked along the batch axis, a weight shared when every line's is the same to the bit, else
stacked too (a product per problem). ``stacked_traces`` runs the stages once on the stack
(pipeline.full_attention: nothing here is arithmetic) and gives each problem its own Trace, the
template's with its own arrays: numpy's products of a stack compute each problem's product on its
own, and the softmax works row by row, so every number is the one the problem alone gives, to
the bit (tests/test_stacks.py compares the two on mixed streams).

What is not stacked (``signature`` None) takes the per-line path: a document with PyTorch's names,
tokens, per-head (3-D) weights or 2-D biases, ``batch_first`` false, or an unknown key. Pure
numpy: no I/O.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from attncli.errors import ProblemError
from attncli.keys import KNOWN_KEYS, LABEL_KEYS, MATRIX_KEYS
from attncli.pipeline import attention, blocked_path, full_attention
from attncli.problem import Problem
from attncli.trace import Step, Trace

_STACKABLE = frozenset(KNOWN_KEYS) - frozenset(LABEL_KEYS) - {"batch_first"}
_MATRICES = frozenset(MATRIX_KEYS)
# how many axes a stackable document's weights and biases have (x and context: 2 or 3)
_RANKS = {"w_query": 2, "w_key": 2, "w_value": 2, "w_out": 2, "b_query": 1, "b_key": 1, "b_value": 1, "b_out": 1}
_NUMBERS = frozenset((int, float))
_LIST = {list}
# The scores a stack may hold at once (float64: 8 MiB a step of scores).
STACK_CELLS = 1 << 20


def signature(document: Any) -> tuple | None:
    """What documents that may be stacked share: their keys, their matrices' shapes (as the first
    row of each axis says: the stack checks the rest) and every other key's value (``about``
    aside); None for a document the per-line path takes (see the module's docstring)."""
    if type(document) is not dict:
        return None
    parts: list[Any] = [tuple(document)]  # the keys, in order
    if not _STACKABLE.issuperset(parts[0]):
        return None
    for key, value in document.items():
        if key in _MATRICES:
            rank = 0
            while type(value) is list and value:
                parts.append(len(value))
                value, rank = value[0], rank + 1
            if rank != _RANKS.get(key, rank) or not 0 < rank < 4:
                return None
            parts.append(-rank)  # where the shape ends
        elif key != "about":
            parts.append(repr(value))  # repr: 1, 1.0, True and -0.0 stay apart
    return tuple(parts)


def stacked_problem(template: Problem, documents: list[dict[str, Any]]) -> Problem:
    """The problems of ``documents`` (of one signature, the first ``template``'s, validated, in
    float64) as one batched Problem, batch after batch. ProblemError when a document's matrices
    are not numbers of the template's shapes, or not finite: its line is then validated alone."""
    arrays = {}
    for key, array in (("x", template.x), ("context", template.context), *(
            (name, getattr(template, name)) for name in _RANKS)):
        if array is None or (key == "context" and not template.cross):
            continue
        # each line's: lists of the template's lengths at every level, then int and float numbers
        shape = array.shape[1:] if key in ("x", "context") and not template.batched else array.shape
        items: list[Any] = [document[key] for document in documents]
        for size in shape:
            if set(map(type, items)) != _LIST or set(map(len, items)) != {size}:
                raise ProblemError(f"{key}: not one shape in every line")
            items = list(itertools.chain.from_iterable(items))
        if not set(map(type, items)) <= _NUMBERS:
            raise ProblemError(f"{key}: not numbers in every line")
        try:
            stack = np.array(items, dtype=np.float64).reshape(len(documents), *shape)
        except OverflowError:  # an integer beyond float64
            raise ProblemError(f"{key}: not a float64 in every line") from None
        if not np.isfinite(stack).all():
            raise ProblemError(f"{key}: not finite in every line")
        if key in ("x", "context"):
            arrays[key] = stack.reshape(-1, *array.shape[1:])
            continue
        bits = stack.view(np.uint64)
        if (bits == bits[:1]).all():  # the same weight in every line, to the bit: one matrix for all
            arrays[key] = stack[0]
        else:  # a product per problem: (batch, seq, d)·(batch, d, width), a bias (batch, 1, width)
            stack = stack if array.ndim == 2 else stack[:, None, :]
            arrays[key] = np.repeat(stack, template.x.shape[0], axis=0) if template.batched else stack
    if not template.cross:
        arrays["context"] = arrays["x"]
    return dataclasses.replace(template, **arrays, batched=True)


def traces_of(documents: list[Any], template_of: Callable[[Any], Problem], dtype: str,
              steps: list[str] | None) -> list[Trace] | None:
    """The traces of a stream's problems of one signature: the first document's problem
    (``template_of`` validates it, in float64) computed alone, as any line's, the others as stacks
    rounded to ``dtype``. None when they are not stacked: the first line fails, or takes the blocked
    path. ProblemError when another line is wrong (the caller then computes it alone)."""
    try:
        template = template_of(documents[0])
        problem = template if dtype == "float64" else template.astype(dtype)
        if blocked_path(problem, steps):
            return None
        first = attention(problem, steps)
        first.select(steps)
    except ProblemError:
        return None
    traces, size = [first], stack_size(template)
    for start in range(1, len(documents), size):
        part = documents[start:start + size]
        stacked = stacked_problem(template, part)
        stacked = stacked if dtype == "float64" else stacked.astype(dtype)
        traces += stacked_traces(first, stacked, len(part), steps)
    return traces


def stack_size(template: Problem) -> int:
    """How many problems of the template's sizes one stack holds: STACK_CELLS scores in all."""
    return max(1, STACK_CELLS // template.score_cells)


def stacked_traces(template: Trace, stacked: Problem, count: int, steps: list[str] | None) -> list[Trace]:
    """The Trace of each of the ``count`` problems of ``stacked`` (see stacked_problem): the
    template's Trace with each step's array the problem's own. ProblemError (an overflow) names a
    cell of the stack: the caller then computes its problems alone."""
    made = full_attention(stacked, tuple(steps) if steps else None).steps
    per, rest = stacked.x.shape[0] // count, tuple(template)[1:]
    # each problem's part of every step: its batch items, or without a batch axis its one item
    parts = [(step, list(made[name].array.reshape(count, per, *step.array.shape[1:])) if template.meta.batched
              else list(made[name].array)) for name, step in template.steps.items()]
    return [Trace({step.name: Step(step.name, step.formula, arrays[index], step.axes) for step, arrays in parts}, *rest)
            for index in range(count)]
