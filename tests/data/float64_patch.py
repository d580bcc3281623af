"""For the golden scripts in this folder (they need torch; attncli's tests do not): run the steps
transformers keeps in float32 even in a float64 model (the eager softmax, RMSNorm's cast, RoPE's
frequencies) in float64, by giving the chosen modeling modules a `torch` whose float32 is float64.
Their code runs otherwise unchanged."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from types import ModuleType

import torch


class _TorchFloat32IsFloat64:
    """`torch`, except that torch.float32 and torch.float name float64."""

    float32 = torch.float64
    float = torch.float64

    def __getattr__(self, name):
        return getattr(torch, name)


@contextlib.contextmanager
def float32_steps_in_float64(modules: Sequence[ModuleType], active: bool = True) -> Iterator[None]:
    """Within: each of ``modules`` sees the stand-in `torch` (when ``active``); restored after."""
    saved = [module.torch for module in modules]
    if active:
        for module in modules:
            module.torch = _TorchFloat32IsFloat64()
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.torch = original
