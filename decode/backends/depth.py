"""Bit depth of GPU decoder output: classifying a probe's output and undoing dynamic-range scaling.

A GPU decoder may hand back a ``p``-bit frame (``p`` < 16) in uint16 either as the stored
values or stretched to the full 16-bit range: DALI's ``mixed`` image decoder multiplies
by ``65535 / (2^p − 1)`` (its ``DynamicRangeMultiplier``; the CPU backend does not). The
stretch is exactly invertible — ``x = rint(y · (2^p − 1) / 65535)`` recovers every value
because the rounding error of ``y`` is ≤ ½ while one step of ``x`` is ≥ 2 in ``y`` — so
the engines keep exactness either way: the 12-bit probe of every codec
(:mod:`decode.backends.probes`), decoded at start, says whether the decoder returns the
values (``"exact"``), the stretched values (``"scaled"``, undone per sample with that
sample's codestream precision) or something else (``None``: e.g. nvJPEG's all-zero
9–15-bit lossless JPEG before 13.0.2 — that codec is then decoded on the CPU). The
probing and routing themselves are :mod:`decode.routing`.
"""

from __future__ import annotations

import numpy as np

from ..codestream import j2k_info, jpeg_sof_info
from ..syntax import HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, J2K_FAMILY, JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1
from ..xp import array_module, to_host

#: Fixed numbering of the syntaxes a GPU record can carry (``info["syntax"]``); -1: none.
SYNTAX_CODES = (JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL)
FULL = 65535.0


def syntax_code(ts: str) -> int:
    return SYNTAX_CODES.index(ts) if ts in SYNTAX_CODES else -1


def codestream_precision(ts: str, codestream: bytes) -> int:
    """Sample precision from the codestream header (SIZ or SOF); 0 when it cannot be read."""
    info = j2k_info(codestream) if ts in J2K_FAMILY else jpeg_sof_info(codestream)
    return int(info.precision) if info else 0


def stretch(x: np.ndarray, precision: int) -> np.ndarray:
    """What a decoder that scales to the full range returns for ``precision``-bit values (numpy)."""
    if precision >= 16:
        return x.copy()
    return np.rint(x.astype(np.float64) * (FULL / ((1 << precision) - 1))).astype(np.uint16)


def undo_stretch(arr, precision: int):
    """In place: ``(H, W)`` uint16 stretched values → the ``precision``-bit values (numpy or CuPy).

    Returns ``arr``. A no-op for ``precision`` ≥ 16 (nothing was stretched).
    """
    if precision >= 16 or precision <= 0:
        return arr
    factor = np.float32(((1 << precision) - 1) / FULL)
    xp = array_module(arr)
    if xp is np:
        arr[...] = np.rint(arr.astype(np.float32) * factor).astype(arr.dtype)
        return arr
    _undo_kernel()(factor, arr)
    return arr


_UNDO = None


def _undo_kernel():
    global _UNDO
    if _UNDO is None:
        import cupy

        _UNDO = cupy.ElementwiseKernel(
            "float32 f", "uint16 y", "y = (unsigned short)rintf((float)y * f);", "rsna_mammo_undo_stretch"
        )
    return _UNDO


def classify(output, expected: np.ndarray, precision: int) -> str | None:
    """``"exact"``, ``"scaled"`` or ``None`` for a probe's decoded ``output`` (any device)."""
    if output is None:
        return None
    got = to_host(output)
    if got.ndim == 3 and got.shape[-1] == 1:
        got = got[..., 0]
    if got.shape != expected.shape:
        return None
    if np.array_equal(got, expected):
        return "exact"
    undone = undo_stretch(got.astype(np.uint16, copy=True), precision)
    return "scaled" if np.array_equal(undone, expected) else None
