"""Read a DICOM file: header → :class:`DicomMeta`, and the frame's codestream.

Codestreams are taken from the encapsulated Pixel Data with
``pydicom.encaps.generate_frames``, never by searching bytes for a marker.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .errors import CorruptDicomError, DicomError, UnreadableDicomError, UnsupportedDicomError
from .liblog import capture, one_line
from .meta import DicomMeta, Lut


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


def _name(keyword: str) -> str:
    """DICOM's name of an element (``WindowCenter`` → ``Window Center``)."""
    from pydicom.datadict import dictionary_description, tag_for_keyword

    tag = tag_for_keyword(keyword)
    return dictionary_description(tag) if tag is not None else keyword


def _items(ds, keyword: str) -> list:
    """The element's values as a list; ``[]`` when it is absent or present but empty.

    Bytes are a text element's value as stored: when pydicom cannot convert the element
    (a value of the wrong length, a DS that is not a number under pydicom's RAISE
    validation mode) it rejects the whole element, and an element written with a binary
    VR (OB, UN kept as UN) is not converted at all. Their text is split here, so each
    value is judged on its own. Not for binary data (LUT Data as OW).
    """
    if keyword not in ds:
        return []
    try:
        value = ds[keyword].value
    except Exception:
        value = ds.get_item(keyword).value  # the undecoded bytes
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
        return value.split("\\") if value.strip() else []
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return list(value)
    return [value]


def _numbers(ds, keyword: str, notes: list, kind=float) -> tuple:
    """Positional numbers of a DS / IS / US / SS element (empty values are ``None``).

    Type-2 elements come present but empty in real files (``""``, ``"\\2048"``,
    ``"2048\\"``): an empty value is absent, as pydicom treats it. A value that is not a
    number (or is NaN) is also ``None``, with a note saying so. ``()`` when no value is usable.
    """
    out = []
    for v in _items(ds, keyword):
        text = str(v)
        if v is None or not text.strip():
            out.append(None)
            continue
        try:
            x = float(text) if kind is float else int(text)
            if kind is float and np.isnan(x):  # ±inf is a number pydicom computes with; NaN is not
                raise ValueError(text)
        except (TypeError, ValueError):
            what = "a number" if kind is float else "an integer"
            notes.append(f"{_name(keyword)} value {text.strip()!r} is not {what}; ignored")
            out.append(None)
            continue
        out.append(x)
    return tuple(out) if any(x is not None for x in out) else ()


def _texts(ds, keyword: str) -> tuple[str, ...]:
    """A string element's values, stripped; ``()`` when absent, empty or unreadable."""
    try:
        return tuple(str(v).strip() for v in _items(ds, keyword))
    except Exception:
        return ()


def _text(ds, keyword: str) -> str:
    """A string element's first value, stripped; ``""`` when absent, empty or unreadable."""
    values = _texts(ds, keyword)
    return values[0] if values else ""


def _lut_from_sequence(ds, keyword: str, little_endian: bool, voi: bool, notes: list) -> Lut | None:
    """The LUT of the sequence's first item; ``None`` when it is absent, empty or unusable.

    An item whose LUT Descriptor or LUT Data is empty is absent (pydicom's
    ``apply_voi_lut`` skips it too); a malformed one is ignored with a note, and so is a
    sequence pydicom cannot parse or an element of another VR: raw decoding needs no LUT.
    """
    from pydicom.sequence import Sequence

    name = _name(keyword)
    try:
        seq = ds.get(keyword)
        if seq and not isinstance(seq, Sequence):
            raise TypeError(f"VR {ds[keyword].VR}, not SQ")
        return _lut_from_item(seq[0], name, little_endian, voi, notes) if seq else None
    except Exception as exc:
        notes.append(f"{name} cannot be read ({type(exc).__name__}: {one_line(exc)}); ignored")
        return None


def _lut_from_item(item, name: str, little_endian: bool, voi: bool, notes: list) -> Lut | None:
    """:func:`_lut_from_sequence` for one sequence item."""
    desc = _numbers(item, "LUTDescriptor", notes, int)
    elem = item["LUTData"] if "LUTData" in item else None
    if not desc or elem is None or elem.is_empty:
        return None
    if len(desc) != 3 or None in desc:
        notes.append(f"{name}: LUT Descriptor has {len(desc)} values, 3 expected; ignored")
        return None
    nr_entries = int(desc[0]) or 2**16
    first_map, bits = int(desc[1]), int(desc[2])
    if voi and not (bits == 8 or 10 <= bits <= 16):
        notes.append(f"{name}: {bits} bits per LUT entry (allowed: 8, 10-16); ignored")
        return None
    if not 1 <= bits <= 16:
        notes.append(f"{name}: {bits} bits per LUT entry (allowed: 1-16); ignored")
        return None
    if elem.VR == "OW":
        raw = bytes(elem.value)
        if len(raw) < 2 * nr_entries:
            notes.append(f"{name}: LUT Data holds {len(raw) // 2} entries, the descriptor says {nr_entries}; ignored")
            return None
        data = np.frombuffer(raw[: 2 * nr_entries], dtype="<u2" if little_endian else ">u2").astype(np.uint16)
    else:
        data_items = _items(item, "LUTData")
        if len(data_items) < nr_entries:
            notes.append(f"{name}: LUT Data holds {len(data_items)} entries, the descriptor says {nr_entries}; ignored")
            return None
        # entries past the descriptor's count are never looked up (pydicom clips to it)
        data = np.asarray([int(v) for v in data_items[:nr_entries]])
    dtype = np.uint8 if (voi and bits == 8) else np.uint16
    return Lut(first_map=first_map, bits=bits, data=data.astype(dtype))


def _voi_fields(ds, little_endian: bool, notes: list) -> dict:
    """Modality LUT / rescale and VOI LUT / window: never raises (raw needs none of them)."""
    from .meta import VOI_FUNCTIONS

    centers = _numbers(ds, "WindowCenter", notes)
    widths = _numbers(ds, "WindowWidth", notes)
    func = _text(ds, "VOILUTFunction").upper() or "LINEAR"
    if func not in VOI_FUNCTIONS:
        if centers or widths:
            notes.append(
                f"VOI LUT Function {func!r} is not one of {', '.join(VOI_FUNCTIONS)} "
                "(pydicom refuses it); the window is ignored"
            )
        centers, widths, func = (), (), "LINEAR"
    slope = _numbers(ds, "RescaleSlope", notes)
    intercept = _numbers(ds, "RescaleIntercept", notes)
    has_rescale = bool(slope) and bool(intercept) and slope[0] is not None and intercept[0] is not None
    return dict(
        window_centers=centers,
        window_widths=widths,
        voi_lut_function=func,
        voi_lut=_lut_from_sequence(ds, "VOILUTSequence", little_endian, True, notes),
        rescale_slope=float(slope[0]) if has_rescale else None,
        rescale_intercept=float(intercept[0]) if has_rescale else None,
        modality_lut=_lut_from_sequence(ds, "ModalityLUTSequence", little_endian, False, notes),
    )


def _padding(ds, pixel_representation: int, bits_allocated: int, notes: list) -> tuple | None:
    """Pixel Padding Value (0028,0120) [… Pixel Padding Range Limit (0028,0121)] as ``(lo, hi)``.

    Both are stored values (before any modality LUT); the range is inclusive and its
    ends may come in either order. A value written as US for signed data is read back
    as the signed value of the same bits.
    """
    value = _numbers(ds, "PixelPaddingValue", notes, int)
    limit = _numbers(ds, "PixelPaddingRangeLimit", notes, int)
    if not value or value[0] is None:
        if limit:
            notes.append("Pixel Padding Range Limit without Pixel Padding Value; ignored")
        return None

    def signed(v: int) -> int:
        top = 1 << max(8, bits_allocated)
        return v - top if pixel_representation and v >= top // 2 else v

    a = signed(int(value[0]))
    b = signed(int(limit[0])) if limit and limit[0] is not None else a
    return (min(a, b), max(a, b))


def _required_int(ds, keyword: str, path: str) -> int:
    """The first value of a required element that is present (the caller refuses absent ones)."""
    values = _numbers(ds, keyword, [], int)
    if not values or values[0] is None:
        raise CorruptDicomError(path, f"{_name(keyword)} {str(_items(ds, keyword)[0]).strip()!r} is not an integer")
    return int(values[0])


def meta_from_dataset(ds, path: str) -> DicomMeta:
    """Build a validated :class:`DicomMeta` from a pydicom dataset.

    Only the elements that raw decoding needs can refuse a file. Elements present but
    empty are absent (as pydicom treats them); a malformed VOI, modality, padding or
    laterality element is ignored and named in ``header_notes``, so stored values always
    decode and the VOI stage falls back as it would without that element.

    Raises:
        UnsupportedDicomError: the header describes something this project does not decode.
        CorruptDicomError: a required element is missing or malformed.
    """
    fm = getattr(ds, "file_meta", None)
    ts = str(getattr(fm, "TransferSyntaxUID", "") or "")
    if not ts:
        raise UnsupportedDicomError(path, "no Transfer Syntax UID in the file meta")
    try:
        from pydicom.uid import UID

        uid = UID(ts)
        little = uid.is_little_endian if uid.is_transfer_syntax else True
        required = ("Rows", "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation")
        missing = [k for k in required if not _items(ds, k)]
        if missing:
            raise CorruptDicomError(path, f"missing required element(s): {', '.join(missing)}")
        rows, columns, bits_allocated, bits_stored, pixel_representation = (
            _required_int(ds, k, path) for k in required
        )
        notes: list[str] = []
        frames = _numbers(ds, "NumberOfFrames", [], int)
        if _items(ds, "NumberOfFrames") and not frames:
            raise CorruptDicomError(path, f"Number of Frames {_text(ds, 'NumberOfFrames')!r} is not an integer")
        spp = _numbers(ds, "SamplesPerPixel", [], int)
        voi = _voi_fields(ds, little, notes)
        laterality = (_text(ds, "ImageLaterality") or _text(ds, "Laterality")).upper()
        return DicomMeta(
            path=path,
            rows=rows,
            columns=columns,
            bits_allocated=bits_allocated,
            bits_stored=bits_stored,
            pixel_representation=pixel_representation,
            photometric=_text(ds, "PhotometricInterpretation").upper(),
            transfer_syntax=ts,
            samples_per_pixel=int(spp[0]) if spp and spp[0] is not None else 1,
            number_of_frames=int(frames[0]) if frames and frames[0] is not None else 1,
            **voi,
            patient_id=_text(ds, "PatientID"),
            image_id=_text(ds, "InstanceNumber"),
            laterality=laterality,
            view=_text(ds, "ViewPosition"),
            has_pixel_data="PixelData" in ds,
            pixel_padding=_padding(ds, pixel_representation, bits_allocated, notes),
            presentation_intent=_text(ds, "PresentationIntentType").upper(),
            patient_orientation=tuple(v.upper() for v in _texts(ds, "PatientOrientation")),
            header_notes=tuple(notes),
        )
    except DicomError:
        raise
    except Exception as exc:  # anything else unexpected in a required element
        raise CorruptDicomError(path, f"malformed header: {type(exc).__name__}: {exc}") from None


def read_dicom(path: str | os.PathLike) -> DicomFile:
    """Read and validate one DICOM file.

    Args:
        path: a file on disk.

    Returns:
        A :class:`DicomFile` with the validated :class:`DicomMeta` and the dataset.

    Raises:
        UnreadableDicomError: missing, empty, a directory, not DICOM, or a truncated header.
        CorruptDicomError: pydicom read the file but said it is truncated.
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
    # pydicom's warnings and log records go to the capture (one line each, no traceback);
    # the header elements are converted inside it too, so their warnings land there as well
    with capture() as said:
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            raise UnreadableDicomError(path, "not a DICOM file (no DICM preamble)") from None
        except OSError as exc:
            raise UnreadableDicomError(path, exc.strerror or str(exc)) from None
        except Exception as exc:  # truncated element, bad VR length, ...
            raise UnreadableDicomError(path, f"cannot parse header: {type(exc).__name__}: {exc}") from None
        # pydicom turns the EOFError of a file cut inside an undefined length into the warning
        # "End of file reached before delimiter ... in file <path>" and reads on
        for line in said.lines:
            if "end of file reached" in line.lower():
                text = line.partition(": ")[2].split(" in file ")[0]  # a captured line is "source: text"
                raise CorruptDicomError(path, f"truncated file: {text}")
        if len(ds) == 0:
            raise UnreadableDicomError(path, "no data elements after the file meta")
        meta = meta_from_dataset(ds, path)
    if said:
        meta = meta.replace(library_messages=tuple(said.lines))
    return DicomFile(path=path, meta=meta, ds=ds)


def frame_codestream(ds, path: str = "<memory>") -> bytes:
    """Return the codestream of the single frame of an encapsulated Pixel Data.

    Raises:
        CorruptDicomError: the encapsulation is broken or holds no frame.
    """
    from pydicom.encaps import generate_frames

    try:
        # with number_of_frames=1 pydicom always yields one frame (b"" when there is no item)
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as exc:
        raise CorruptDicomError(path, f"broken encapsulated Pixel Data: {type(exc).__name__}: {exc}") from None
    if not frame:
        raise CorruptDicomError(path, "empty codestream")
    return bytes(frame)
