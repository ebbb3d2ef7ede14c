"""Decode backends behind a small registry, pydicom-plugin style.

Each backend states which transfer syntaxes it decodes and which modules it needs;
``backend="auto"`` picks, per transfer syntax, the first available entry of
:data:`AUTO_ORDER` (the exact backends, fastest first as ``rsna-mammo bench decode``
measures them per codec). dicomsdl is not in it: it segfaults on some corrupt streams,
so it runs only when named (``rsna-mammo decode`` and the loader run decoders in worker
processes by default, where a crash costs one file; a direct :func:`get_backend` call runs
it in the caller's process). pydicom's ``pixel_array`` is the universal fallback.
"""

from __future__ import annotations

from ..errors import UsageError
from ..syntax import HTJ2K_FAMILY, J2K_FAMILY, LOSSLESS_JPEG, NATIVE_LE
from .base import ANY, Backend, conform, module_available
from .codecs import decode_dicomsdl, decode_imagecodecs, decode_native, decode_pydicom, decode_pylibjpeg

_CODEC_SYNTAXES = frozenset(J2K_FAMILY | LOSSLESS_JPEG)

BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend(
            "native",
            frozenset({"1.2.840.10008.1.2.1", "1.2.840.10008.1.2"}),
            ("numpy",),
            decode_native,
            "uncompressed little-endian, read directly",
        ),
        Backend(
            "imagecodecs",
            _CODEC_SYNTAXES,
            ("imagecodecs",),
            decode_imagecodecs,
            "JPEG 2000 (OpenJPEG), HTJ2K (OpenJPH), lossless JPEG (libjpeg-turbo; never liblj92)",
        ),
        Backend(
            "pylibjpeg",
            _CODEC_SYNTAXES,
            ("openjpeg", "libjpeg"),
            decode_pylibjpeg,
            "pylibjpeg-openjpeg for JPEG 2000 / HTJ2K, pylibjpeg-libjpeg for lossless JPEG",
        ),
        Backend(
            "dicomsdl",
            frozenset((_CODEC_SYNTAXES - HTJ2K_FAMILY) | (NATIVE_LE - {"1.2.840.10008.1.2.1.99"})),
            ("dicomsdl",),
            decode_dicomsdl,
            "dicomsdl reads and decodes the file itself (no HTJ2K)",
        ),
        Backend(
            "pydicom",
            frozenset({ANY}),
            ("pydicom",),
            decode_pydicom,
            "pydicom pixel_array: the reference and universal fallback",
            is_reference=True,
        ),
    )
}

#: Preference for ``backend="auto"``: the first available backend that handles the syntax
#: (dicomsdl only by name: see the module docstring).
AUTO_ORDER: list[str] = ["native", "imagecodecs", "pylibjpeg", "pydicom"]


def register_backend(backend: Backend, *, first: bool = False) -> None:
    """Add (or replace) a backend; ``first=True`` makes ``auto`` prefer it, else it goes just before pydicom."""
    BACKENDS[backend.name] = backend
    if backend.name in AUTO_ORDER:
        AUTO_ORDER.remove(backend.name)
    AUTO_ORDER.insert(0 if first else len(AUTO_ORDER) - 1, backend.name)


def available_backends() -> list[str]:
    """Names of the backends whose dependencies import here."""
    return [n for n, b in BACKENDS.items() if b.available()]


def get_backend(name: str, transfer_syntax: str) -> Backend:
    """Resolve ``name`` (or ``"auto"``) to a backend that decodes ``transfer_syntax``.

    Raises:
        UsageError: unknown name (the message lists the allowed values)
            or the named backend is unavailable / does not handle the syntax.
    """
    if name == "auto":
        for n in AUTO_ORDER:
            b = BACKENDS[n]
            if b.handles(transfer_syntax) and b.available():
                return b
        return BACKENDS["pydicom"]
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}; allowed: auto, {', '.join(BACKENDS)}")
    b = BACKENDS[name]
    if not b.available():
        raise UsageError(f"backend {name!r} is not available: needs {', '.join(b.requires)}")
    if not b.handles(transfer_syntax):
        raise UsageError(f"backend {name!r} does not decode transfer syntax {transfer_syntax}")
    return b


__all__ = [
    "ANY",
    "AUTO_ORDER",
    "BACKENDS",
    "Backend",
    "available_backends",
    "conform",
    "get_backend",
    "module_available",
    "register_backend",
]
