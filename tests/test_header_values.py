"""Header shapes real vendors write: type-2 elements present but empty, and malformed VOI values.

Each case must decode its stored values exactly (raw never fails on a VOI or modality
element) and its VOI must equal pydicom's reading of the same file with the empty
elements absent (``tests.helpers.without_empty_elements``), within 2e-6 (float32
arithmetic; a 1e-4 bound would hide a half-step window slip). Where pydicom itself
copes with the file as written, the result also equals pydicom on the file as is.
A malformed value pydicom refuses is ignored with a note naming it.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from decode import syntax as TS
from decode.decoding import decode_file
from decode.dicom import read_dicom
from decode.testing.corpus import set_raw_element
from decode.testing.synth import write_dicom
from decode.voi import apply_voi, window_params
from tests.helpers import pydicom_voi_scaled, without_empty_elements

EMPTY = object()  # the element is present with no value


def _empty_lut_item() -> Dataset:
    item = Dataset()
    item.add_new(0x00283002, "US", None)  # LUT Descriptor
    item.add_new(0x00283006, "OW", None)  # LUT Data
    return item


def _lut_item(first_map: int, bits: int, data) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [len(data), first_map, bits]
    item.LUTData = [int(v) for v in data]
    item["LUTData"].VR = "US"
    return item


WINDOW = {"WindowCenter": "2000", "WindowWidth": "1500"}
RESCALE = {"RescaleSlope": "2", "RescaleIntercept": "-100", "RescaleType": "US"}

# name: (transfer syntax, elements; EMPTY = present and empty, bytes = the value's bytes as written,
#        whether pydicom's apply_modality_lut + apply_voi_lut copes with the file as written)
CASES = {
    "WINDOW_CENTER_EMPTY": (TS.EXPLICIT_LE, {**WINDOW, "WindowCenter": EMPTY}, True),
    "WINDOW_WIDTH_EMPTY": (TS.EXPLICIT_LE, {**WINDOW, "WindowWidth": EMPTY}, True),
    "WINDOW_BOTH_EMPTY": (TS.EXPLICIT_LE, {"WindowCenter": EMPTY, "WindowWidth": EMPTY}, True),
    "RESCALE_SLOPE_EMPTY": (TS.EXPLICIT_LE, {**WINDOW, **RESCALE, "RescaleSlope": EMPTY}, False),
    "RESCALE_INTERCEPT_EMPTY": (TS.EXPLICIT_LE, {**WINDOW, **RESCALE, "RescaleIntercept": EMPTY}, False),
    "RESCALE_TYPE_EMPTY": (TS.EXPLICIT_LE, {**WINDOW, **RESCALE, "RescaleType": EMPTY}, True),
    "VOI_LUT_FUNCTION_EMPTY": (TS.EXPLICIT_LE, {**WINDOW, "VOILUTFunction": EMPTY}, False),
    "VOI_LUT_ITEM_EMPTY": (TS.EXPLICIT_LE, {**WINDOW, "VOILUTSequence": "empty-item"}, True),
    "MODALITY_LUT_ITEM_EMPTY": (TS.EXPLICIT_LE, {**WINDOW, **RESCALE, "ModalityLUTSequence": "empty-item"}, False),
    "WINDOW_EMPTY_FIRST_VALUE": (TS.EXPLICIT_LE, {"WindowCenter": b"\\2000", "WindowWidth": b"\\1500"}, False),
    "WINDOW_TRAILING_BACKSLASH": (TS.EXPLICIT_LE, {"WindowCenter": b"2000\\", "WindowWidth": b"1500"}, True),
    "ALL_EMPTY_TOGETHER": (
        TS.EXPLICIT_LE,
        {
            "WindowCenter": EMPTY,
            "WindowWidth": EMPTY,
            "RescaleSlope": EMPTY,
            "RescaleIntercept": EMPTY,
            "RescaleType": EMPTY,
            "VOILUTFunction": EMPTY,
            "VOILUTSequence": "empty-item",
            "ModalityLUTSequence": "empty-item",
        },
        False,
    ),
    "J2K_ALL_EMPTY_TOGETHER": (
        TS.JPEG2000_LOSSLESS,
        {
            "WindowCenter": EMPTY,
            "WindowWidth": EMPTY,
            "RescaleSlope": EMPTY,
            "RescaleIntercept": EMPTY,
            "VOILUTSequence": "empty-item",
            "ModalityLUTSequence": "empty-item",
        },
        False,
    ),
    "JLL_WINDOW_TRAILING_BACKSLASH_MONO1": (
        TS.JPEG_LOSSLESS_SV1,
        {"WindowCenter": b"2000\\", "WindowWidth": b"1500", "PhotometricInterpretation": "MONOCHROME1"},
        True,
    ),
}

# Values pydicom refuses (its VOI raises, or gives NaN): ignored, the next VOI step is used, a note names them.
# name: (elements, what the note must contain, elements removed to get pydicom's reading)
MALFORMED = {
    "WINDOW_CENTER_NOT_A_NUMBER": ({**WINDOW, "WindowCenter": b"98x6.5"}, "Window Center value '98x6.5'", WINDOW),
    "WINDOW_WIDTH_NAN": ({**WINDOW, "WindowWidth": b"nan"}, "Window Width value 'nan'", WINDOW),
    "VOI_LUT_FUNCTION_UNKNOWN": ({**WINDOW, "VOILUTFunction": "CUBIC"}, "VOI LUT Function 'CUBIC'", WINDOW),
    "RESCALE_SLOPE_NOT_A_NUMBER": (
        {**WINDOW, **RESCALE, "RescaleSlope": b"two"},
        "Rescale Slope value 'two'",
        {"RescaleSlope": 1, "RescaleIntercept": 1},
    ),
    "VOI_LUT_DESCRIPTOR_TWO_VALUES": ({**WINDOW, "VOILUTSequence": "two-value-descriptor"}, "3 expected", {}),
    "VOI_LUT_DATA_SHORT": ({**WINDOW, "VOILUTSequence": "short-data"}, "holds 10 entries", {}),
    "VOI_LUT_9_BITS": ({**WINDOW, "VOILUTSequence": "9-bits"}, "9 bits per LUT entry", {}),
}


def _sequence(kind: str) -> Sequence:
    if kind == "empty-item":
        return Sequence([_empty_lut_item()])
    if kind == "two-value-descriptor":
        item = _lut_item(0, 16, range(4096))
        item.LUTDescriptor = [4096, 0]
        return Sequence([item])
    if kind == "short-data":
        item = _lut_item(0, 16, range(10))
        item.LUTDescriptor = [4096, 0, 16]
        return Sequence([item])
    if kind == "9-bits":
        return Sequence([_lut_item(0, 9, range(4096))])
    raise ValueError(kind)


def _write(path, ts: str, elements: dict, seed: str) -> str:
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    pixels = rng.integers(0, 4096, size=(23, 17)).astype(np.uint16)
    photometric = elements.get("PhotometricInterpretation", "MONOCHROME2")
    write_dicom(str(path), pixels, transfer_syntax=ts, bits_stored=12, photometric=photometric)
    ds = pydicom.dcmread(str(path))
    for kw, v in elements.items():
        if kw == "PhotometricInterpretation":
            continue
        if v is EMPTY:
            setattr(ds, kw, None)
        elif isinstance(v, bytes):
            set_raw_element(ds, kw, v)
        elif kw.endswith("Sequence"):
            setattr(ds, kw, _sequence(v))
        else:
            setattr(ds, kw, v)
    ds.save_as(str(path))
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("header_values")
    out = {n: _write(folder / f"{n}.dcm", ts, el, n) for n, (ts, el, _) in CASES.items()}
    out.update({n: _write(folder / f"{n}.dcm", TS.EXPLICIT_LE, el, n) for n, (el, _, _) in MALFORMED.items()})
    return out


@pytest.mark.parametrize("name", [*CASES, *MALFORMED])
def test_raw_decodes_exactly_whatever_the_voi_elements(name, files):
    ref = pydicom.dcmread(files[name]).pixel_array
    got = decode_file(files[name])
    assert got.pixels.dtype == ref.dtype and np.array_equal(got.pixels, ref)


@pytest.mark.parametrize("name", list(CASES))
def test_empty_elements_are_absent_as_pydicom_treats_them(name, files):
    ds = pydicom.dcmread(files[name])
    dec = decode_file(files[name])
    got = apply_voi(dec.pixels, dec.meta)
    want = pydicom_voi_scaled(without_empty_elements(ds))
    assert got.dtype == np.float32 and float(np.abs(got - want).max()) <= 2e-6
    if CASES[name][2]:  # pydicom copes with the file as written: same answer
        assert float(np.abs(got - pydicom_voi_scaled(ds)).max()) <= 2e-6
    else:  # pydicom's own functions fail on it: the case is a real one
        with pytest.raises((TypeError, ValueError, AttributeError)):
            pydicom_voi_scaled(ds)
    assert dec.meta.header_notes == ()  # empty is absent, not malformed


def test_which_voi_step_each_empty_case_takes(files):
    kind = {n: window_params(read_dicom(p).meta).kind for n, p in files.items() if n in CASES}
    assert kind["WINDOW_CENTER_EMPTY"] == kind["WINDOW_BOTH_EMPTY"] == "minmax"
    assert kind["VOI_LUT_ITEM_EMPTY"] == kind["RESCALE_TYPE_EMPTY"] == "linear"  # falls through to the window
    assert kind["ALL_EMPTY_TOGETHER"] == "minmax"
    meta = read_dicom(files["RESCALE_SLOPE_EMPTY"]).meta
    assert meta.rescale_slope is None and meta.rescale_intercept is None  # both or neither
    meta = read_dicom(files["MODALITY_LUT_ITEM_EMPTY"]).meta
    assert meta.modality_lut is None and meta.rescale_slope == 2.0  # the rescale applies instead
    meta = read_dicom(files["VOI_LUT_FUNCTION_EMPTY"]).meta
    assert meta.voi_lut_function == "LINEAR"


def test_infinite_window_width_is_pydicom_arithmetic(tmp_path):
    path = _write(tmp_path / "inf.dcm", TS.EXPLICIT_LE, {**WINDOW, "WindowWidth": b"inf"}, "inf")
    dec = decode_file(path)
    assert dec.meta.header_notes == () and dec.meta.window(0) == (2000.0, float("inf"))
    got = apply_voi(dec.pixels, dec.meta)
    assert float(np.abs(got - pydicom_voi_scaled(pydicom.dcmread(path))).max()) <= 2e-6
    assert np.all(got == 0.5)


def test_window_values_keep_their_positions(files):
    first = read_dicom(files["WINDOW_EMPTY_FIRST_VALUE"]).meta
    assert first.window_centers == (None, 2000.0) and first.window_widths == (None, 1500.0)
    assert first.window(0) is None and first.window(1) == (2000.0, 1500.0) and first.window(2) is None
    trailing = read_dicom(files["WINDOW_TRAILING_BACKSLASH"]).meta
    assert trailing.window_centers == (2000.0, None) and trailing.window_widths == (1500.0,)
    assert trailing.window(0) == (2000.0, 1500.0)  # one width serves every index, as in pydicom
    assert trailing.window(1) is None


def test_second_window_of_empty_first_value_matches_pydicom(files):
    ds = pydicom.dcmread(files["WINDOW_EMPTY_FIRST_VALUE"])
    dec = decode_file(files["WINDOW_EMPTY_FIRST_VALUE"])
    got = apply_voi(dec.pixels, dec.meta, index=1)
    assert float(np.abs(got - pydicom_voi_scaled(ds, index=1)).max()) <= 2e-6


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_voi_value_is_ignored_with_a_note(name, files):
    elements, note, removed = MALFORMED[name]
    ds = pydicom.dcmread(files[name])
    try:
        assert not np.isfinite(pydicom_voi_scaled(ds)).all()  # pydicom's VOI is NaN here
    except (TypeError, ValueError, NotImplementedError, IndexError, struct.error):
        pass  # pydicom refuses this file's VOI
    dec = decode_file(files[name])
    assert any(note in n for n in dec.meta.header_notes), dec.meta.header_notes
    assert all("\n" not in n for n in dec.meta.header_notes)
    clean = pydicom.dcmread(files[name])
    for kw in [*removed, "VOILUTSequence"]:
        if kw in clean and (kw in removed or kw in elements):
            del clean[kw]
    got = apply_voi(dec.pixels, dec.meta)
    assert float(np.abs(got - pydicom_voi_scaled(clean)).max()) <= 2e-6


def test_non_voi_elements_never_refuse_a_file(tmp_path):
    path = _write(
        tmp_path / "odd.dcm",
        TS.EXPLICIT_LE,
        {"InstanceNumber": b"1A", "ImageLaterality": EMPTY, "Laterality": "R", "PatientOrientation": b"P\\FL"},
        "odd",
    )
    meta = read_dicom(path).meta
    assert meta.image_id == "1A" and meta.laterality == "R"  # empty Image Laterality → Laterality
    assert meta.patient_orientation == ("P", "FL")
    assert np.array_equal(decode_file(path).pixels, pydicom.dcmread(path).pixel_array)


def test_required_element_not_a_number_is_refused_naming_it(tmp_path):
    from decode.errors import CorruptDicomError

    path = _write(tmp_path / "frames.dcm", TS.EXPLICIT_LE, {"NumberOfFrames": b"1A"}, "frames")
    with pytest.raises(CorruptDicomError, match=r"Number of Frames '1A' is not an integer"):
        decode_file(path)
