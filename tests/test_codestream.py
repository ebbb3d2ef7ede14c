"""Codestream headers (J2K SIZ, JPEG SOF) and their agreement with the DICOM header, tested directly.

The decode path reaches :func:`check_codestream` only through ``backend="auto"``, whose
pydicom fallback would hide a wrong refusal; here every branch is called on its own,
with real files written to disk and real encoders' codestreams.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from decode import syntax as TS
from decode.codestream import CodestreamInfo, check_codestream, j2k_info, jpeg_sof_info
from decode.dicom import read_dicom
from decode.errors import CorruptDicomError, UnsupportedDicomError
from decode.testing.synth import encode_frame, write_dicom


def _siz(rows, cols, *, comps=1, ssiz=11, xo=0, yo=0, tail=b""):
    """SOC + SIZ (+ ``tail``) for a ``rows``x``cols`` image; ``ssiz`` is the first component's Ssiz byte."""
    lsiz = 38 + 3 * comps
    body = struct.pack(">HHIIIIIIIIH", lsiz, 0, cols + xo, rows + yo, xo, yo, cols + xo, rows + yo, 0, 0, comps)
    return b"\xff\x4f\xff\x51" + body + bytes([ssiz, 1, 1]) + tail


def _seg(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def _sof(marker: int, precision: int, rows: int, cols: int, comps: int = 1) -> bytes:
    return _seg(marker, struct.pack(">BHHB", precision, rows, cols, comps) + b"\x01\x11\x00" * comps)


# --- J2K SIZ -------------------------------------------------------------------------------------


def test_j2k_info_reads_a_real_codestream_with_rows_and_columns_apart():
    pixels = (np.arange(37 * 23, dtype=np.uint16).reshape(37, 23) * 3) & 0xFFF
    info = j2k_info(encode_frame(pixels, TS.JPEG2000_LOSSLESS, 12))
    assert info == CodestreamInfo(rows=37, columns=23, components=1, precision=12, signed=False, codec="j2k")


def test_j2k_info_reads_the_sign_bit_and_the_image_offset():
    info = j2k_info(_siz(5, 7, ssiz=0x80 | 15, xo=3, yo=2))
    assert (info.rows, info.columns, info.precision, info.signed) == (5, 7, 16, True)
    assert j2k_info(_siz(5, 7, ssiz=0)).precision == 1
    assert j2k_info(_siz(5, 7, ssiz=0x7F)).precision == 128


def test_j2k_info_needs_soc_siz_and_43_bytes():
    cs = _siz(4, 6)
    assert len(cs) == 45
    assert j2k_info(cs[:43]).columns == 6  # SOC + SIZ up to the first Ssiz byte is enough
    assert j2k_info(cs[:42]) is None
    assert j2k_info(b"\xff\x4f\xff\x52" + cs[4:]) is None  # no SIZ after SOC
    assert j2k_info(b"\xff\x4e" + cs[2:]) is None  # no SOC
    assert j2k_info(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + cs) is None  # a JP2 wrapper is not a codestream


# --- JPEG SOF ------------------------------------------------------------------------------------


def test_jpeg_sof_info_reads_a_real_lossless_codestream():
    pixels = (np.arange(19 * 31, dtype=np.uint16).reshape(19, 31) * 7) & 0xFFF
    info = jpeg_sof_info(encode_frame(pixels, TS.JPEG_LOSSLESS_SV1, 12))
    assert info == CodestreamInfo(rows=19, columns=31, components=1, precision=12, signed=False, codec="jpeg-lossless")


@pytest.mark.parametrize(
    "marker,codec", [(0xC0, "jpeg-sof0"), (0xC1, "jpeg-sof1"), (0xC3, "jpeg-lossless"), (0xCF, "jpeg-sof15")]
)
def test_jpeg_sof_info_names_the_process(marker, codec):
    info = jpeg_sof_info(b"\xff\xd8" + _sof(marker, 12, 9, 11))
    assert (info.codec, info.rows, info.columns, info.precision, info.components) == (codec, 9, 11, 12, 1)


def test_jpeg_sof_info_walks_segments_by_length_past_tables_and_fill_bytes():
    dht = _seg(0xC4, b"\x00" * 17)  # DHT, DAC (0xCC) and JPG (0xC8) sit in the SOF range but are not SOFs
    dac = _seg(0xCC, b"\x00\x01")
    jpg = _seg(0xC8, b"")
    app = _seg(0xE0, b"JFIF\x00" + b"\xff\xc3" * 4)  # a SOF-looking byte pair inside a segment is skipped
    cs = b"\xff\xd8" + dht + dac + jpg + b"\xff\xff" + app + _sof(0xC3, 16, 3, 5)
    info = jpeg_sof_info(cs)
    assert (info.codec, info.rows, info.columns, info.precision) == ("jpeg-lossless", 3, 5, 16)


@pytest.mark.parametrize("fill", [1, 2, 3])
def test_jpeg_sof_info_skips_any_number_of_fill_bytes_one_at_a_time(fill):
    cs = b"\xff\xd8" + b"\xff" * fill + _sof(0xC3, 12, 9, 11)
    assert jpeg_sof_info(cs) == CodestreamInfo(
        rows=9, columns=11, components=1, precision=12, signed=False, codec="jpeg-lossless"
    )


def test_codestream_info_is_a_frozen_hashable_value():
    info = jpeg_sof_info(b"\xff\xd8" + _sof(0xC3, 12, 9, 11))
    assert {info, j2k_info(_siz(9, 11))} == {info, j2k_info(_siz(9, 11))}  # equal headers hash equal
    with pytest.raises(AttributeError):  # dataclasses.FrozenInstanceError
        info.rows = 10


def test_jpeg_sof_info_gives_up_without_a_readable_sof():
    sof = _sof(0xC3, 12, 9, 11)
    assert jpeg_sof_info(b"\xff\xd8" + _seg(0xDA, b"\x00" * 4) + sof) is None  # the scan before any SOF
    assert jpeg_sof_info(b"\xff\xd8\x00\xc3" + sof[2:]) is None  # not a marker where one must be
    assert jpeg_sof_info(b"\xff\xd8" + sof[:9]) is None  # SOF cut inside its fields
    assert jpeg_sof_info(b"\xff\xd8" + sof[:10]).rows == 9  # ... and just long enough
    assert jpeg_sof_info(b"\xff\xd8" + _seg(0xE0, b"x")) is None  # no SOF at all
    assert jpeg_sof_info(b"\xff\xd8\xff") is None  # shorter than one marker
    assert jpeg_sof_info(b"\xff\xd9" + sof) is None  # no SOI
    assert jpeg_sof_info(b"\xff\xd8" + _sof(0xBF, 12, 9, 11) + sof) == jpeg_sof_info(b"\xff\xd8" + sof)
    assert jpeg_sof_info(b"\xff\xd8" + _sof(0xD0, 12, 9, 11)) is None  # above the SOF range


# --- agreement with the DICOM header (no fallback: the check itself) -----------------------------


def _file(
    tmp_path, cs: bytes, *, ts=TS.JPEG2000_LOSSLESS, rows=6, cols=4, dtype=np.uint16, bits=12, ba=None, name="x.dcm"
):
    """A real DICOM file whose one frame is ``cs``, with a header for a ``rows``x``cols`` ``dtype`` image.

    ``ba``: a Bits Allocated other than the dtype's (32: the synthetic writer stops at 16 bits).
    """
    import pydicom
    from pydicom.encaps import encapsulate

    path = str(tmp_path / name)
    write_dicom(path, np.zeros((rows, cols), dtype), transfer_syntax=ts, bits_stored=min(bits, 16))
    ds = pydicom.dcmread(path)
    if ba is not None:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = ba, bits, bits - 1
    ds.PixelData = encapsulate([cs])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return read_dicom(path)


def test_matching_real_codestreams_pass_and_return_their_header(tmp_path):
    for ts in (TS.JPEG2000_LOSSLESS, TS.JPEG_LOSSLESS_SV1, TS.HTJ2K_LOSSLESS):
        path = write_dicom(str(tmp_path / "ok.dcm"), np.full((6, 4), 9, np.uint16), transfer_syntax=ts)
        info = check_codestream(read_dicom(path))
        assert (info.rows, info.columns, info.components) == (6, 4, 1)


def test_native_data_has_no_codestream_to_check(tmp_path):
    path = write_dicom(str(tmp_path / "n.dcm"), np.zeros((6, 4), np.uint16), transfer_syntax=TS.EXPLICIT_LE)
    assert check_codestream(read_dicom(path)) is None


def _as_explicit_le(path: str) -> str:
    """Rewrite a JPEG 2000 file's Transfer Syntax UID to Explicit VR Little Endian, bytes in place.

    pydicom will not write encapsulated Pixel Data under a native syntax, so the file meta
    element and its group length are edited directly; the data set is left as it was.
    """
    with open(path, "rb") as f:
        data = f.read()
    old = b"\x02\x00\x10\x00UI\x16\x00" + TS.JPEG2000_LOSSLESS.encode()
    new = b"\x02\x00\x10\x00UI\x14\x00" + TS.EXPLICIT_LE.encode() + b"\x00"
    assert data.count(old) == 1
    head = b"\x02\x00\x00\x00UL\x04\x00"
    at = data.index(head) + len(head)
    group = struct.unpack("<I", data[at : at + 4])[0]
    data = data[:at] + struct.pack("<I", group - 2) + data[at + 4 :]
    with open(path, "wb") as f:
        f.write(data.replace(old, new))
    return path


def test_encapsulated_data_under_a_native_syntax_is_refused(tmp_path):
    path = write_dicom(str(tmp_path / "j.dcm"), np.zeros((6, 4), np.uint16), transfer_syntax=TS.JPEG2000_LOSSLESS)
    dfile = read_dicom(_as_explicit_le(path))
    assert dfile.meta.transfer_syntax == TS.EXPLICIT_LE and dfile.ds["PixelData"].is_undefined_length
    with pytest.raises(CorruptDicomError) as err:
        check_codestream(dfile)
    assert err.value.reason == f"encapsulated Pixel Data under native transfer syntax {TS.EXPLICIT_LE}"
    assert err.value.path == dfile.path


def test_unparsable_header_is_left_to_the_decoder(tmp_path):
    assert check_codestream(_file(tmp_path, b"\x00\x00\x00\x0cjP  \r\n\x87\n" + _siz(6, 4))) is None
    assert check_codestream(_file(tmp_path, b"\xff\xd8\xff\xd9", ts=TS.JPEG_LOSSLESS_SV1)) is None


@pytest.mark.parametrize("comps", [2, 3, 4])
def test_colour_codestreams_are_unsupported(tmp_path, comps):
    with pytest.raises(UnsupportedDicomError) as err:
        check_codestream(_file(tmp_path, _siz(6, 4, comps=comps)))
    assert err.value.reason == f"codestream has {comps} colour components; greyscale expected"


@pytest.mark.parametrize("comps,ssiz,bits", [(0, 11, 12), (5, 11, 12), (1, 0x80 | 38, 39)])
def test_garbage_component_count_or_precision_is_corrupt(tmp_path, comps, ssiz, bits):
    with pytest.raises(CorruptDicomError) as err:
        check_codestream(_file(tmp_path, _siz(6, 4, comps=comps, ssiz=ssiz)))
    assert err.value.reason == f"garbage codestream header ({comps} components, {bits}-bit)"


def test_precision_38_is_not_garbage_but_does_not_fit_16_bits(tmp_path):
    with pytest.raises(CorruptDicomError) as err:
        check_codestream(_file(tmp_path, _siz(6, 4, ssiz=37)))
    assert err.value.reason == "codestream precision 38 bits does not fit Bits Allocated 16"


@pytest.mark.parametrize("ts", [TS.JPEG2000_LOSSLESS, TS.JPEG_LOSSLESS_SV1])
def test_rows_and_columns_swapped_are_refused(tmp_path, ts):
    cs = _siz(4, 6) if ts == TS.JPEG2000_LOSSLESS else b"\xff\xd8" + _sof(0xC3, 12, 4, 6)
    with pytest.raises(CorruptDicomError) as err:
        check_codestream(_file(tmp_path, cs, ts=ts, rows=6, cols=4))
    assert err.value.reason == "codestream is 4x6, the header says 6x4"
    cs = _siz(6, 5) if ts == TS.JPEG2000_LOSSLESS else b"\xff\xd8" + _sof(0xC3, 12, 6, 5)
    with pytest.raises(CorruptDicomError, match="codestream is 6x5, the header says 6x4"):
        check_codestream(_file(tmp_path, cs, ts=ts, rows=6, cols=4))


@pytest.mark.parametrize(
    "precision,dtype,fits",
    [
        (1, np.uint8, True),
        (8, np.uint8, True),
        (8, np.uint16, False),  # an 8-bit codestream in a 16-bit container
        (9, np.uint16, True),
        (9, np.uint8, False),
        (16, np.uint16, True),
        (17, np.uint16, False),
    ],
)
def test_precision_must_fit_bits_allocated(tmp_path, precision, dtype, fits):
    dfile = _file(
        tmp_path, _siz(6, 4, ssiz=precision - 1), dtype=dtype, bits=min(precision, 8 * np.dtype(dtype).itemsize)
    )
    if fits:
        assert check_codestream(dfile).precision == precision
    else:
        with pytest.raises(CorruptDicomError) as err:
            check_codestream(dfile)
        ba = 8 * np.dtype(dtype).itemsize
        assert err.value.reason == f"codestream precision {precision} bits does not fit Bits Allocated {ba}"


@pytest.mark.parametrize("precision,fits", [(17, True), (32, True), (33, False), (38, False)])
def test_precision_above_16_bits_needs_a_32_bit_container_and_above_32_fits_none(tmp_path, precision, fits):
    dfile = _file(tmp_path, _siz(6, 4, ssiz=precision - 1), bits=min(precision, 32), ba=32)
    assert dfile.meta.bits_allocated == 32
    if fits:
        assert check_codestream(dfile).precision == precision
    else:
        with pytest.raises(CorruptDicomError) as err:
            check_codestream(dfile)
        assert err.value.reason == f"codestream precision {precision} bits does not fit Bits Allocated 32"
