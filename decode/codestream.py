"""A frame's codestream header: J2K SIZ and JPEG SOF parsing, and its agreement with the DICOM header.

Pure byte parsing (``struct``), walking marker segments by their lengths, never a byte
search; :func:`check_codestream` refuses a codestream whose own header disagrees with the
DICOM header before any decoder sees it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import CorruptDicomError, UnsupportedDicomError

if TYPE_CHECKING:
    from .dicom import DicomFile


@dataclass(frozen=True)
class CodestreamInfo:
    """What a codestream's own header says: size, precision and sign."""

    rows: int
    columns: int
    components: int
    precision: int
    signed: bool
    codec: str  # "j2k" or "jpeg-lossless"


def j2k_info(cs: bytes) -> CodestreamInfo | None:
    """Parse the SIZ segment that must follow SOC at the start of a J2K codestream.

    Returns None when the stream does not start with SOC+SIZ (e.g. a JP2 wrapper).
    """
    if len(cs) < 43 or cs[:4] != b"\xff\x4f\xff\x51":
        return None
    (_lsiz, _rsiz, xsiz, ysiz, xo, yo, _xt, _yt, _xto, _yto, csiz) = struct.unpack(">HHIIIIIIIIH", cs[4:42])
    ssiz = cs[42]
    return CodestreamInfo(
        rows=ysiz - yo,
        columns=xsiz - xo,
        components=csiz,
        precision=(ssiz & 0x7F) + 1,
        signed=bool(ssiz & 0x80),
        codec="j2k",
    )


def jpeg_sof_info(cs: bytes) -> CodestreamInfo | None:
    """Walk JPEG marker segments from SOI to the first SOF and read it.

    Marker segments are walked by their lengths (never a byte search). Returns None when
    the stream is not a JPEG or no SOF precedes the scan.
    """
    if cs[:2] != b"\xff\xd8":
        return None
    i = 2
    # a SOF needs 10 bytes from its marker (marker, length, precision, rows, columns,
    # components) and markers only move forward: with fewer left, no SOF can follow
    while i + 10 <= len(cs):
        if cs[i] != 0xFF:
            return None
        marker = cs[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", cs[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            precision, rows, cols, comps = struct.unpack(">BHHB", cs[i + 4 : i + 10])
            return CodestreamInfo(
                rows=rows,
                columns=cols,
                components=comps,
                precision=precision,
                signed=False,
                codec="jpeg-lossless" if marker == 0xC3 else f"jpeg-sof{marker - 0xC0}",
            )
        if marker == 0xDA:
            return None
        i += 2 + length
    return None


def check_codestream(dfile: DicomFile) -> CodestreamInfo | None:
    """Refuse a codestream whose own header (J2K SIZ, JPEG SOF) disagrees with the DICOM header.

    Catches what a lenient decoder would otherwise turn into wrong pixels: other
    dimensions, colour components, a precision that does not fit Bits Allocated, or
    encapsulated data under a native transfer syntax.

    Returns:
        The parsed codestream header, or None for native data / an unparsable header.

    Raises:
        CorruptDicomError / UnsupportedDicomError naming the file.
    """
    from .syntax import J2K_FAMILY, LOSSLESS_JPEG, NATIVE_LE

    meta = dfile.meta
    if meta.transfer_syntax in NATIVE_LE and "PixelData" in dfile.ds and dfile.ds["PixelData"].is_undefined_length:
        raise CorruptDicomError(
            dfile.path, f"encapsulated Pixel Data under native transfer syntax {meta.transfer_syntax}"
        )
    if meta.transfer_syntax in J2K_FAMILY:
        info = j2k_info(dfile.codestream())
    elif meta.transfer_syntax in LOSSLESS_JPEG:
        info = jpeg_sof_info(dfile.codestream())
    else:
        return None
    if info is None:
        return None
    if info.components in (2, 3, 4):
        raise UnsupportedDicomError(
            dfile.path, f"codestream has {info.components} colour components; greyscale expected"
        )
    if info.components != 1 or not 1 <= info.precision <= 38:
        raise CorruptDicomError(
            dfile.path, f"garbage codestream header ({info.components} components, {info.precision}-bit)"
        )
    if (info.rows, info.columns) != meta.shape:
        raise CorruptDicomError(
            dfile.path, f"codestream is {info.rows}x{info.columns}, the header says {meta.rows}x{meta.columns}"
        )
    # J2K allows up to 38 bits; above 32 no DICOM container (Bits Allocated 8, 16, 32) holds them
    container = 8 if info.precision <= 8 else 16 if info.precision <= 16 else 32 if info.precision <= 32 else None
    if container != meta.bits_allocated:
        raise CorruptDicomError(
            dfile.path, f"codestream precision {info.precision} bits does not fit Bits Allocated {meta.bits_allocated}"
        )
    return info
