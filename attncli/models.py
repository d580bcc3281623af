"""A model as the application layer uses it: opened (attncli.safetensors, through the registry),
its family and attention layers found (attncli.families), one layer made the problem of
``compute MODEL --layer N --x HIDDEN``, and every layer described for ``layers``.

Every ProblemError names the file at fault: the model (its path as given), or the file of a matrix
given beside it. numpy-free at import: the model's modules are imported when a model is opened.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple

from attncli import formats
from attncli.errors import ProblemError, option
from attncli.request import Given

BIASES = ("b_query", "b_key", "b_value", "b_out")


class Model(NamedTuple):
    """An opened model: its ``checkpoint`` (attncli.safetensors), ``family`` (attncli.families) and
    attention ``layers`` (number -> the prefix of its tensors), as ``path`` names it."""

    path: str
    checkpoint: Any
    family: Any
    layers: dict[int, str]

    def span(self) -> str:
        """The layers for a sentence: ``0–31``, or ``0, 2, 5`` when they are not consecutive."""
        numbers = list(self.layers)
        if numbers == list(range(numbers[0], numbers[-1] + 1)):
            return str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}–{numbers[-1]}"
        return ", ".join(map(str, numbers[:8])) + (", …" if len(numbers) > 8 else "")


@contextlib.contextmanager
def _naming(path: str) -> Iterator[None]:
    """ProblemErrors that name no file name the model."""
    try:
        yield
    except ProblemError as error:
        error.source = error.source or path
        raise


def open_model(path: str) -> Model:
    """The model at ``path`` (headers validated, no tensor read), its family and attention layers;
    a model without any is an error."""
    from attncli.families import attention_layers, family_of
    from attncli.readers import is_model
    from attncli.sources import require_existing, source_name

    with _naming(source_name(path)):
        if path == "-":
            raise ProblemError("a model is read from its file or folder, not from standard input")
        require_existing(path)
        if not is_model(path):
            raise ProblemError("is not a model (a .safetensors file, or a folder with config.json and "
                               "model.safetensors or its shards)")
        entry = next(entry for entry in formats.INPUT_FORMATS if "model" in entry.holds)
        checkpoint = formats.load(entry.function)(path)
        family = family_of(checkpoint.config, checkpoint.names)
        layers = attention_layers(family, checkpoint.names)
        if not layers:
            raise ProblemError(f"holds no attention layers of a {family.name} model")
    return Model(path, checkpoint, family, layers)


def read_given(given: Given) -> Any:
    """What ``given`` holds, as attncli.readers.Inputs: a model's layer when FILE is a model (or
    ``--layer`` is given), else the problem FILE and matrix files hold."""
    from attncli.readers import is_model, read_inputs

    if given.file is not None and (given.layer is not None or is_model(given.file)):
        return layer_inputs(given)
    return read_inputs(given.file, dict(given.matrices))


def layer_inputs(given: Given) -> Any:
    """The problem document of attention layer ``given.layer`` of the model ``given.file``, as
    attncli.readers.Inputs: weights and settings from the model (families.layer_document, each key
    from the model's path), x and any other matrix given from their files. An absent or unknown
    layer and a missing x are errors that say what to give."""
    from attncli.families import layer_document
    from attncli.readers import read_inputs

    model = open_model(given.file or "-")
    with _naming(model.path):
        if given.layer is None:
            raise ProblemError(f"give {option('layer')} N: the model has attention layers {model.span()}")
        if given.layer not in model.layers:
            raise ProblemError(f"{option('layer')} is {given.layer}; the model has attention layers {model.span()}")
        if "x" not in given.matrices:
            raise ProblemError(f"give {option('x')} HIDDEN: the hidden states entering layer {given.layer}'s "
                               "attention, (seq_len, d_model) or (batch, seq_len, d_model)")
        document = layer_document(model.checkpoint.config, model.checkpoint, given.layer)
    inputs = read_inputs(None, dict(given.matrices))
    inputs.sources.update({key: model.path for key in document if key not in inputs.document})
    inputs.document = {**document, **inputs.document}
    return inputs


class _ShapesOnly:
    """A checkpoint's tensors as read-only zeros of their shapes (np.broadcast_to: nothing read,
    nothing allocated): enough for families.layer_document to describe a layer of any size."""

    def __init__(self, checkpoint: Any):
        self.checkpoint = checkpoint
        self.names = checkpoint.names

    def read(self, name: str) -> Any:
        import numpy as np

        return np.broadcast_to(np.float64(0.0), self.checkpoint.shape(name))


def describe_layers(path: str) -> list[dict[str, Any]]:
    """What attncli computes for each attention layer of the model at ``path``, read from the
    document families.layer_document makes of it; RoPE's type and theta as config.json names them
    (the document holds the frequencies they give)."""
    from attncli.families import layer_document, rope_setting

    model = open_model(path)
    config = model.checkpoint.config or {}
    rope_type, theta = rope_setting(config)
    rows = []
    for layer in model.layers:
        with _naming(model.path):
            document = layer_document(model.checkpoint.config, _ShapesOnly(model.checkpoint), layer)
        heads = int(document["heads"])
        head_dim = document["w_query"].shape[1] // heads
        scale, rope, qk_norm = document.get("scale", "sqrt"), document.get("rope"), document.get("qk_norm")
        rows.append({
            "layer": layer, "family": config.get("model_type") or model.family.name, "heads": heads,
            "kv_heads": int(document.get("kv_heads", heads)), "head_dim": head_dim,
            "scale": head_dim ** -0.5 if scale == "sqrt" else 1.0 if scale == "none" else float(scale),
            "rope": None if rope is None else {
                "style": rope["style"], "rotary_dim": int(rope["rotary_dim"]),
                "type": rope_type, "theta": theta,
                "attention_factor": float(rope.get("attention_factor", 1.0))},
            "window": document.get("window"), "softcap": document.get("softcap"), "sinks": "sinks" in document,
            "qk_norm": None if qk_norm is None else {"eps": float(qk_norm["eps"])},
            "biases": [key for key in BIASES if key in document], "mask": document.get("mask"),
        })
    return rows
