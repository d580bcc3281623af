"""The words a problem's rows stand for: ``tokens`` (one string per query, and per key in
self-attention) and ``context_tokens`` (one per key of cross-attention's context). They are labels
only: they never change a number. The views show them beside the indices; the JSON output's
``meta`` carries them as given. Pure Python: no numpy, no I/O."""

from __future__ import annotations

from typing import Any, NamedTuple

from attncli.errors import ProblemError
from attncli.numbers import counted
from attncli.wording import describe

Labels = tuple[tuple[str, ...], ...]  # one tuple of strings per batch item, or one every item shares


class Tokens(NamedTuple):
    """The labels of the queries (``queries``, from ``tokens``) and of the source's keys
    (``context``, from ``context_tokens``; in self-attention the keys are the queries), each None
    when not given, and each one tuple per batch item or a single tuple every item shares (``nested``
    says which was given, per key). ``appended``: the keys after the source's ("bias_k", "zero":
    nn.MultiheadAttention's add_bias_kv and add_zero_attn), labelled by those names."""

    queries: Labels | None
    context: Labels | None
    cross: bool
    nested: tuple[bool, bool] = (False, False)
    appended: tuple[str, ...] = ()

    def query_labels(self, batch: int = 0) -> tuple[str, ...] | None:
        """The queries' labels in batch item ``batch``, or None."""
        return None if self.queries is None else self.queries[min(batch, len(self.queries) - 1)]

    def key_labels(self, batch: int = 0) -> tuple[str, ...] | None:
        """The keys' labels in batch item ``batch`` (the appended keys' names after the source's), or None."""
        source = self.context if self.cross else self.queries
        if source is None:
            return None
        return source[min(batch, len(source) - 1)] + self.appended

    def as_dict(self) -> dict[str, Any]:
        """As the JSON output's ``meta`` has them: ``tokens`` and ``context_tokens`` as given."""
        shown = {}
        for key, labels, nested in (("tokens", self.queries, self.nested[0]),
                                    ("context_tokens", self.context, self.nested[1])):
            if labels is not None:
                shown[key] = [list(item) for item in labels] if nested else list(labels[0])
        return shown


def labels_of(document: dict, batch: int, batched: bool, q_len: int, k_len: int, cross: bool,
           appended: tuple[str, ...] = ()) -> Tokens | None:
    """The document's ``tokens`` and ``context_tokens``, checked: a list of strings, one per query
    (``q_len``) or per key of the context (``k_len``, the source's keys); batched, also a list of
    such lists, one per batch item. None when the document has neither."""
    given, context_given = document.get("tokens"), document.get("context_tokens")
    if given is None and context_given is None:
        return None
    if context_given is not None and not cross:
        raise ProblemError("context_tokens is given without context: in self-attention the keys are the tokens "
                           "(give tokens)", key="context_tokens")
    queries, nested = _labels("tokens", given, batch, batched, q_len, "x has", "query", "queries")
    context, context_nested = _labels("context_tokens", context_given, batch, batched, k_len, "context has",
                                      "key", "keys")
    return Tokens(queries, context, cross, (nested, context_nested), tuple(appended))


def _labels(key: str, value: Any, batch: int, batched: bool, length: int, owner: str, one: str,
            many: str) -> tuple[Labels | None, bool]:
    if value is None:
        return None, False
    what = f"a list of strings, one per {one}" + (" (or one such list per batch item)" if batched else "")
    if not isinstance(value, list):
        raise ProblemError(f"{key} is {describe(value)}; it is {what}", key=key)
    if batched and value and all(isinstance(item, list) for item in value):
        if len(value) != batch:
            raise ProblemError(f"{key} has {counted(len(value), 'list')} but x has a batch of {batch}: give one "
                               f"list per batch item, or one list for every item", key=key)
        return tuple(_strings(f"{key}[{index}]", item, length, owner, one, many)
                     for index, item in enumerate(value)), True
    return (_strings(key, value, length, owner, one, many),), False


def _strings(name: str, value: list, length: int, owner: str, one: str, many: str) -> tuple[str, ...]:
    if len(value) != length:
        raise ProblemError(f"{name} has {counted(len(value), 'string')} but {owner} {length} "
                           f"{one if length == 1 else many}: one token per {one}", key=name.split("[")[0])
    for index, token in enumerate(value):
        if not isinstance(token, str):
            raise ProblemError(f"{name}[{index}] is {describe(token)}; a token is a string", key=name.split("[")[0])
    return tuple(value)
