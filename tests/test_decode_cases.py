"""Named decode cases (codec × bits × photometric × VOI × size × sign), each against pydicom.

Raw stored values must be exactly pydicom's ``pixel_array`` for every backend that
handles the syntax; the VOI stage must match pydicom's VOI scaled by its output range.
"""

from __future__ import annotations

import zlib

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from decode import syntax as TS
from decode.backends import BACKENDS
from decode.decoding import decode_file
from decode.dicom import read_dicom
from decode.testing.synth import write_dicom
from decode.voi import apply_voi
from tests.helpers import pydicom_voi_scaled


def _lut_item(first_map: int, bits: int, data) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data), first_map, bits]
    item.LUTData = [int(v) for v in data]
    item["LUTData"].VR = "US"
    return item


# name: (transfer syntax, dtype, bits stored, photometric, voi function or None, (rows, cols), extras)
CASES = {
    "J2K_16_12_MONO1_LINEAR": (TS.JPEG2000_LOSSLESS, "u2", 12, "MONOCHROME1", "LINEAR", (61, 47), {}),
    "J2K_16_14_MONO2_SIGMOID": (TS.JPEG2000_LOSSLESS, "u2", 14, "MONOCHROME2", "SIGMOID", (40, 33), {}),
    "J2K_16_16_MONO2_LINEAR_EXACT": (TS.JPEG2000_LOSSLESS, "u2", 16, "MONOCHROME2", "LINEAR_EXACT", (32, 32), {}),
    "J2K_S16_12_MONO2_LINEAR": (TS.JPEG2000_LOSSLESS, "i2", 12, "MONOCHROME2", "LINEAR", (29, 31), {}),
    "J2K_S16_16_MONO1_SIGMOID": (TS.JPEG2000_LOSSLESS, "i2", 16, "MONOCHROME1", "SIGMOID", (17, 45), {}),
    "J2K_16_12_MONO2_TWO_WINDOWS": (TS.JPEG2000_LOSSLESS, "u2", 12, "MONOCHROME2", "LINEAR", (24, 20), {"windows": 2}),
    "J2K_16_12_ODD_1ROW": (TS.JPEG2000_LOSSLESS, "u2", 12, "MONOCHROME2", "LINEAR", (1, 37), {}),
    "JLL_16_12_MONO1_LINEAR": (TS.JPEG_LOSSLESS_SV1, "u2", 12, "MONOCHROME1", "LINEAR", (61, 47), {}),
    "JLL_16_14_MONO2_SIGMOID": (TS.JPEG_LOSSLESS_SV1, "u2", 14, "MONOCHROME2", "SIGMOID", (33, 40), {}),
    "JLL_16_16_MONO2_LINEAR": (TS.JPEG_LOSSLESS_SV1, "u2", 16, "MONOCHROME2", "LINEAR", (26, 19), {}),
    "JLL_S16_12_MONO2_LINEAR": (TS.JPEG_LOSSLESS_SV1, "i2", 12, "MONOCHROME2", "LINEAR", (21, 23), {}),
    "JLL_16_15_MONO2_NOWINDOW": (TS.JPEG_LOSSLESS_SV1, "u2", 15, "MONOCHROME2", None, (7, 13), {}),
    "HTJ2K_16_12_MONO2_LINEAR": (TS.HTJ2K_LOSSLESS, "u2", 12, "MONOCHROME2", "LINEAR", (50, 38), {}),
    "HTJ2K_16_16_MONO1_SIGMOID": (TS.HTJ2K_LOSSLESS, "u2", 16, "MONOCHROME1", "SIGMOID", (19, 27), {}),
    "NATIVE_16_12_DIRTY_HIGH_BITS": (TS.EXPLICIT_LE, "u2", 12, "MONOCHROME2", "LINEAR", (15, 22), {"dirty": True}),
    "NATIVE_S16_12_RESCALE": (
        TS.EXPLICIT_LE,
        "i2",
        12,
        "MONOCHROME2",
        "LINEAR",
        (20, 20),
        {"rescale": (2.0, -100.0), "dirty": True},
    ),
    "NATIVE_S16_16_NEG_SLOPE_SIGMOID": (
        TS.EXPLICIT_LE,
        "i2",
        16,
        "MONOCHROME1",
        "SIGMOID",
        (9, 11),
        {"rescale": (-1.5, 30.0)},
    ),
    "NATIVE_8_8_MONO2_LINEAR": (TS.EXPLICIT_LE, "u1", 8, "MONOCHROME2", "LINEAR", (12, 31), {}),
    "IMPLICIT_16_12_MONO1_NOWINDOW": (TS.IMPLICIT_LE, "u2", 12, "MONOCHROME1", None, (23, 29), {}),
    "NATIVE_16_12_VOI_LUT": (TS.EXPLICIT_LE, "u2", 12, "MONOCHROME2", "LUT", (18, 24), {}),
    "NATIVE_16_12_MODALITY_LUT_WINDOW": (TS.EXPLICIT_LE, "u2", 12, "MONOCHROME2", "MODLUT", (18, 24), {}),
}


def make_case(name: str, folder) -> str:
    ts, dt, bits, photometric, func, (h, w), extra = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    dtype = np.dtype(dt)
    if dtype.kind == "i":
        pixels = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=(h, w)).astype(dtype)
    else:
        pixels = rng.integers(0, 2**bits, size=(h, w)).astype(dtype)
    if extra.get("dirty"):  # garbage above Bits Stored: pydicom clears / sign-extends it
        pixels = (pixels.view(np.uint16) | np.uint16(0xA000)).view(dtype)
    kw = {}
    top = 2**bits
    lo = -(top // 2) if dtype.kind == "i" else 0
    if func in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        n = extra.get("windows", 1)
        centers = [lo + top * (0.4 + 0.1 * k) + 0.5 for k in range(n)]
        widths = [top * (0.3 + 0.2 * k) for k in range(n)]
        if "rescale" in extra:
            s, b = extra["rescale"]
            centers = [c * s + b for c in centers]
            widths = [wd * abs(s) for wd in widths]
        kw.update(window=(centers, widths), voi_function=func)
    elif func == "LUT":
        seq = Sequence([_lut_item(100, 16, np.linspace(0, 65535, 3000).astype(int))])
        kw["extra"] = {"VOILUTSequence": seq}
    elif func == "MODLUT":
        seq = Sequence([_lut_item(50, 16, (np.arange(4000) * 7) % 60000)])
        kw["extra"] = {"ModalityLUTSequence": seq}
        kw.update(window=([20000.0], [30000.0]), voi_function="LINEAR")
    if "rescale" in extra:
        kw["rescale"] = extra["rescale"]
    path = str(folder / f"{name}.dcm")
    write_dicom(path, pixels, transfer_syntax=ts, bits_stored=bits, photometric=photometric, **kw)
    return path


@pytest.fixture(scope="module")
def case_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cases")
    return {name: make_case(name, folder) for name in CASES}


@pytest.mark.parametrize("name", list(CASES))
def test_raw_exact_every_backend(name, case_files):
    path = case_files[name]
    ref = pydicom.dcmread(path).pixel_array
    meta = read_dicom(path).meta
    tried = []
    for bname, backend in BACKENDS.items():
        if not backend.available() or not backend.handles(meta.transfer_syntax):
            continue
        got = decode_file(path, bname, fallback=False)
        assert got.backend == bname
        assert got.pixels.dtype == ref.dtype, (bname, got.pixels.dtype, ref.dtype)
        assert np.array_equal(got.pixels, ref), f"{bname} differs from pydicom on {name}"
        tried.append(bname)
    assert "pydicom" in tried and len(tried) >= 2, tried
    auto = decode_file(path)
    assert np.array_equal(auto.pixels, ref) and auto.pixels.dtype == ref.dtype


@pytest.mark.parametrize("name", list(CASES))
def test_voi_matches_pydicom(name, case_files):
    path = case_files[name]
    ds = pydicom.dcmread(path)
    dec = decode_file(path)
    got = apply_voi(dec.pixels, dec.meta)
    ref = pydicom_voi_scaled(ds)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= 2e-6
    assert got.min() >= 0.0 and got.max() <= 1.0


def test_second_window_selectable(case_files):
    path = case_files["J2K_16_12_MONO2_TWO_WINDOWS"]
    ds = pydicom.dcmread(path)
    dec = decode_file(path)
    got = apply_voi(dec.pixels, dec.meta, index=1)
    assert float(np.abs(got - pydicom_voi_scaled(ds, index=1)).max()) <= 2e-6
    assert not np.allclose(got, apply_voi(dec.pixels, dec.meta, index=0))


def test_auto_picks_fast_codec_backends(case_files):
    assert decode_file(case_files["J2K_16_12_MONO1_LINEAR"]).backend == "imagecodecs"
    assert decode_file(case_files["JLL_16_12_MONO1_LINEAR"]).backend == "imagecodecs"
    assert decode_file(case_files["NATIVE_16_12_DIRTY_HIGH_BITS"]).backend == "native"
