"""Read a DICOM file: header → :class:`DicomMeta`, and the frame's codestream.

Codestreams are taken from the encapsulated Pixel Data with
``pydicom.encaps.generate_frames``, never by searching bytes for a marker.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import CorruptDicomError, DicomError, UnreadableDicomError, UnsupportedDicomError
from .meta import DicomMeta, Lut

log = logging.getLogger(__name__)


@dataclass
class DicomFile:
    """A parsed DICOM file: its validated header and the pydicom dataset."""

    path: str
    meta: DicomMeta
    ds: object  # pydicom.Dataset

    @property
    def transfer_syntax(self) -> str:
        return self.meta.transfer_syntax

    def codestream(self) -> bytes:
        """The single frame's compressed codestream (encapsulated syntaxes only; cached)."""
        cs = self.__dict__.get("_codestream")
        if cs is None:
            cs = self.__dict__["_codestream"] = frame_codestream(self.ds, self.path)
        return cs

    def pixel_bytes(self) -> bytes:
        """The raw Pixel Data bytes (native syntaxes)."""
        return self.ds.PixelData


def _float_list(value) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return tuple(float(v) for v in value)
    return (float(value),)


def _lut_from_item(item, little_endian: bool, voi: bool) -> Lut | None:
    desc = list(item.LUTDescriptor)
    nr_entries = int(desc[0]) or 2**16
    first_map = int(desc[1])
    bits = int(desc[2])
    dtype = np.uint8 if (voi and bits == 8) else np.uint16
    elem = item["LUTData"]
    if elem.VR == "OW":
        raw = bytes(elem.value)
        data = np.frombuffer(raw[: 2 * nr_entries], dtype="<u2" if little_endian else ">u2").astype(np.uint16)
    else:
        value = elem.value
        data = np.asarray(list(value) if not isinstance(value, int) else [value])
    return Lut(first_map=first_map, bits=bits, data=data.astype(dtype))


def meta_from_dataset(ds, path: str) -> DicomMeta:
    """Build a validated :class:`DicomMeta` from a pydicom dataset.

    Raises:
        UnsupportedDicomError: the header describes something this project does not decode.
        CorruptDicomError: a required element is missing or malformed.
    """
    fm = getattr(ds, "file_meta", None)
    ts = str(getattr(fm, "TransferSyntaxUID", "") or "")
    if not ts:
        raise UnsupportedDicomError(path, "no Transfer Syntax UID in the file meta")
    if not decodable_syntax(ts):
        raise UnsupportedDicomError(path, f"no decoder for transfer syntax {ts}")
    try:
        from pydicom.uid import UID

        uid = UID(ts)
        little = uid.is_little_endian if uid.is_transfer_syntax else True
        modality_lut = voi_lut = None
        if ds.get("ModalityLUTSequence"):
            modality_lut = _lut_from_item(ds.ModalityLUTSequence[0], little, voi=False)
        if ds.get("VOILUTSequence"):
            voi_lut = _lut_from_item(ds.VOILUTSequence[0], little, voi=True)
        centers = _float_list(ds.get("WindowCenter"))
        widths = _float_list(ds.get("WindowWidth"))
        slope = ds.get("RescaleSlope")
        intercept = ds.get("RescaleIntercept")
        has_rescale = slope is not None and intercept is not None
        required = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation")
        missing = [k for k in required if ds.get(k) is None]
        if missing:
            raise CorruptDicomError(path, f"missing required element(s): {', '.join(missing)}")
        return DicomMeta(
            path=path,
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            bits_allocated=int(ds.BitsAllocated),
            bits_stored=int(ds.BitsStored),
            pixel_representation=int(ds.PixelRepresentation),
            photometric=str(ds.get("PhotometricInterpretation", "")).strip().upper(),
            transfer_syntax=ts,
            samples_per_pixel=int(ds.get("SamplesPerPixel", 1) if ds.get("SamplesPerPixel") is not None else 1),
            number_of_frames=int(ds.get("NumberOfFrames", 1) if ds.get("NumberOfFrames") not in (None, "") else 1),
            window_centers=centers,
            window_widths=widths,
            voi_lut_function=str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper(),
            voi_lut=voi_lut,
            rescale_slope=float(slope) if has_rescale else None,
            rescale_intercept=float(intercept) if has_rescale else None,
            modality_lut=modality_lut,
            patient_id=str(ds.get("PatientID", "") or ""),
            image_id=str(ds.get("InstanceNumber", "") or ""),
            laterality=str(ds.get("ImageLaterality", ds.get("Laterality", "")) or ""),
            view=str(ds.get("ViewPosition", "") or ""),
            has_pixel_data="PixelData" in ds,
        )
    except DicomError:
        raise
    except Exception as exc:  # malformed values (a DS that is not a number, ...)
        raise CorruptDicomError(path, f"malformed header: {type(exc).__name__}: {exc}") from None


def decodable_syntax(ts: str) -> bool:
    """Whether some backend here (or pydicom with its installed plugins) decodes ``ts``."""
    from .backends import BACKENDS

    if any(n != "pydicom" and b.handles(ts) and b.available() for n, b in BACKENDS.items()):
        return True
    try:
        from pydicom.pixels import get_decoder

        return bool(get_decoder(ts).is_available)
    except Exception:  # unknown UID, or pydicom has no decoder class for it
        return False


def read_dicom(path: str | os.PathLike) -> DicomFile:
    """Read and validate one DICOM file.

    Args:
        path: a file on disk.

    Returns:
        A :class:`DicomFile` with the validated :class:`DicomMeta` and the dataset.

    Raises:
        UnreadableDicomError: missing, empty, a directory, not DICOM, or a truncated header.
        UnsupportedDicomError / CorruptDicomError: see :func:`meta_from_dataset`.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = os.fspath(path)
    if os.path.isdir(path):
        raise UnreadableDicomError(path, "is a directory, not a file")
    if os.path.exists(path) and not os.path.isfile(path):
        raise UnreadableDicomError(path, "not a regular file (device, FIFO or socket)")
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise UnreadableDicomError(path, exc.strerror or str(exc)) from None
    if size == 0:
        raise UnreadableDicomError(path, "empty file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path)
    except InvalidDicomError:
        raise UnreadableDicomError(path, "not a DICOM file (no DICM preamble)") from None
    except OSError as exc:
        raise UnreadableDicomError(path, exc.strerror or str(exc)) from None
    except Exception as exc:  # truncated element, bad VR length, ...
        raise UnreadableDicomError(path, f"cannot parse header: {type(exc).__name__}: {exc}") from None
    for w in caught:
        text = str(w.message)
        if "End of file reached" in text or "truncated" in text.lower():
            raise CorruptDicomError(path, f"truncated file: {text.split(' in file ')[0]}")
    if len(ds) == 0:
        raise UnreadableDicomError(path, "no data elements after the file meta")
    return DicomFile(path=path, meta=meta_from_dataset(ds, path), ds=ds)


def frame_codestream(ds, path: str = "<memory>") -> bytes:
    """Return the codestream of the single frame of an encapsulated Pixel Data.

    Raises:
        CorruptDicomError: the encapsulation is broken or holds no frame.
    """
    from pydicom.encaps import generate_frames

    try:
        frames = generate_frames(ds.PixelData, number_of_frames=1)
        frame = next(frames)
    except StopIteration:
        raise CorruptDicomError(path, "encapsulated Pixel Data holds no frame") from None
    except Exception as exc:
        raise CorruptDicomError(path, f"broken encapsulated Pixel Data: {type(exc).__name__}: {exc}") from None
    if not frame:
        raise CorruptDicomError(path, "empty codestream")
    return bytes(frame)
