"""`decode.dicom`: the exact one-line reasons files are refused with, and how header elements are read.

Tiny files written to disk (native syntax unless a codestream matters); malformed values are
written as raw bytes, since pydicom refuses to set them.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pydicom
import pytest
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence

from decode import syntax as TS
from decode.decoding import decodable_syntax, decode_pixels
from decode.dicom import DicomFile, frame_codestream, meta_from_dataset, read_dicom
from decode.errors import CorruptDicomError, UnreadableDicomError, UnsupportedDicomError
from decode.testing.synth import write_dicom

PX = (np.arange(30, dtype=np.uint16).reshape(6, 5) * 100) & 0xFFF


def _raw(ds, keyword: str, value: bytes, vr: str | None = None) -> None:
    """Store ``value`` as the element's bytes, unchecked, with its dictionary VR or ``vr``."""
    tag = tag_for_keyword(keyword)
    ds[tag] = RawDataElement(tag, vr or dictionary_VR(tag), len(value), value, 0, False, True)


def _write(tmp_path, name="h.dcm", px=PX, ts=TS.EXPLICIT_LE, edit=None, **kw) -> str:
    path = write_dicom(str(tmp_path / name), px, transfer_syntax=ts, **kw)
    if edit is not None:
        ds = pydicom.dcmread(path)
        edit(ds)
        ds.save_as(path, enforce_file_format=True)
    return path


def _meta(tmp_path, **kw):
    return read_dicom(_write(tmp_path, **kw)).meta


# --- files refused before the header is read -------------------------------------------------------


def _reason(path, kind=UnreadableDicomError) -> str:
    with pytest.raises(kind) as err:
        read_dicom(path)
    assert err.value.path == os.fspath(path)
    return err.value.reason


def test_unreadable_paths_say_why(tmp_path):
    assert _reason(tmp_path) == "is a directory, not a file"
    assert _reason(tmp_path / "none.dcm") == "No such file or directory"
    os.mkfifo(tmp_path / "fifo")
    assert _reason(tmp_path / "fifo") == "not a regular file (device, FIFO or socket)"
    (tmp_path / "empty.dcm").write_bytes(b"")
    assert _reason(tmp_path / "empty.dcm") == "empty file"
    (tmp_path / "text.dcm").write_bytes(b"hello, not a DICOM file at all")
    assert _reason(tmp_path / "text.dcm") == "not a DICOM file (no DICM preamble)"


def test_file_meta_alone_has_no_data_elements(tmp_path):
    path = _write(tmp_path)
    ds = pydicom.dcmread(path)
    only_meta = Dataset()
    only_meta.file_meta = ds.file_meta
    only_meta.save_as(str(tmp_path / "meta.dcm"), enforce_file_format=True)
    assert _reason(tmp_path / "meta.dcm") == "no data elements after the file meta"


def test_a_file_cut_inside_its_pixel_data_is_truncated(tmp_path):
    path = _write(tmp_path, name="a: b.dcm", ts=TS.JPEG2000_LOSSLESS)  # pydicom's warning ends "in file <path>"
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[: len(data) - 20])
    assert _reason(path, CorruptDicomError) == "truncated file: End of file reached before delimiter (FFFE,E0DD) found"


def test_a_file_cut_inside_its_file_meta_or_a_sequence_cannot_be_parsed(tmp_path):
    data = open(_write(tmp_path), "rb").read()
    cut = tmp_path / "meta.dcm"
    cut.write_bytes(data[: 128 + 4 + 8 + 1])  # preamble, DICM, the group length's tag/VR/length, 1 of its 4 bytes
    assert _reason(cut).startswith("cannot parse header: BytesLengthException: Expected total bytes to be an even")

    def undefined_length(ds):
        ds["VOILUTSequence"].is_undefined_length = True

    path = _write(tmp_path, name="s.dcm", extra={"VOILUTSequence": _lut(16, 2, 0, [1, 2])}, edit=undefined_length)
    data = open(path, "rb").read()
    at = data.index(b"\x28\x00\x10\x30SQ\x00\x00\xff\xff\xff\xff") + 12  # the first item's tag
    cut = tmp_path / "seq.dcm"
    cut.write_bytes(data[: at + 4])  # the item's tag, not its length: pydicom raises OSError without an errno
    assert _reason(cut) == f"No tag to read at file position {at + 4:X}"


def test_a_header_pydicom_fails_to_read_later_is_corrupt_naming_the_file(tmp_path):
    path = _write(tmp_path)
    ds = pydicom.dcmread(path, defer_size=1)  # values are read from the file when first used
    os.remove(path)
    with pytest.raises(CorruptDicomError) as err:
        meta_from_dataset(ds, path)
    assert err.value.path == path
    assert err.value.reason.startswith(f"malformed header: OSError: Deferred read -- original file {path} is missing")


# --- the header ----------------------------------------------------------------------------------


def test_transfer_syntax_must_be_named_and_decoding_refuses_what_nothing_decodes(tmp_path):
    ds = pydicom.dcmread(_write(tmp_path))
    ds.file_meta.TransferSyntaxUID = "1.2.3.4"
    meta = meta_from_dataset(ds, "x.dcm")  # the header reader parses any syntax, as pydicom does
    assert meta.transfer_syntax == "1.2.3.4"
    with pytest.raises(UnsupportedDicomError) as err:
        decode_pixels(DicomFile("x.dcm", meta, ds))
    assert (err.value.path, err.value.reason) == ("x.dcm", "no decoder for transfer syntax 1.2.3.4")
    del ds.file_meta.TransferSyntaxUID
    with pytest.raises(UnsupportedDicomError, match=r"^x.dcm: no Transfer Syntax UID in the file meta$"):
        meta_from_dataset(ds, "x.dcm")
    assert decodable_syntax(TS.JPEG2000_LOSSLESS) and decodable_syntax(TS.EXPLICIT_LE)
    assert not decodable_syntax("1.2.3.4")


def test_missing_required_elements_are_named_together(tmp_path):
    ds = pydicom.dcmread(_write(tmp_path))
    del ds.Rows, ds.BitsStored
    with pytest.raises(CorruptDicomError) as err:
        meta_from_dataset(ds, "x.dcm")
    assert err.value.reason == "missing required element(s): Rows, BitsStored"


def test_required_element_present_but_empty_is_missing(tmp_path):
    path = _write(tmp_path, edit=lambda ds: setattr(ds, "Rows", None))
    assert _reason(path, CorruptDicomError) == "missing required element(s): Rows"


def test_required_element_of_the_wrong_length_is_not_an_integer(tmp_path):
    path = _write(tmp_path, edit=lambda ds: _raw(ds, "Rows", b"\x06\x00\x00"))  # US of 3 bytes: pydicom refuses it
    assert _reason(path, CorruptDicomError) == "Rows '\\x06\\x00\\x00' is not an integer"


def test_samples_per_pixel_and_number_of_frames_default_to_one_when_absent_or_empty(tmp_path):
    def edit(ds):
        del ds.SamplesPerPixel
        ds.NumberOfFrames = ""
        ds.PatientOrientation = ""

    meta = _meta(tmp_path, edit=edit)
    assert (meta.samples_per_pixel, meta.number_of_frames, meta.patient_orientation) == (1, 1, ())
    meta = _meta(tmp_path, name="e.dcm", edit=lambda ds: setattr(ds, "SamplesPerPixel", None))
    assert meta.samples_per_pixel == 1


@pytest.mark.parametrize(
    "keyword,value,reason",
    [
        ("SamplesPerPixel", 3, "colour image (Samples per Pixel 3); only greyscale is supported"),
        ("NumberOfFrames", "2", "2 frames; a single frame is expected"),
    ],
)
def test_colour_and_multi_frame_headers_are_read_and_refused(tmp_path, keyword, value, reason):
    path = _write(tmp_path, edit=lambda ds: setattr(ds, keyword, value))
    assert _reason(path, UnsupportedDicomError) == reason


def test_number_of_frames_must_be_an_integer(tmp_path):
    path = _write(tmp_path, edit=lambda ds: _raw(ds, "NumberOfFrames", b"1A"))
    assert _reason(path, CorruptDicomError) == "Number of Frames '1A' is not an integer"
    assert _meta(tmp_path, name="f.dcm", edit=lambda ds: _raw(ds, "NumberOfFrames", b"1 ")).number_of_frames == 1


def test_header_fields_are_read_as_written(tmp_path):
    def edit(ds):
        del ds.ImageLaterality
        ds.Laterality = "r"
        ds.PatientOrientation = ["a", "fl"]
        ds.PresentationIntentType = "for presentation"
        ds.PhotometricInterpretation = "monochrome1"

    meta = _meta(tmp_path, edit=edit, patient_id="P7", image_id="42", view="MLO")
    assert (meta.rows, meta.columns, meta.bits_allocated, meta.bits_stored) == (6, 5, 16, 12)
    assert (meta.patient_id, meta.image_id, meta.view, meta.laterality) == ("P7", "42", "MLO", "R")
    assert meta.patient_orientation == ("A", "FL") and meta.presentation_intent == "FOR PRESENTATION"
    assert meta.photometric == "MONOCHROME1" and meta.transfer_syntax == TS.EXPLICIT_LE
    assert (meta.samples_per_pixel, meta.number_of_frames, meta.pixel_representation) == (1, 1, 0)
    assert meta.has_pixel_data and meta.header_notes == () and meta.library_messages == ()
    assert _meta(tmp_path, name="l.dcm", laterality="L").laterality == "L"  # Image Laterality first


def test_dicom_file_codestream_is_cached_and_native_bytes_are_the_pixel_data(tmp_path):
    j2k = read_dicom(_write(tmp_path, name="j.dcm", ts=TS.JPEG2000_LOSSLESS))
    cs = j2k.codestream()
    assert cs[:4] == b"\xff\x4f\xff\x51" and j2k.codestream() is cs and j2k.transfer_syntax == TS.JPEG2000_LOSSLESS
    native = read_dicom(_write(tmp_path))
    assert native.pixel_bytes() == PX.astype("<u2").tobytes()


def test_frame_codestream_reasons():
    ds = Dataset()
    ds.PixelData = encapsulate([b"\x01\x02"])
    assert frame_codestream(ds) == b"\x01\x02"
    ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"  # offset table, no item
    with pytest.raises(CorruptDicomError, match=r"^f.dcm: empty codestream$"):  # pydicom yields b"" for it
        frame_codestream(ds, "f.dcm")
    ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00\xfe\xff\x00\xe0\x00\x00\x00\x00"  # an empty item
    with pytest.raises(CorruptDicomError, match=r"^<memory>: empty codestream$"):
        frame_codestream(ds)
    ds.PixelData = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    with pytest.raises(CorruptDicomError, match=r"^f.dcm: broken encapsulated Pixel Data: ValueError: "):
        frame_codestream(ds, "f.dcm")


# --- VOI and modality elements -------------------------------------------------------------------


def test_voi_lut_function_unknown_ignores_the_window_with_a_note(tmp_path):
    meta = _meta(tmp_path, window=([100.0], [50.0]), voi_function="GAMMA")
    assert meta.window_centers == () and meta.window_widths == () and meta.voi_lut_function == "LINEAR"
    assert meta.header_notes == (
        "VOI LUT Function 'GAMMA' is not one of LINEAR, LINEAR_EXACT, SIGMOID (pydicom refuses it); "
        "the window is ignored",
    )
    assert _meta(tmp_path, name="g.dcm", voi_function="GAMMA").header_notes == ()  # no window: nothing lost
    center_only = _meta(tmp_path, name="c.dcm", voi_function="GAMMA", extra={"WindowCenter": 100.0})
    assert center_only.window_centers == () and len(center_only.header_notes) == 1  # half a window is lost too
    assert _meta(tmp_path, name="s.dcm", window=([1.0], [2.0]), voi_function="sigmoid").voi_lut_function == "SIGMOID"


def test_rescale_needs_slope_and_intercept(tmp_path):
    meta = _meta(tmp_path, rescale=(2.0, -5.0))
    assert (meta.rescale_slope, meta.rescale_intercept) == (2.0, -5.0)
    meta = _meta(tmp_path, name="s.dcm", rescale=(2.0, -5.0), edit=lambda ds: ds.__delattr__("RescaleIntercept"))
    assert (meta.rescale_slope, meta.rescale_intercept) == (None, None)
    meta = _meta(tmp_path, name="i.dcm", rescale=(2.0, -5.0), edit=lambda ds: ds.__delattr__("RescaleSlope"))
    assert (meta.rescale_slope, meta.rescale_intercept) == (None, None)


def test_window_values_not_a_number_or_nan_are_noted_and_infinity_kept(tmp_path):
    def edit(ds):
        _raw(ds, "WindowCenter", b"NaN\\2048")
        _raw(ds, "WindowWidth", b"inf\\abc ")

    meta = _meta(tmp_path, edit=edit)
    assert meta.window_centers == (None, 2048.0)
    assert meta.window_widths[0] == float("inf") and meta.window_widths[1] is None
    assert meta.header_notes == (
        "Window Center value 'NaN' is not a number; ignored",
        "Window Width value 'abc' is not a number; ignored",
    )


def test_values_pydicom_cannot_convert_are_split_and_judged_one_by_one(tmp_path, monkeypatch):
    def edit(ds):
        _raw(ds, "WindowCenter", b"98x6.5\\2048")
        _raw(ds, "WindowWidth", b"1500\\w")

    path = _write(tmp_path, edit=edit)
    warned = read_dicom(path).meta  # pydicom's default: a warning, the element converted value by value
    monkeypatch.setattr(pydicom.config.settings, "reading_validation_mode", pydicom.config.RAISE)
    with pytest.raises(ValueError):
        _ = pydicom.dcmread(path).WindowCenter  # ... here pydicom rejects the whole element
    meta = read_dicom(path).meta
    assert (meta.window_centers, meta.window_widths) == ((None, 2048.0), (1500.0, None))
    assert meta.header_notes == (
        "Window Center value '98x6.5' is not a number; ignored",
        "Window Width value 'w' is not a number; ignored",
    )
    assert (warned.window_centers, warned.window_widths, warned.header_notes) == (
        meta.window_centers,
        meta.window_widths,
        meta.header_notes,
    )


def test_text_elements_written_with_a_binary_vr_are_read_as_their_text(tmp_path):
    def edit(ds):  # pydicom keeps an explicit OB as bytes
        _raw(ds, "WindowCenter", b"2000\\2500", "OB")
        _raw(ds, "WindowWidth", b"15\xe900", "OB")
        _raw(ds, "PixelPaddingValue", b"7A", "OB")
        _raw(ds, "PatientOrientation", b"a\\f ", "OB")
        _raw(ds, "ViewPosition", b"  ", "OB")

    meta = _meta(tmp_path, edit=edit)
    assert meta.window_centers == (2000.0, 2500.0) and meta.window_widths == ()
    assert meta.pixel_padding is None and meta.patient_orientation == ("A", "F") and meta.view == ""
    assert meta.header_notes == (
        "Window Width value '15\ufffd00' is not a number; ignored",
        "Pixel Padding Value value '7A' is not an integer; ignored",
    )


def test_padding_of_the_wrong_length_is_ignored_with_a_note(tmp_path):
    meta = _meta(tmp_path, edit=lambda ds: _raw(ds, "PixelPaddingValue", b"\x07\x00\x00", "US"))
    assert meta.pixel_padding is None
    assert meta.header_notes == ("Pixel Padding Value value '\\x07\\x00\\x00' is not an integer; ignored",)


def _lut(bits, entries, first_map, data, vr="US"):
    item = Dataset()
    item.LUTDescriptor = [entries, first_map, bits]
    if vr == "US":
        item.LUTData = [int(v) for v in data]
        item["LUTData"].VR = "US"
    else:
        item.add_new(0x00283006, "OW", np.asarray(data, "<u2").tobytes())
    return Sequence([item])


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_lut_tables_are_read_with_their_descriptor(tmp_path, vr):
    meta = _meta(tmp_path, extra={"VOILUTSequence": _lut(8, 4, 3, [9, 8, 7, 6], vr)})
    lut = meta.voi_lut
    assert (lut.first_map, lut.bits, lut.data.tolist(), lut.data.dtype) == (3, 8, [9, 8, 7, 6], np.uint8)
    meta = _meta(tmp_path, name="m.dcm", extra={"ModalityLUTSequence": _lut(8, 3, 5, [1, 2, 3], vr)})
    lut = meta.modality_lut
    assert (lut.first_map, lut.bits, lut.data.tolist(), lut.data.dtype) == (5, 8, [1, 2, 3], np.uint16)
    meta = _meta(tmp_path, name="t.dcm", extra={"VOILUTSequence": _lut(12, 3, 0, [4000, 2, 1], vr)})
    assert meta.voi_lut.data.tolist() == [4000, 2, 1] and meta.voi_lut.data.dtype == np.uint16
    assert meta.header_notes == ()


def test_lut_of_65536_entries_is_written_as_zero(tmp_path):
    data = np.arange(65536) // 16
    meta = _meta(tmp_path, extra={"VOILUTSequence": _lut(12, 0, 0, data, "OW")})
    assert meta.voi_lut.data.size == 65536 and meta.voi_lut.data[-1] == 4095


@pytest.mark.parametrize(
    "seq,bits,ok",
    [
        ("VOILUTSequence", 8, True),
        ("VOILUTSequence", 9, False),
        ("VOILUTSequence", 10, True),
        ("VOILUTSequence", 16, True),
        ("VOILUTSequence", 17, False),
        ("ModalityLUTSequence", 1, True),
        ("ModalityLUTSequence", 9, True),
        ("ModalityLUTSequence", 16, True),
        ("ModalityLUTSequence", 17, False),
        ("ModalityLUTSequence", 0, False),
    ],
)
def test_lut_bit_depths_allowed(tmp_path, seq, bits, ok):
    meta = _meta(tmp_path, extra={seq: _lut(bits, 2, 0, [0, 1])})
    lut = meta.voi_lut if seq == "VOILUTSequence" else meta.modality_lut
    name = "VOI LUT Sequence" if seq == "VOILUTSequence" else "Modality LUT Sequence"
    allowed = "8, 10-16" if seq == "VOILUTSequence" else "1-16"
    if ok:
        assert lut is not None and lut.bits == bits and meta.header_notes == ()
    else:
        assert lut is None
        assert meta.header_notes == (f"{name}: {bits} bits per LUT entry (allowed: {allowed}); ignored",)


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_lut_data_shorter_than_its_descriptor_is_ignored_with_a_note(tmp_path, vr):
    meta = _meta(tmp_path, extra={"VOILUTSequence": _lut(12, 4, 0, [1, 2, 3], vr)})
    assert meta.voi_lut is None
    assert meta.header_notes == ("VOI LUT Sequence: LUT Data holds 3 entries, the descriptor says 4; ignored",)
    meta = _meta(tmp_path, name="e.dcm", extra={"VOILUTSequence": _lut(12, 3, 0, [1, 2, 3], vr)})
    assert meta.voi_lut.data.tolist() == [1, 2, 3]  # exactly enough


@pytest.mark.parametrize("vr", ["US", "OW"])
def test_lut_entries_past_the_descriptor_count_are_never_looked_up(tmp_path, vr):
    from decode.decoding import decode_file
    from decode.voi import apply_voi
    from tests.helpers import pydicom_voi_scaled

    path = _write(tmp_path, extra={"VOILUTSequence": _lut(16, 3, 100, [10000, 20000, 30000, 40000, 50000], vr)})
    dec = decode_file(path)
    assert dec.meta.voi_lut.data.tolist() == [10000, 20000, 30000] and dec.meta.header_notes == ()
    want = pydicom_voi_scaled(pydicom.dcmread(path))  # pixels above 102 take entry 2, as in pydicom
    assert float(np.abs(apply_voi(dec.pixels, dec.meta) - want).max()) <= 2e-6


def test_ow_lut_data_of_whitespace_bytes_is_data(tmp_path):
    data = [0x2020, 0x0A0D, 0x0920]
    meta = _meta(tmp_path, extra={"VOILUTSequence": _lut(16, 3, 0, data, "OW")})
    assert meta.voi_lut.data.tolist() == data and meta.header_notes == ()


@pytest.mark.parametrize("vr", ["US", "OW"])
@pytest.mark.parametrize("empty", ["LUTDescriptor", "LUTData"])
def test_lut_item_with_an_empty_descriptor_or_data_is_absent(tmp_path, vr, empty):
    seq = _lut(16, 2, 0, [1, 2], vr)
    seq[0][empty].value = None
    meta = _meta(tmp_path, extra={"VOILUTSequence": seq})
    assert meta.voi_lut is None and meta.header_notes == ()


@pytest.mark.parametrize(
    "ts,raw", [(pydicom.uid.ExplicitVRBigEndian, b"\x00\x09\x00\x08"), ("1.2.3.4", b"\x09\x00\x08\x00")]
)
def test_ow_lut_data_follows_the_transfer_syntax_byte_order_little_when_unknown(tmp_path, ts, raw):
    ds = pydicom.dcmread(_write(tmp_path))
    ds.file_meta.TransferSyntaxUID = ts
    item = Dataset()
    item.LUTDescriptor = [2, 0, 16]
    item.add_new(0x00283006, "OW", raw)
    ds.VOILUTSequence = Sequence([item])
    assert meta_from_dataset(ds, "x.dcm").voi_lut.data.tolist() == [9, 8]


def test_lut_sequences_pydicom_cannot_parse_or_of_another_vr_are_ignored_with_a_note(tmp_path):
    def edit(ds):
        _raw(ds, "VOILUTSequence", b"\x01\x02\x03\x04", "UN")  # pydicom parses UN of a known SQ tag as SQ
        _raw(ds, "ModalityLUTSequence", b"\x01\x02", "OB")

    meta = _meta(tmp_path, edit=edit)
    assert meta.voi_lut is None and meta.modality_lut is None
    voi_note, modality_note = meta.header_notes
    assert re.fullmatch(
        r"VOI LUT Sequence cannot be read \(OSError: No tag to read at file position [0-9A-F]+\); ignored", voi_note
    )
    assert modality_note == "Modality LUT Sequence cannot be read (TypeError: VR OB, not SQ); ignored"
    seq = _lut(16, 2, 0, [1, 2])
    seq[0].add_new(0x00283006, "LO", ["1", "a"])  # LUT Data as text
    meta = _meta(tmp_path, name="t.dcm", extra={"VOILUTSequence": seq})
    assert meta.voi_lut is None
    assert meta.header_notes == (
        "VOI LUT Sequence cannot be read (ValueError: invalid literal for int() with base 10: 'a'); ignored",
    )


def test_lut_descriptor_needs_three_values(tmp_path):
    seq = _lut(12, 2, 0, [0, 1])
    seq[0].LUTDescriptor = [2, 0]
    meta = _meta(tmp_path, extra={"VOILUTSequence": seq})
    assert meta.voi_lut is None
    assert meta.header_notes == ("VOI LUT Sequence: LUT Descriptor has 2 values, 3 expected; ignored",)


# --- Pixel Padding -------------------------------------------------------------------------------


def test_padding_value_and_range_in_either_order(tmp_path):
    assert _meta(tmp_path, extra={"PixelPaddingValue": 7}).pixel_padding == (7, 7)
    meta = _meta(tmp_path, name="r.dcm", extra={"PixelPaddingValue": 90, "PixelPaddingRangeLimit": 10})
    assert meta.pixel_padding == (10, 90)
    meta = _meta(tmp_path, name="o.dcm", extra={"PixelPaddingValue": 10, "PixelPaddingRangeLimit": 90})
    assert meta.pixel_padding == (10, 90)
    meta = _meta(tmp_path, name="n.dcm", extra={"PixelPaddingRangeLimit": 90})
    assert meta.pixel_padding is None
    assert meta.header_notes == ("Pixel Padding Range Limit without Pixel Padding Value; ignored",)


def test_absurd_bits_allocated_is_refused_even_with_padding_on_signed_data(tmp_path):
    def edit(ds):
        ds.BitsAllocated = 2048  # the sign of the padding value is taken at 2^2048 / 2
        ds.add_new(0x00280120, "SS", -1)

    path = _write(tmp_path, px=np.zeros((6, 5), np.int16), edit=edit)
    assert _reason(path, UnsupportedDicomError) == "Bits Allocated 2048; allowed: 1, 8, 16, 32"


@pytest.mark.parametrize(
    "dtype,value,want", [(np.int16, 65535, -1), (np.int16, 32768, -32768), (np.int16, 32767, 32767), (np.int8, 255, -1)]
)
def test_padding_written_unsigned_for_signed_data_reads_back_signed(tmp_path, dtype, value, want):
    def edit(ds):
        ds.add_new(0x00280120, "US", value)

    meta = _meta(tmp_path, px=np.zeros((6, 5), dtype), edit=edit, bits_stored=8 * np.dtype(dtype).itemsize)
    assert meta.pixel_padding == (want, want)
