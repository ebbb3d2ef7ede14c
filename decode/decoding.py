"""Decode one DICOM file to its stored values with a registry backend."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from .backends import BACKENDS, get_backend
from .dicom import DicomFile, read_dicom
from .errors import DicomError, UnsupportedDicomError, UsageError, as_dicom_error
from .liblog import capture, one_line
from .meta import DicomMeta

log = logging.getLogger(__name__)


@dataclass
class DecodedImage:
    """Stored pixel values of one frame, with the header and the backend that decoded it."""

    meta: DicomMeta
    pixels: np.ndarray  # (rows, columns), uint16 / int16 / uint8, exactly pydicom's pixel_array
    backend: str
    notes: tuple[str, ...] = field(default=())  # one line each: a fallback, what the libraries said
    fallback: str = ""  # why the chosen backend failed when pydicom decoded the file instead

    def all_notes(self) -> list[str]:
        """This file's notes: ignored header elements, what the libraries said, the decode's own."""
        lib = "; ".join(self.meta.library_messages)
        return [*self.meta.header_notes, *([f"while reading: {one_line(lib, 240)}"] if lib else []), *self.notes]


def decode_pixels(dfile: DicomFile, backend: str = "auto", *, fallback: bool = True) -> DecodedImage:
    """Decode an already-read :class:`DicomFile`.

    Args:
        dfile: from :func:`read_dicom`.
        backend: a registry name or ``"auto"``. A named backend that does not handle the
            file's transfer syntax is replaced by ``"auto"`` for this file only.
        fallback: when the chosen backend fails, retry this file with pydicom.

    Raises:
        DicomError: the file could not be decoded (the message names it).
        UsageError: ``backend`` is an unknown name or its libraries do not import.
    """
    ts = dfile.meta.transfer_syntax
    if not decodable_syntax(ts):
        raise UnsupportedDicomError(dfile.path, f"no decoder for transfer syntax {ts}")
    if dfile.meta.bits_allocated == 1:  # bit-packed data: only pydicom unpacks it
        backend = "pydicom"
    if backend != "auto" and backend in BACKENDS and not BACKENDS[backend].handles(ts):
        backend = "auto"
    chosen = get_backend(backend, ts)
    # library log records and warnings (pydicom logs each failed plugin with its
    # traceback) are kept here and summarised in the result or the error line
    with capture() as said:
        try:
            pixels = chosen.decode(dfile)
            name, notes = chosen.name, []
        except DicomError as first:
            if not fallback or chosen.name == "pydicom":
                raise _with_library_summary(first, said) from None
            try:
                pixels = BACKENDS["pydicom"].decode(dfile)
            except DicomError as second:
                reason = f"{first.reason}; pydicom fallback: {one_line(second.reason, 200)}"
                raise type(first)(first.path, reason) from None
            name, notes = "pydicom", [f"{chosen.name} failed ({first.reason}); decoded with pydicom instead"]
            log.info("%s: %s", dfile.path, notes[0])  # the result carries it (one line per file)
    if said:
        notes.append(f"{name}: {said.summary()}" if name == chosen.name else said.summary())
    return DecodedImage(dfile.meta, pixels, name, tuple(notes), notes[0] if name != chosen.name else "")


def _with_library_summary(err: DicomError, said) -> DicomError:
    """``err`` with what the libraries said appended, when that adds anything."""
    extra = said.summary(limit=1, width=160)
    if not extra or extra.split(": ", 1)[-1] in err.reason:
        return err
    return type(err)(err.path, f"{err.reason} [{extra}]")


def decodable_syntax(ts: str) -> bool:
    """Whether some backend here (or pydicom with its installed plugins) decodes ``ts``.

    The registry decides, not the header reader: :func:`decode.dicom.read_dicom` parses any
    syntax (as pydicom does) and decoding refuses the ones nothing here decodes.
    """
    if any(n != "pydicom" and b.handles(ts) and b.available() for n, b in BACKENDS.items()):
        return True
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(ts).is_available)
    except Exception:  # unknown UID, or pydicom has no decoder class for it
        return False


def decode_file(path: str | os.PathLike, backend: str = "auto", *, fallback: bool = True) -> DecodedImage:
    """Read and decode one file: its stored values, exactly as pydicom's ``pixel_array``.

    Raises:
        DicomError: a one-line reason naming ``path``; any other failure is wrapped too.
        UsageError: ``backend`` is an unknown name or its libraries do not import.
    """
    try:
        return decode_pixels(read_dicom(path), backend, fallback=fallback)
    except (DicomError, UsageError):  # a bad backend name is the caller's mistake, not the file's
        raise
    except Exception as exc:
        raise as_dicom_error(os.fspath(path), exc) from None
