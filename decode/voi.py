"""Modality LUT → VOI (window / sigmoid / VOI LUT) → scale to [0, 1] → MONOCHROME1 inversion.

Matches ``pydicom.pixels.apply_voi_lut(apply_modality_lut(raw, ds), ds, index=0)`` scaled
by its output range (within 1e-4): for a window the scaled output does not depend on
y_min/y_max, so it is ``clip((x' − c)/w + ½, 0, 1)`` (LINEAR after pydicom's c−½, w−1),
``sigmoid(4(x' − c)/w)`` (SIGMOID); a VOI LUT is scaled by 2^bits − 1; with no VOI
information, min–max over the image. Written against an array module (numpy or CuPy).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .meta import DicomMeta, Lut
from .xp import array_module

log = logging.getLogger(__name__)

VoiKind = Literal["linear", "sigmoid", "step", "lut", "minmax"]


@dataclass(frozen=True)
class WindowParams:
    """Per-image VOI parameters: ``t = (x − center) · scale + offset``.

    Host floats; :meth:`as_array` packs them as the float32 record the GPU chain takes.
    ``kind`` "linear": clip(t, 0, 1); "sigmoid": 1/(1+exp(−t)); "step": t > 0;
    "lut" / "minmax": handled by :func:`apply_voi` itself. ``x`` is the stored value.
    """

    kind: VoiKind
    center: float = 0.0
    scale: float = 1.0
    offset: float = 0.0
    invert: bool = False

    def as_array(self) -> np.ndarray:
        """``[kind_code, center, scale, offset, invert]`` as float32, for GPU records."""
        code = {"linear": 0, "sigmoid": 1, "step": 2, "lut": 3, "minmax": 4}[self.kind]
        return np.array([code, self.center, self.scale, self.offset, float(self.invert)], dtype=np.float32)


def window_problem(meta: DicomMeta, index: int = 0) -> str | None:
    """Why window ``index`` is not used although present (pydicom refuses it), or None.

    One line for the file's record: LINEAR needs a width ≥ 1, the other functions > 0.
    """
    if meta.voi_lut is not None or meta.window(index) is None:
        return None
    w = meta.window(index)[1]
    func = meta.voi_lut_function
    if func == "LINEAR" and w < 1:
        return f"Window Width {w:g} < 1 for LINEAR (pydicom refuses it); using min-max"
    if w <= 0:  # SIGMOID, LINEAR_EXACT (LINEAR below 1 was refused above)
        return f"Window Width {w:g} <= 0 for {func} (pydicom refuses it); using min-max"
    return None


def window_params(meta: DicomMeta, index: int = 0) -> WindowParams:
    """Resolve the VOI transform for ``meta`` (window ``index``; VOI LUT preferred).

    The order is pydicom's: VOI LUT Sequence, else window ``index``, else min–max. Empty
    or malformed elements were dropped when the header was read (``meta.header_notes``
    names the malformed ones), so they fall through to the next step. A window pydicom
    would refuse (LINEAR width < 1, other widths ≤ 0) is ignored and min–max is used
    (:func:`window_problem` says so in one line): bad input is data, not a crash.
    """
    inv = meta.monochrome1
    if meta.voi_lut is not None:
        return WindowParams("lut", invert=inv)
    win = meta.window(index)
    if win is None:
        return WindowParams("minmax", invert=inv)
    c, w = win
    func = meta.voi_lut_function
    if func == "LINEAR":
        if w < 1:
            log.info("%s: %s", meta.path, window_problem(meta, index))
            return WindowParams("minmax", invert=inv)
        c, w = c - 0.5, w - 1
    elif w <= 0:
        log.info("%s: %s", meta.path, window_problem(meta, index))
        return WindowParams("minmax", invert=inv)
    if meta.modality_lut is None and meta.rescale_slope is not None:
        slope, intercept = meta.rescale_slope, meta.rescale_intercept
    else:
        slope, intercept = 1.0, 0.0
    if slope == 0:
        return WindowParams("minmax", invert=inv)
    # x' = x·slope + intercept;  (x' − c)/w = (x − c0)·slope/w  with c0 = (c − intercept)/slope
    c0 = (c - intercept) / slope
    if func == "SIGMOID":
        return WindowParams("sigmoid", center=c0, scale=4.0 * slope / w, offset=0.0, invert=inv)
    if w == 0:
        return WindowParams("step", center=c0, scale=float(np.sign(slope)), offset=0.0, invert=inv)
    return WindowParams("linear", center=c0, scale=slope / w, offset=0.5, invert=inv)


def lut_lookup(x, lut: Lut, xp=None):
    """DICOM LUT: values below ``first_map`` take entry 0, above the table the last entry."""
    xp = xp or array_module(x)
    table = xp.asarray(lut.data)
    idx = x - lut.first_map if x.dtype.kind == "f" else x.astype(np.int64) - lut.first_map
    # below first_map: entry 0; float indices truncate toward zero, as pydicom's cast
    idx = xp.clip(idx.astype(np.int64), 0, table.size - 1)
    return table[idx]


def modality(raw, meta: DicomMeta, xp=None):
    """Modality LUT or rescale; returns the input unchanged when there is neither."""
    if meta.modality_lut is not None:
        return lut_lookup(raw, meta.modality_lut, xp)
    if meta.rescale_slope is not None:
        return raw.astype(np.float64) * meta.rescale_slope + meta.rescale_intercept
    return raw


def apply_voi(raw, meta: DicomMeta, *, index: int = 0, params: WindowParams | None = None, xp=None):
    """Stored values → float32 image in [0, 1], MONOCHROME1 inverted (1 − x).

    Args:
        raw: ``(H, W)`` stored values (any integer dtype), numpy or CuPy.
        meta: the image's header.
        index: which window to use when several are given.
        params: precomputed :func:`window_params` (saves the host work per image).

    Returns:
        ``(H, W)`` float32 in [0, 1] on the same device as ``raw``.
    """
    xp = xp or array_module(raw)
    p = params or window_params(meta, index)
    if p.kind in ("linear", "sigmoid", "step"):
        # one float32 buffer, updated in place: t = (x − center)·scale + offset
        y = (modality(raw, meta, xp) if meta.modality_lut is not None else raw).astype(np.float32)
        y -= np.float32(p.center)
        y *= np.float32(p.scale)
        y += np.float32(p.offset)
        if p.kind == "linear":
            xp.clip(y, 0.0, 1.0, out=y)
        elif p.kind == "sigmoid":
            xp.negative(y, out=y)
            xp.exp(y, out=y)
            y += np.float32(1.0)
            xp.reciprocal(y, out=y)
        else:
            y = (y > 0).astype(np.float32)
    elif p.kind == "lut":
        lut = meta.voi_lut
        y = lut_lookup(modality(raw, meta, xp), lut, xp).astype(np.float32) / np.float32(2**lut.bits - 1)
    else:
        x = modality(raw, meta, xp).astype(np.float32)
        lo, hi = x.min(), x.max()
        span = hi - lo
        y = (x - lo) / xp.where(span > 0, span, 1).astype(np.float32)
    y = y.astype(np.float32, copy=False)
    if p.invert:
        xp.subtract(np.float32(1.0), y, out=y)
    return y
