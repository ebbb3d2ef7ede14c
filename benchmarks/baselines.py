"""Reference decoders the benchmarks compare against, and the exactness digest.

``pixel_digest`` hashes dtype, shape and values so a worker process can return a short
string instead of the image; the baseline loops are the plain library calls a user
would write (top level, so a process pool can pickle them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np


def pixel_digest(arr: np.ndarray) -> str:
    """Hash of dtype, shape and values: equal digests ⇔ ``np.array_equal`` with equal dtype."""
    arr = np.ascontiguousarray(arr)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(arr.view(np.uint8).reshape(-1).data)
    return h.hexdigest()


def decode_pydicom_loop(path: str) -> np.ndarray:
    """The pydicom baseline: ``dcmread(path).pixel_array``."""
    import pydicom

    return pydicom.dcmread(path).pixel_array


def decode_dicomsdl_loop(path: str) -> np.ndarray:
    """The dicomsdl baseline: ``dicomsdl.open(path).pixelData(storedvalue=True)``."""
    import dicomsdl

    return np.asarray(dicomsdl.open(path).pixelData(storedvalue=True))


BASELINE_DECODERS: dict[str, Callable[[str], np.ndarray]] = {
    "pydicom": decode_pydicom_loop,
    "dicomsdl": decode_dicomsdl_loop,
}
