"""Reference computations for tests: pydicom's own VOI, scaled by its output range."""

from __future__ import annotations

import copy

import numpy as np

#: Type-2 elements a vendor may leave present but empty; pydicom treats an empty one as absent.
TYPE2_VALUES = ("WindowCenter", "WindowWidth", "RescaleSlope", "RescaleIntercept", "RescaleType", "VOILUTFunction")
LUT_SEQUENCES = ("ModalityLUTSequence", "VOILUTSequence")


def _empty(value) -> bool:
    return value is None or (isinstance(value, (str, bytes)) and not value.strip())


def without_empty_elements(ds, index: int = 0):
    """A copy of ``ds`` with every empty VOI / modality element removed.

    pydicom's ``apply_voi_lut`` already treats an empty Window Center / Width and a LUT
    item with an empty descriptor or data as absent, but its ``apply_modality_lut``
    fails on an empty Rescale Slope or LUT item, and ``apply_windowing`` on an empty
    value at ``index``. Removing them gives pydicom's reading of the file as if the
    vendor had left them out, which is what this project must match.
    """
    ds = copy.deepcopy(ds)
    for kw in TYPE2_VALUES:
        if kw in ds and _empty(ds[kw].value):
            del ds[kw]
    for kw in ("WindowCenter", "WindowWidth"):
        if kw in ds and ds[kw].VM > 1:
            values = list(ds[kw].value)
            if index >= len(values) or _empty(values[index]):
                for k in ("WindowCenter", "WindowWidth"):
                    if k in ds:
                        del ds[k]
                break
    for kw in LUT_SEQUENCES:
        if kw in ds:
            seq = ds[kw].value
            if not seq or _empty(seq[0].get("LUTDescriptor")) or _empty(seq[0].get("LUTData")):
                del ds[kw]
    return ds


def pydicom_voi_scaled(ds, index: int = 0) -> np.ndarray:
    """``apply_voi_lut(apply_modality_lut(raw, ds), ds, index)`` scaled to [0, 1], MONO1 inverted.

    Output range as pydicom defines it, under the same conditions pydicom tests: a window
    (Window Center and Width both not None) → pydicom's y_min…y_max (follows
    PixelRepresentation, BitsStored, any rescale or modality LUT); a usable VOI LUT
    Sequence item → 0…2^LUTDescriptor[2] − 1; no VOI information → min–max over the image.
    """
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    raw = ds.pixel_array
    y = apply_voi_lut(apply_modality_lut(raw, ds), ds, index=index).astype(np.float64)
    seq = ds.get("VOILUTSequence")
    valid_voi = bool(seq) and None not in (seq[0].get("LUTDescriptor"), seq[0].get("LUTData"))
    if valid_voi:
        lo, hi = 0.0, float(2 ** ds.VOILUTSequence[0].LUTDescriptor[2] - 1)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        if ds.get("ModalityLUTSequence"):
            lo, hi = 0.0, float(2 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1)
        elif ds.PixelRepresentation == 0:
            lo, hi = 0.0, float(2**ds.BitsStored - 1)
        else:
            lo, hi = float(-(2 ** (ds.BitsStored - 1))), float(2 ** (ds.BitsStored - 1) - 1)
        if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
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


# --- device-parametrised tests ------------------------------------------------------------------

import pytest  # noqa: E402

#: ``cpu`` always; ``cuda`` marked ``gpu`` (conftest skips it, with the reason, where torch sees no GPU).
DEVICES = (pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.gpu))


def to_numpy(x) -> np.ndarray:
    """A host numpy array from numpy, CuPy or torch input (copies from the device only)."""
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    if hasattr(x, "get") and not isinstance(x, np.ndarray):
        return x.get()
    return np.asarray(x)


def on_device(x, device: str) -> bool:
    """True when ``x`` (CuPy, torch or numpy) lives on ``device``."""
    if hasattr(x, "is_cuda"):
        return bool(x.is_cuda) == (device == "cuda")
    return (hasattr(x, "__cuda_array_interface__") and not isinstance(x, np.ndarray)) == (device == "cuda")


def assert_pixels_equal(got, want: np.ndarray, name: str = "") -> None:
    """Exactly the reference's stored values: same dtype, same shape, every value equal."""
    host = to_numpy(got)
    assert host.dtype == want.dtype, (name, host.dtype, want.dtype)
    assert np.array_equal(host, want), f"{name}: differs from pydicom in {int((host != want).sum())} pixels"


def assert_batches_match(got: dict, want: dict, *, device: str, atol: float) -> None:
    """A loader batch against the CPU engine's: rows, labels, failures, image dtype/device/contiguity, values."""
    import torch

    img = got["image"]
    assert on_device(img, device) and img.dtype == torch.float32 and img.is_contiguous()
    assert img.shape == want["image"].shape
    assert got["index"].tolist() == want["index"].tolist()
    if want["label"] is not None:
        assert got["label"].tolist() == want["label"].tolist()
    assert [f["index"] for f in got["failed"]] == [f["index"] for f in want["failed"]]
    np.testing.assert_allclose(to_numpy(img), want["image"].numpy(), atol=atol, rtol=0)
