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


J2K = [
    f
    for f in GREY
    if str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    in ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
]


def test_bundled_jpeg2000_files_found():
    assert len(J2K) >= 3, J2K


@pytest.mark.parametrize("path", J2K, ids=[os.path.basename(f) for f in J2K])
def test_bundled_jpeg2000_reduced_decode_is_openjpeg_reduce(path, tmp_path):
    """``decode_reduced`` = glymur's own file route (``opj_decompress -r``) with pydicom's sign rule;
    for reversible (5/3) codestreams also the LL band of the codestream's full-resolution values."""
    from decode.codestream import j2k_info
    from decode.dicom import read_dicom
    from decode.openjpeg import J2kCodestream, decode_reduced, glymur_module
    from tests.test_reduced_decode import reference_reduced

    dfile = read_dicom(path)
    info = j2k_info(dfile.codestream())
    file = tmp_path / "cs.j2k"
    file.write_bytes(dfile.codestream())
    jp2 = glymur_module().Jp2k(str(file))
    reversible = next(s for s in jp2.codestream.segment if s.marker_id == "COD").xform == 1
    full = jp2[:].astype(np.int64)  # the codestream's own sample values
    with J2kCodestream(dfile.codestream(), path) as j:
        levels = j.levels
    for r in range(1, min(3, levels) + 1):
        opj = jp2[:: 2**r, :: 2**r].astype(np.int64)
        if reversible:
            assert np.array_equal(opj, reference_reduced(full, r, info.precision, info.signed))
        want = opj
        if info.signed != bool(dfile.meta.pixel_representation):  # pydicom: reinterpret at the codestream precision
            p = info.precision
            want = np.where(opj >= 2 ** (p - 1), opj - 2**p, opj) if not info.signed else opj & (2**p - 1)
        got = decode_reduced(dfile, r)
        assert got.dtype == dfile.meta.dtype and np.array_equal(got.astype(np.int64), want), f"1/{2**r}"


def test_sign_mismatched_jpeg2000_is_never_reduced():
    """An unsigned codestream under signed Pixel Representation wraps around in pydicom: decoded in full."""
    from decode.chain import preprocess
    from decode.sample import read_sample

    path = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", "J2K_pixelrep_mismatch.dcm")
    ds = pydicom.dcmread(path)
    ref = decode_file(path)
    size = (ds.Rows // 3, ds.Columns // 3)
    want = preprocess(ref.pixels, ref.meta, stage="crop", size=size).image
    for scale in ("auto", "1/2"):
        res = read_sample(path, size=size, decode_scale=scale)
        assert res.pre.reduction == 0 and np.array_equal(res.pre.image, want), scale
    # the same size on a sign-consistent file of that size does reduce
    other = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", "JPEG2000.dcm")
    assert read_sample(other, size=(1024 // 3, 256 // 3), decode_scale="auto").pre.reduction == 1
