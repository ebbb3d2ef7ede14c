"""A malformed-input corpus, generated on demand (never committed): each case names the
error type it must produce. Used by the tests and by ``benchmarks/reliability.py``."""

from __future__ import annotations

import os

import numpy as np

from .. import syntax as TS
from ..errors import CorruptDicomError, DicomError, UnreadableDicomError, UnsupportedDicomError
from .synth import write_dicom

Expected = type[DicomError]


def set_raw_element(ds, keyword: str, value: bytes) -> None:
    """Store ``value`` as the element's bytes, unchecked (pydicom refuses to set invalid values)."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import RawDataElement

    tag = tag_for_keyword(keyword)
    ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(value), value, 0, False, True)


def _odd_but_valid(folder: str, good: dict[str, str]) -> dict[str, str]:
    """Valid files with the header shapes real vendors write: their stored values decode.

    Type-2 elements present but empty, LUT sequence items with an empty descriptor and
    data, a window with an empty first value or a trailing backslash, a window value that
    is not a number, a FOR PROCESSING image. Each must decode to the source pixels.
    """
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    def empty_item() -> Dataset:
        item = Dataset()
        item.add_new(0x00283002, "US", None)  # LUT Descriptor, present and empty
        item.add_new(0x00283006, "OW", None)  # LUT Data, present and empty
        return item

    def edit(name: str, src: str, **changes) -> str:
        ds = pydicom.dcmread(good[src])
        for k, v in changes.items():
            setattr(ds, k, v)
        path = os.path.join(folder, f"{name}.dcm")
        ds.save_as(path)
        return path

    out = {
        "empty_type2": edit(
            "odd_empty_type2",
            "native",
            WindowCenter=None,
            WindowWidth=None,
            RescaleSlope=None,
            RescaleIntercept=None,
            RescaleType=None,
            VOILUTFunction=None,
        ),
        "empty_lut_items": edit(
            "odd_empty_lut_items",
            "j2k",
            VOILUTSequence=Sequence([empty_item()]),
            ModalityLUTSequence=Sequence([empty_item()]),
        ),
        "window_empty_first": edit(
            "odd_window_empty_first", "jll", WindowCenter=["", "2048"], WindowWidth=["", "4096"]
        ),
        "window_trailing_backslash": edit("odd_window_trailing", "j2k", WindowCenter=["2048", ""], WindowWidth="4096"),
        "for_processing": edit("odd_for_processing", "jll", PresentationIntentType="FOR PROCESSING"),
    }
    ds = pydicom.dcmread(good["native"])
    set_raw_element(ds, "WindowCenter", b"98x6.5")  # a DS that is not a number
    ds.WindowWidth = 1000
    out["bad_window_value"] = os.path.join(folder, "odd_bad_window_value.dcm")
    ds.save_as(out["bad_window_value"])
    return out


def build_corpus(folder: str, *, seed: int = 0) -> tuple[dict[str, str], dict[str, tuple[str, Expected]], np.ndarray]:
    """Write valid and malformed files into ``folder``.

    Returns:
        ``(good, bad, pixels)``: good files by name (their stored values are ``pixels``;
        they include valid files with odd but real-world headers), bad files as
        ``name → (path, expected error class)``.
    """
    import pydicom
    from pydicom.encaps import encapsulate

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 4096, (64, 48)).astype(np.uint16)
    j = os.path.join
    good = {
        "j2k": write_dicom(j(folder, "good_j2k.dcm"), px, transfer_syntax=TS.JPEG2000_LOSSLESS),
        "jll": write_dicom(j(folder, "good_jll.dcm"), px, transfer_syntax=TS.JPEG_LOSSLESS_SV1),
        "native": write_dicom(j(folder, "good_native.dcm"), px, transfer_syntax=TS.EXPLICIT_LE),
    }
    raw = {k: open(p, "rb").read() for k, p in good.items()}
    bad: dict[str, tuple[str, Expected]] = {}

    def put(name, data, expected):
        p = j(folder, f"{name}.dcm")
        with open(p, "wb") as f:
            f.write(data)
        bad[name] = (p, expected)

    def edit(name, src, expected, **changes):
        ds = pydicom.dcmread(good[src])
        for k, v in changes.items():
            if k == "TransferSyntaxUID":
                ds.file_meta.TransferSyntaxUID = v
            elif v is None:
                delattr(ds, k)
            elif isinstance(v, bytes):  # the value's bytes as written, valid or not
                set_raw_element(ds, k, v)
            else:
                setattr(ds, k, v)
        p = j(folder, f"{name}.dcm")
        ds.save_as(p)
        bad[name] = (p, expected)

    put("empty", b"", UnreadableDicomError)
    put("not_dicom", b"hello, this is a text file, not a mammogram\n" * 20, UnreadableDicomError)
    put("png_not_dicom", b"\x89PNG\r\n\x1a\n" + bytes(300), UnreadableDicomError)
    put("preamble_only", bytes(128) + b"DICM", UnreadableDicomError)
    put("truncated_header", raw["j2k"][:300], UnreadableDicomError)
    for frac in (0.3, 0.5, 0.8, 0.95, 0.995):
        put(f"truncated_j2k_{int(frac * 1000)}", raw["j2k"][: int(len(raw["j2k"]) * frac)], CorruptDicomError)
        put(f"truncated_jll_{int(frac * 1000)}", raw["jll"][: int(len(raw["jll"]) * frac)], CorruptDicomError)
    put("truncated_native", raw["native"][: len(raw["native"]) - 1000], CorruptDicomError)
    ds = pydicom.dcmread(good["j2k"])
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()])
    ds.save_as(j(folder, "garbage_j2k.dcm"))
    bad["garbage_j2k"] = (j(folder, "garbage_j2k.dcm"), CorruptDicomError)
    ds = pydicom.dcmread(good["jll"])
    ds.PixelData = encapsulate([b"\xff\xd8" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes()])
    ds.save_as(j(folder, "garbage_jll.dcm"))
    bad["garbage_jll"] = (j(folder, "garbage_jll.dcm"), CorruptDicomError)
    ds = pydicom.dcmread(good["j2k"])
    ds.PixelData = encapsulate([b"\x00\x00"])
    ds.save_as(j(folder, "zeros_codestream.dcm"))
    bad["zeros_codestream"] = (j(folder, "zeros_codestream.dcm"), CorruptDicomError)
    edit("no_pixel_data", "j2k", UnsupportedDicomError, PixelData=None)
    edit("absurd_dims", "j2k", UnsupportedDicomError, Rows=65535, Columns=65535)
    edit("zero_rows", "native", UnsupportedDicomError, Rows=0)
    edit("dims_disagree_j2k", "j2k", CorruptDicomError, Rows=80)
    edit("dims_disagree_jll", "jll", CorruptDicomError, Columns=40)
    edit("bits_stored_zero", "j2k", UnsupportedDicomError, BitsStored=0)
    edit("bits_stored_too_big", "jll", UnsupportedDicomError, BitsStored=20)
    edit("bits_allocated_odd", "native", UnsupportedDicomError, BitsAllocated=12)
    edit("colour_rgb", "j2k", UnsupportedDicomError, SamplesPerPixel=3, PhotometricInterpretation="RGB")
    edit("palette", "native", UnsupportedDicomError, PhotometricInterpretation="PALETTE COLOR")
    edit("multi_frame", "j2k", UnsupportedDicomError, NumberOfFrames=2)
    edit("unknown_syntax", "j2k", UnsupportedDicomError, TransferSyntaxUID="1.2.3.4.5.6.7")
    edit("missing_rows", "native", CorruptDicomError, Rows=None)
    edit("frames_not_a_number", "native", CorruptDicomError, NumberOfFrames=b"1A")
    good.update(_odd_but_valid(folder, good))
    os.makedirs(j(folder, "a_directory.dcm"), exist_ok=True)
    bad["directory"] = (j(folder, "a_directory.dcm"), UnreadableDicomError)
    fifo = j(folder, "a_fifo.dcm")
    if hasattr(os, "mkfifo") and not os.path.exists(fifo):
        os.mkfifo(fifo)
    if os.path.exists(fifo):
        bad["fifo"] = (fifo, UnreadableDicomError)
    link = j(folder, "dangling_link.dcm")
    if not os.path.lexists(link):
        os.symlink(j(folder, "nowhere.dcm"), link)
    bad["dangling_link"] = (link, UnreadableDicomError)
    bad["missing"] = (j(folder, "does_not_exist.dcm"), UnreadableDicomError)
    return good, bad, px
