"""The CPU decode functions, one per library. Each takes a :class:`DicomFile`."""

from __future__ import annotations

import numpy as np

from ..dicom import DicomFile
from ..errors import CorruptDicomError
from ..syntax import HTJ2K_FAMILY, J2K_FAMILY, LOSSLESS_JPEG


def decode_native(dfile: DicomFile) -> np.ndarray:
    """Uncompressed little-endian Pixel Data, read straight from the buffer."""
    meta = dfile.meta
    data = dfile.pixel_bytes()
    need = meta.rows * meta.columns * meta.dtype.itemsize
    if len(data) < need:
        raise CorruptDicomError(dfile.path, f"Pixel Data has {len(data)} bytes, {need} expected (truncated)")
    arr = np.frombuffer(data, dtype=meta.dtype.newbyteorder("<"), count=meta.rows * meta.columns)
    return arr.reshape(meta.shape).astype(meta.dtype, copy=True)


def decode_imagecodecs(dfile: DicomFile) -> np.ndarray:
    """JPEG 2000 (OpenJPEG), HTJ2K (OpenJPH) and lossless JPEG (libjpeg-turbo 3)."""
    import imagecodecs

    ts = dfile.transfer_syntax
    cs = dfile.codestream()
    if ts in HTJ2K_FAMILY:
        return imagecodecs.htj2k_decode(cs)
    if ts in J2K_FAMILY:
        return imagecodecs.jpeg2k_decode(cs)
    if ts in LOSSLESS_JPEG:
        # libjpeg-turbo 3: all predictors, 2-16 bits, faster than liblj92 on full-size SV1
        # images. liblj92 (imagecodecs.ljpeg_decode) is never used: it segfaults on some
        # corrupt streams (found by the fuzz corpus).
        return imagecodecs.jpeg8_decode(cs)
    raise CorruptDicomError(dfile.path, f"imagecodecs backend cannot decode transfer syntax {ts}")


def decode_pylibjpeg(dfile: DicomFile) -> np.ndarray:
    """JPEG 2000 / HTJ2K through pylibjpeg-openjpeg, lossless JPEG through pylibjpeg-libjpeg."""
    ts = dfile.transfer_syntax
    cs = dfile.codestream()
    if ts in J2K_FAMILY:
        import openjpeg

        return openjpeg.decode(cs)
    if ts in LOSSLESS_JPEG:
        import libjpeg

        return libjpeg.decode(cs)
    raise CorruptDicomError(dfile.path, f"pylibjpeg backend cannot decode transfer syntax {ts}")


def decode_dicomsdl(dfile: DicomFile) -> np.ndarray:
    """dicomsdl reads the file itself and returns stored values (``storedvalue=True``)."""
    import dicomsdl

    dset = dicomsdl.open(dfile.path)
    arr = dset.pixelData(storedvalue=True)
    return np.asarray(arr)


def decode_pydicom(dfile: DicomFile) -> np.ndarray:
    """pydicom's own ``pixel_array``: the reference, and the fallback for any syntax."""
    return dfile.ds.pixel_array
