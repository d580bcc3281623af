"""Keep numpy's BLAS to one thread while attncli runs its own threads.

Two levels of threads on two cores fight: each of our workers' products would start its own
BLAS threads. OpenBLAS's thread count is global, so it is lowered for the blocked phase and put
back after. Only numpy's bundled OpenBLAS is looked for; anywhere else this does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from collections.abc import Iterator
from functools import cache

import numpy as np

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")


@cache
def _openblas() -> tuple[object, object] | None:
    """(set_num_threads, get_num_threads) of the OpenBLAS numpy loaded, or None."""
    import glob  # here: only the blocked path looks for the library

    root = os.path.dirname(np.__file__)
    candidates = glob.glob(os.path.join(root + ".libs", "*openblas*")) + glob.glob(
        os.path.join(root, ".dylibs", "*openblas*"))
    for path in candidates:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for setter in _SETTERS:
            getter = setter.replace("set_num_threads", "get_num_threads")
            if hasattr(library, setter) and hasattr(library, getter):
                return getattr(library, setter), getattr(library, getter)
    return None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block, numpy's OpenBLAS uses one thread (when it can be found)."""
    functions = _openblas()
    if functions is None:
        yield
        return
    set_threads, get_threads = functions
    before = get_threads()
    set_threads(1)
    try:
        yield
    finally:
        set_threads(before)
