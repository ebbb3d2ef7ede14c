"""Transfer syntax UIDs this project names, grouped by codec."""

from __future__ import annotations

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
JPEG_LOSSLESS_P14 = "1.2.840.10008.1.2.4.57"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
JPEG2000 = "1.2.840.10008.1.2.4.91"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_LOSSLESS_RPCL = "1.2.840.10008.1.2.4.202"
HTJ2K = "1.2.840.10008.1.2.4.203"

NATIVE_LE = frozenset({EXPLICIT_LE, IMPLICIT_LE, DEFLATED_LE})
LOSSLESS_JPEG = frozenset({JPEG_LOSSLESS_P14, JPEG_LOSSLESS_SV1})
J2K_FAMILY = frozenset({JPEG2000_LOSSLESS, JPEG2000, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K})
HTJ2K_FAMILY = frozenset({HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, HTJ2K})

SHORT_NAMES = {
    EXPLICIT_LE: "explicit-le",
    IMPLICIT_LE: "implicit-le",
    DEFLATED_LE: "deflated-le",
    EXPLICIT_BE: "explicit-be",
    JPEG_LOSSLESS_P14: "jpeg-ll-p14",
    JPEG_LOSSLESS_SV1: "jpeg-ll-sv1",
    JPEG2000_LOSSLESS: "j2k-lossless",
    JPEG2000: "j2k",
    HTJ2K_LOSSLESS: "htj2k-lossless",
    HTJ2K_LOSSLESS_RPCL: "htj2k-rpcl",
    HTJ2K: "htj2k",
}


def short_name(uid: str) -> str:
    """A short readable name for a transfer syntax UID (the UID itself when unknown)."""
    return SHORT_NAMES.get(str(uid), str(uid))
