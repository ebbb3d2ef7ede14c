"""Every greyscale single-frame file bundled with pydicom that pydicom decodes here."""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np
import pydicom
import pytest

from decode.decoding import decode_file
from decode.voi import apply_voi
from tests.helpers import pydicom_voi_scaled

FILES = sorted(glob.glob(os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", "*.dcm")))


def _grey_single_frame(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path)
            if "PixelData" not in ds or int(ds.get("SamplesPerPixel", 1)) != 1:
                return None
            if int(ds.get("NumberOfFrames", 1) or 1) != 1:
                return None
            if ds.get("PhotometricInterpretation") not in ("MONOCHROME1", "MONOCHROME2"):
                return None
            _ = ds.pixel_array
        except Exception:
            return None
    return ds


GREY = [f for f in FILES if _grey_single_frame(f) is not None]


def test_enough_bundled_files_found():
    assert len(GREY) >= 15, GREY


@pytest.mark.parametrize("path", GREY, ids=[os.path.basename(f) for f in GREY])
def test_bundled_file_decodes_exactly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        ref = ds.pixel_array
        got = decode_file(path)
        assert got.pixels.dtype == ref.dtype
        assert np.array_equal(got.pixels, ref)
        if ds.BitsAllocated > 1:
            try:
                want = pydicom_voi_scaled(ds)
            except ValueError:  # pydicom refuses this file's window; we fall back to min-max
                return
            voi = apply_voi(got.pixels, got.meta)
            assert float(np.abs(voi - want).max()) <= 1e-3
