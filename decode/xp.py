"""Array-module helpers: the preprocessing code runs unchanged on numpy and CuPy."""

from __future__ import annotations

import sys

import numpy as np


def array_module(arr):
    """``cupy`` for a CuPy array, else ``numpy`` (CuPy is never imported here)."""
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(arr, cupy.ndarray):
        return cupy
    return np


def to_host(arr) -> np.ndarray:
    """A numpy array (copies from the device only for CuPy input)."""
    return arr.get() if hasattr(arr, "get") and not isinstance(arr, np.ndarray) else np.asarray(arr)
