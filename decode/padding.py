"""Pixel Padding Value / Pixel Padding Range Limit: which stored values are not image.

Detectors and modalities pad the area outside the exposed field with a fixed value
(0028,0120), or a range of values up to (0028,0121). MONOCHROME1 mammography vendors
often pad with the maximum value, which VOI and inversion turn into black; padding with 0
turns white. Either way those pixels are background: the breast box and its Otsu
threshold ignore them, and the crop stage sets them to 0 (black background).
"""

from __future__ import annotations

import numpy as np

from .meta import DicomMeta
from .xp import array_module


def padding_mask(raw, meta: DicomMeta | None, xp=None):
    """True where the stored value is padding; None when the header declares no padding.

    Args:
        raw: ``(H, W)`` stored values (integer dtype), numpy or CuPy.
        meta: the header (``meta.pixel_padding`` is the inclusive stored-value range).

    Returns:
        ``(H, W)`` bool on the device of ``raw``, or None.
    """
    if meta is None or meta.pixel_padding is None:
        return None
    xp = xp or array_module(raw)
    lo, hi = meta.pixel_padding
    if raw.dtype.kind in "ui":  # compare within the dtype: a bound outside it matches nothing beyond it
        info = np.iinfo(raw.dtype)
        if hi < info.min or lo > info.max:
            return xp.zeros(raw.shape, dtype=bool)
        lo, hi = max(lo, int(info.min)), min(hi, int(info.max))
        lo, hi = raw.dtype.type(lo), raw.dtype.type(hi)
    if lo == hi:
        return raw == lo
    return (raw >= lo) & (raw <= hi)
