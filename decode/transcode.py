"""Lossless transcode of one DICOM to High-Throughput JPEG 2000 (transfer syntax .201).

The frame is decoded to its stored values (exactly pydicom's ``pixel_array``),
encoded with OpenJPH (``imagecodecs.htj2k_encode(level=0, reversible=True)``: the
reversible 5/3 wavelet, no quantisation), and written as a standard DICOM file:
every data element of the source is kept as it was except Pixel Data (now
encapsulated HTJ2K) and any Extended Offset Table (which would describe the old
stream); the file meta gets Transfer Syntax UID 1.2.840.10008.1.2.4.201 and names
pydicom as the implementation that wrote the file.

The file is written to a temporary name next to its destination, decoded again and
compared with the source pixels (``np.array_equal``, same dtype and shape), and only
then renamed into place: a destination file that exists is complete and verified.

Note: OpenJPH writes a 16-bit codestream (SIZ precision 16) for 9–16-bit data; it is
lossless for every value of the container dtype, so 12- and 14-bit data (and signed
data) round-trip exactly. Bits Stored in the header is unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from . import syntax as TS
from .atomic import atomic_write
from .decoding import decode_file, decode_pixels
from .dicom import read_dicom
from .errors import DicomError, as_dicom_error

log = logging.getLogger(__name__)

HTJ2K_SYNTAX = TS.HTJ2K_LOSSLESS
#: Elements that describe the old encapsulated stream and are dropped on transcode.
_STREAM_TAGS = (0x7FE00001, 0x7FE00002)  # Extended Offset Table, Extended Offset Table Lengths


class TranscodeError(DicomError):
    """Transcoding failed after the source decoded (``stage`` says where)."""

    kind = "transcode"
    stage = "encode"


class VerifyError(TranscodeError):
    """The written file does not decode to the source pixels."""

    stage = "verify"


class WriteError(TranscodeError):
    """The output could not be written."""

    stage = "write"


@dataclass(frozen=True)
class TranscodeResult:
    """What :func:`transcode_file` did to one file.

    Attributes:
        src, dst: input and output paths.
        source_syntax: the source transfer syntax UID.
        shape, dtype: of the stored values (identical in both files).
        pixel_checksum: ``"blake2b-128:<hex>"`` of the stored values (C order, little-endian).
        bytes_in, bytes_out: file sizes.
        seconds: wall time (decode, encode, write, verify).
    """

    src: str
    dst: str
    source_syntax: str
    shape: tuple
    dtype: str
    pixel_checksum: str
    bytes_in: int
    bytes_out: int
    seconds: float


def pixel_checksum(pixels: np.ndarray) -> str:
    """``"blake2b-128:<hex>"`` of an array's values (C order, little-endian), its dtype and shape."""
    arr = np.ascontiguousarray(pixels)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.dtype.newbyteorder('<').str}{arr.shape}".encode())
    h.update(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
    return "blake2b-128:" + h.hexdigest()


def encode_htj2k(pixels: np.ndarray) -> bytes:
    """Encode a greyscale frame losslessly as an HTJ2K codestream (J2C, no JP2 box).

    Args:
        pixels: ``(rows, columns)`` uint8 / int8 / uint16 / int16 stored values.

    Returns:
        The codestream (starts with SOC ``FF4F``).
    """
    import imagecodecs

    arr = np.ascontiguousarray(pixels)
    if arr.ndim != 2 or arr.dtype.kind not in "ui" or arr.dtype.itemsize > 2:
        raise ValueError(f"HTJ2K transcode takes a 2-D 8/16-bit integer frame, got {arr.dtype} {arr.shape}")
    return bytes(imagecodecs.htj2k_encode(arr, level=0, reversible=True))


def htj2k_dataset(ds, codestream: bytes):
    """Turn a pydicom dataset (in place) into its HTJ2K-lossless version and return it.

    Pixel Data becomes the encapsulated ``codestream``; Extended Offset Tables are
    dropped; the file meta gets the HTJ2K transfer syntax and pydicom's
    implementation UID; every other element is left untouched.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

    for tag in _STREAM_TAGS:
        if tag in ds:
            del ds[tag]
    ds.PixelData = encapsulate([codestream])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    fm = FileMetaDataset(getattr(ds, "file_meta", None) or FileMetaDataset())
    fm.TransferSyntaxUID = UID(HTJ2K_SYNTAX)
    if "SOPClassUID" in ds:
        fm.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    fm.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"[:16]
    ds.file_meta = fm
    return ds


def _same_header(a, b) -> bool:
    keys = ("rows", "columns", "bits_allocated", "bits_stored", "pixel_representation", "photometric")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def transcode_file(
    src: str | os.PathLike, dst: str | os.PathLike, *, backend: str = "auto", verify_backend: str = "auto"
) -> TranscodeResult:
    """Transcode ``src`` to an HTJ2K-lossless DICOM at ``dst``, verified, atomically.

    Args:
        src: a single-frame greyscale DICOM in any syntax the backends decode.
        dst: the output file (its folder is created); replaced only after verification.
        backend: decode backend for the source (a registry name or ``"auto"``).
        verify_backend: decode backend for reading the written file back.

    Returns:
        A :class:`TranscodeResult`.

    Raises:
        DicomError: the source could not be read/decoded (names ``src``);
        TranscodeError / VerifyError / WriteError: encoding, verification or writing
        failed (``dst`` is left as it was; no temporary file remains).
    """
    t0 = time.perf_counter()
    src, dst = os.fspath(src), os.fspath(dst)
    dfile = read_dicom(src)
    dec = decode_pixels(dfile, backend)
    pixels = dec.pixels
    try:
        cs = encode_htj2k(pixels)
    except Exception as exc:
        raise TranscodeError(src, f"HTJ2K encode failed: {type(exc).__name__}: {exc}") from None
    ds = htj2k_dataset(dfile.ds, cs)

    def write(f) -> None:
        try:
            ds.save_as(f, enforce_file_format=True)
        except Exception as exc:
            raise WriteError(dst, f"cannot write: {type(exc).__name__}: {exc}") from None

    try:
        atomic_write(dst, write, verify=lambda tmp: _verify(tmp, dst, pixels, dec.meta, verify_backend))
    except OSError as exc:
        raise WriteError(
            dst, f"cannot write in {os.path.dirname(os.path.abspath(dst))}: {exc.strerror or exc}"
        ) from None
    return TranscodeResult(
        src=src,
        dst=dst,
        source_syntax=dec.meta.transfer_syntax,
        shape=tuple(pixels.shape),
        dtype=str(pixels.dtype),
        pixel_checksum=pixel_checksum(pixels),
        bytes_in=os.path.getsize(src),
        bytes_out=os.path.getsize(dst),
        seconds=round(time.perf_counter() - t0, 4),
    )


def _verify(tmp: str, dst: str, pixels: np.ndarray, meta, backend: str) -> None:
    try:
        back = decode_file(tmp, backend, fallback=True)
    except DicomError as exc:
        raise VerifyError(dst, f"the written HTJ2K file does not decode: {exc.reason}") from None
    if back.meta.transfer_syntax != HTJ2K_SYNTAX or not _same_header(back.meta, meta):
        raise VerifyError(dst, "the written file's header differs from the source")
    if back.pixels.dtype != pixels.dtype or back.pixels.shape != pixels.shape:
        raise VerifyError(dst, f"decoded {back.pixels.dtype} {back.pixels.shape}, source {pixels.dtype} {pixels.shape}")
    if not np.array_equal(back.pixels, pixels):
        n = int(np.count_nonzero(back.pixels != pixels))
        raise VerifyError(dst, f"decoded pixels differ from the source in {n} places (not lossless)")


def verify_htj2k_file(path: str | os.PathLike, checksum: str, *, backend: str = "auto") -> str | None:
    """Decode an HTJ2K file and compare its pixel checksum; None when it matches, else the reason."""
    try:
        dec = decode_file(path, backend)
    except DicomError as exc:
        return exc.reason
    except Exception as exc:  # pragma: no cover - decode_file wraps everything
        return as_dicom_error(os.fspath(path), exc).reason
    if dec.meta.transfer_syntax != HTJ2K_SYNTAX:
        return f"transfer syntax {dec.meta.transfer_syntax}, not HTJ2K lossless"
    got = pixel_checksum(dec.pixels)
    return None if got == checksum else "pixel checksum differs from the recorded one"
