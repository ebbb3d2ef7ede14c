"""Reference computations for tests: pydicom's own VOI, scaled by its output range."""

from __future__ import annotations

import numpy as np


def pydicom_voi_scaled(ds, index: int = 0) -> np.ndarray:
    """``apply_voi_lut(apply_modality_lut(raw, ds), ds, index)`` scaled to [0, 1], MONO1 inverted.

    Output range as the issue defines it: a window → pydicom's y_min…y_max (follows
    PixelRepresentation, BitsStored, any rescale or modality LUT); a VOI LUT Sequence →
    0…2^LUTDescriptor[2] − 1; no VOI information → min–max over the image.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    raw = ds.pixel_array
    y = apply_voi_lut(apply_modality_lut(raw, ds), ds, index=index).astype(np.float64)
    if ds.get("VOILUTSequence"):
        lo, hi = 0.0, float(2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1)
    elif "WindowCenter" in ds:
        if ds.get("ModalityLUTSequence"):
            lo, hi = 0.0, float(2 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1)
        elif ds.PixelRepresentation == 0:
            lo, hi = 0.0, float(2**ds.BitsStored - 1)
        else:
            lo, hi = float(-(2 ** (ds.BitsStored - 1))), float(2 ** (ds.BitsStored - 1) - 1)
        if "RescaleSlope" in ds and "RescaleIntercept" in ds:
            lo, hi = (
                lo * float(ds.RescaleSlope) + float(ds.RescaleIntercept),
                hi * float(ds.RescaleSlope) + float(ds.RescaleIntercept),
            )
    else:
        lo, hi = float(y.min()), float(y.max())
    out = (y - lo) / ((hi - lo) if hi != lo else 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        out = 1.0 - out
    return out
