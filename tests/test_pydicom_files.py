"""Every greyscale single-frame file bundled with pydicom and pydicom-data that pydicom decodes.

Raw stored values must equal pydicom's ``pixel_array`` exactly; VOI must equal pydicom's
``apply_voi_lut(apply_modality_lut(...))`` scaled by its output range within 1e-4 (with
empty elements absent, as ``tests.helpers.without_empty_elements`` reads them). A window
pydicom refuses (its VOI raises) falls back to min-max, which is checked against the
same file with the window removed. ``pydicom-data`` comes with the ``test`` extra.
"""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import pydicom
import pytest

from decode.decoding import decode_file
from decode.voi import apply_voi
from tests.helpers import pydicom_voi_scaled, without_empty_elements


def _bundled() -> list[str]:
    files = glob.glob(os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", "**", "*.dcm"), recursive=True)
    try:
        import data_store  # pydicom-data (never downloads: its files ship in the wheel)

        files += glob.glob(os.path.join(os.path.dirname(data_store.__file__), "data", "*.dcm"))
    except ImportError:
        pass
    return sorted(files)


FILES = _bundled()


def _grey_single_frame(path):
    """The dataset when pydicom decodes ``path`` as one greyscale frame with its standard plugins."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
            if "PixelData" not in ds or int(ds.get("SamplesPerPixel", 1) or 1) != 1:
                return None
            if int(ds.get("NumberOfFrames", 1) or 1) != 1:
                return None
            if ds.get("PhotometricInterpretation") not in ("MONOCHROME1", "MONOCHROME2"):
                return None
            if ds.pixel_array.ndim != 2:
                return None
        except Exception:
            return None
    return ds


GREY = [f for f in FILES if _grey_single_frame(f) is not None]


def _id(path: str) -> str:
    return ("data/" if "data_store" in path else "") + os.path.basename(path)


def test_enough_bundled_files_found():
    assert len(GREY) >= 20, GREY
    if any("data_store" in f for f in FILES):
        assert sum("data_store" in f for f in GREY) >= 20  # pydicom-data's greyscale set is there


@pytest.mark.parametrize("path", GREY, ids=[_id(f) for f in GREY])
def test_bundled_file_decodes_exactly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        ref = ds.pixel_array
        got = decode_file(path)
        assert got.pixels.dtype == ref.dtype
        assert np.array_equal(got.pixels, ref)
        if ds.BitsAllocated == 1:
            return
        voi = apply_voi(got.pixels, got.meta)
        try:
            want = pydicom_voi_scaled(without_empty_elements(ds))
        except ValueError:  # pydicom refuses this file's window: we use min-max, as without it
            for kw in ("WindowCenter", "WindowWidth"):
                if kw in ds:
                    del ds[kw]
            want = pydicom_voi_scaled(without_empty_elements(ds))
        assert float(np.abs(voi - want).max()) <= 1e-4
