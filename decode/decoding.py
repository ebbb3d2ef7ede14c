"""Decode one DICOM file to its stored values with a registry backend."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from .backends import BACKENDS, get_backend
from .dicom import DicomFile, read_dicom
from .errors import DicomError, as_dicom_error
from .meta import DicomMeta

log = logging.getLogger(__name__)


@dataclass
class DecodedImage:
    """Stored pixel values of one frame, with the header and the backend that decoded it."""

    meta: DicomMeta
    pixels: np.ndarray  # (rows, columns), uint16 / int16 / uint8, exactly pydicom's pixel_array
    backend: str


def decode_pixels(dfile: DicomFile, backend: str = "auto", *, fallback: bool = True) -> DecodedImage:
    """Decode an already-read :class:`DicomFile`.

    Args:
        dfile: from :func:`read_dicom`.
        backend: a registry name or ``"auto"``. A named backend that does not handle the
            file's transfer syntax is replaced by ``"auto"`` for this file only.
        fallback: when the chosen backend fails, retry this file with pydicom.

    Raises:
        DicomError: the file could not be decoded (the message names it).
    """
    ts = dfile.meta.transfer_syntax
    if dfile.meta.bits_allocated == 1:  # bit-packed data: only pydicom unpacks it
        backend = "pydicom"
    if backend != "auto" and backend in BACKENDS and not BACKENDS[backend].handles(ts):
        backend = "auto"
    chosen = get_backend(backend, ts)
    try:
        return DecodedImage(dfile.meta, chosen.decode(dfile), chosen.name)
    except DicomError as first:
        if not fallback or chosen.name == "pydicom":
            raise
        try:
            pixels = BACKENDS["pydicom"].decode(dfile)
        except DicomError:
            raise first from None
        log.warning("%s: %s failed (%s); decoded with pydicom instead", dfile.path, chosen.name, first.reason)
        return DecodedImage(dfile.meta, pixels, "pydicom")


def decode_file(path: str | os.PathLike, backend: str = "auto", *, fallback: bool = True) -> DecodedImage:
    """Read and decode one file: its stored values, exactly as pydicom's ``pixel_array``.

    Raises:
        DicomError: a one-line reason naming ``path``; any other failure is wrapped too.
    """
    try:
        return decode_pixels(read_dicom(path), backend, fallback=fallback)
    except DicomError:
        raise
    except Exception as exc:
        raise as_dicom_error(os.fspath(path), exc) from None
