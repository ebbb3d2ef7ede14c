"""JPEG 2000 / HTJ2K decoded at a reduced resolution level, through OpenJPEG (glymur).

A JPEG 2000 codestream is a wavelet pyramid: OpenJPEG can stop ``r`` levels early
(``opj_set_decoded_resolution_factor``, the ``cp_reduce`` decoder parameter,
``opj_decompress -r r``) and skip the entropy decoding of the finest subbands. The
result is the codestream's own ``1/2^r`` image (its LL band plus the DC shift): about
4× faster per level dropped. Neither imagecodecs' nor pylibjpeg's Python API exposes
the factor; glymur (a maintained ctypes binding of libopenjp2) does, as ``jp2k[::2**r, ::2**r]``.

Which libopenjp2, and how glymur finds it
    glymur looks its library up once, when it is imported: a ``glymurrc`` file first,
    then ``ctypes.util.find_library("openjp2")``. A fresh ``make venv`` has no system
    OpenJPEG and no glymurrc, but imagecodecs' wheel bundles libopenjp2 2.5.4 (the same
    build its full-resolution JPEG 2000 decoder uses, and new enough for HTJ2K). So glymur
    is imported here with ``find_library("openjp2")`` answering that bundled library
    (``RSNA_MAMMO_OPENJP2=PATH`` overrides it); a user's glymurrc still wins, as glymur
    documents. No config file is written, nothing is installed outside the venv, and
    the library is loaded before glymur sizes its ctypes structures by the library version.
    So code here imports glymur only through :func:`glymur_module` (a plain ``import glymur``
    earlier in the process would bind it to whatever it finds, or to nothing).

Bytes, not files
    glymur opens files by name. A DICOM codestream is handed over as an anonymous
    in-memory file (``memfd_create``, opened as ``/proc/self/fd/N``): no disk or
    ``/dev/shm`` space, no name to clean up, and the kernel frees it even when a hung
    worker is killed. Where memfd is missing, a temporary file is used and removed.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import glob
import logging
import os
import sys
import tempfile
import warnings
from functools import cache

import numpy as np

from .codestream import check_codestream, j2k_info
from .dicom import DicomFile
from .errors import CorruptDicomError
from .syntax import J2K_FAMILY

log = logging.getLogger(__name__)

#: Oldest OpenJPEG accepted (2.5 is the first to decode HTJ2K).
MIN_OPENJPEG = (2, 5, 0)
LIBRARY_ENV = "RSNA_MAMMO_OPENJP2"


class OpenJpegUnavailable(RuntimeError):
    """No usable glymur + libopenjp2 here (the message says why)."""


def bundled_openjpeg() -> str | None:
    """The libopenjp2 shipped inside imagecodecs' wheel (Linux, macOS, Windows layouts), or None."""
    import importlib.util

    spec = importlib.util.find_spec("imagecodecs")
    if spec is None or not spec.origin:
        return None
    pkg = os.path.dirname(spec.origin)
    site = os.path.dirname(pkg)
    patterns = (
        os.path.join(site, "imagecodecs.libs", "libopenjp2*.so*"),  # auditwheel (Linux)
        os.path.join(pkg, ".dylibs", "libopenjp2*.dylib"),  # delocate (macOS)
        os.path.join(site, "imagecodecs.libs", "openjp2*.dll"),  # delvewheel (Windows)
        os.path.join(pkg, "*openjp2*"),
    )
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def openjpeg_library() -> str | None:
    """The libopenjp2 glymur is pointed at: ``$RSNA_MAMMO_OPENJP2``, else imagecodecs' bundled one."""
    return os.environ.get(LIBRARY_ENV) or bundled_openjpeg()


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in str(text).split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


@cache
def glymur_module():
    """glymur, bound to OpenJPEG ≥ 2.5 (see the module docstring).

    Raises:
        OpenJpegUnavailable: glymur is not installed, or found no usable libopenjp2.
    """
    already = "glymur" in sys.modules
    path = openjpeg_library()
    real = ctypes.util.find_library
    if not already and path:

        def find_library(name: str):
            return path if name == "openjp2" else real(name)

        ctypes.util.find_library = find_library  # glymur.config binds this name when it is imported
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # glymur warns about libraries it may not need (libtiff)
            import glymur
    except ImportError as exc:
        raise OpenJpegUnavailable(f"glymur does not import: {exc}") from None
    finally:
        ctypes.util.find_library = real
    version = str(glymur.version.openjpeg_version)
    if _version_tuple(version) < MIN_OPENJPEG:
        how = "glymur was imported before it could be pointed at one" if already else f"looked at {path or 'none'}"
        raise OpenJpegUnavailable(
            f"glymur {glymur.__version__} found OpenJPEG {version}, need >= "
            f"{'.'.join(map(str, MIN_OPENJPEG))} ({how}; set {LIBRARY_ENV}=/path/to/libopenjp2.so)"
        )
    return glymur


def unavailable_reason() -> str | None:
    """Why reduced-resolution decoding cannot run here (None when it can)."""
    try:
        glymur_module()
    except OpenJpegUnavailable as exc:
        return str(exc)
    return None


def openjpeg_version() -> str | None:
    """The OpenJPEG version glymur uses, or None when unavailable."""
    try:
        return str(glymur_module().version.openjpeg_version)
    except OpenJpegUnavailable:
        return None


def handles(transfer_syntax: str) -> bool:
    """Whether a transfer syntax has resolution levels OpenJPEG can drop (JPEG 2000, HTJ2K)."""
    return transfer_syntax in J2K_FAMILY


@contextlib.contextmanager
def codestream_path(cs: bytes):
    """Yield a file name whose contents are ``cs`` (an in-memory file where the OS allows)."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("rsna-mammo-j2k", getattr(os, "MFD_CLOEXEC", 0))
        try:
            view = memoryview(cs)
            while view:
                view = view[os.write(fd, view) :]
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    f = tempfile.NamedTemporaryFile(prefix="rsna-mammo-", suffix=".j2k", delete=False)
    try:
        with f:
            f.write(cs)
        yield f.name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(f.name)


def _ceil_div_pow2(a: int, r: int) -> int:
    return -(-a // (1 << r))


class J2kCodestream:
    """One JPEG 2000 / HTJ2K codestream opened by OpenJPEG: its levels, and decodes at ``1/2^r``.

    Use as a context manager (the in-memory file lives until exit)::

        with J2kCodestream(cs, path) as j:
            thumb = j.read(min(3, j.levels))
    """

    def __init__(self, cs: bytes, path: str = "<memory>"):
        self.cs = cs
        self.path = path
        self._stack = contextlib.ExitStack()
        self._jp2 = None

    def __enter__(self) -> J2kCodestream:
        glymur = glymur_module()
        name = self._stack.enter_context(codestream_path(self.cs))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._jp2 = glymur.Jp2k(name)
            self.levels = self._levels()
        except Exception as exc:
            self._stack.close()
            raise CorruptDicomError(self.path, f"OpenJPEG cannot read the codestream header: {_why(exc)}") from None
        return self

    def __exit__(self, *exc) -> None:
        self._jp2 = None
        self._stack.close()

    def _levels(self) -> int:
        """Decomposition levels of component 0 in the main header (COD, overridden by a COC)."""
        segs = self._jp2.codestream.segment
        cod = next(s for s in segs if s.marker_id == "COD")
        levels = int(cod.num_res)
        for s in segs:
            if s.marker_id == "COC" and int(s.ccoc) == 0:
                levels = int(s.spcoc[0])
        return levels

    def shape_at(self, reduction: int) -> tuple[int, int]:
        """``(rows, columns)`` OpenJPEG returns at ``1/2^reduction`` (ceil of the reference grid)."""
        siz = self._jp2.codestream.segment[1]
        x0, y0, x1, y1 = int(siz.xosiz), int(siz.yosiz), int(siz.xsiz), int(siz.ysiz)
        r = reduction
        return _ceil_div_pow2(y1, r) - _ceil_div_pow2(y0, r), _ceil_div_pow2(x1, r) - _ceil_div_pow2(x0, r)

    def read(self, reduction: int) -> np.ndarray:
        """The image at ``1/2^reduction``: OpenJPEG's sample values, ``(ceil(H/2^r), ceil(W/2^r))``.

        Raises:
            ValueError: ``reduction`` is negative or above :attr:`levels`.
            CorruptDicomError: OpenJPEG failed.
        """
        if not 0 <= reduction <= self.levels:
            raise ValueError(f"reduction {reduction} outside 0..{self.levels} (the codestream's levels)")
        step = 1 << reduction
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = self._jp2[::step, ::step]
        except Exception as exc:
            raise CorruptDicomError(self.path, f"OpenJPEG could not decode at 1/{step}: {_why(exc)}") from None
        arr = np.asarray(arr)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.shape != self.shape_at(reduction):
            raise CorruptDicomError(
                self.path, f"OpenJPEG decoded {arr.shape} at 1/{step}, expected {self.shape_at(reduction)}"
            )
        return arr


def _why(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def conform_reduced(arr: np.ndarray, dfile: DicomFile) -> np.ndarray:
    """OpenJPEG's reduced output → pydicom's stored-value rules (dtype, sign), as at full size.

    The sign correction pydicom applies to JPEG 2000 (a codestream whose signedness
    differs from Pixel Representation is shifted by ``itemsize·8 − precision``) is
    applied the same way here.
    """
    meta = dfile.meta
    want = meta.dtype
    if arr.dtype != want:
        arr = arr.view(want) if arr.dtype.kind in "ui" and arr.dtype.itemsize == want.itemsize else arr.astype(want)
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:
        arr = arr.copy()
    info = j2k_info(dfile.codestream())
    signed = info.signed if info else bool(meta.pixel_representation)
    precision = info.precision if info else meta.bits_stored
    shift = 8 * arr.dtype.itemsize - precision
    if shift > 0 and signed != bool(meta.pixel_representation):
        np.left_shift(arr, shift, out=arr)
        np.right_shift(arr, shift, out=arr)
    return arr


def decode_reduced(dfile: DicomFile, reduction: int, *, stream: J2kCodestream | None = None) -> np.ndarray:
    """Stored values of ``dfile``'s frame at ``1/2^reduction`` (``opj_decompress -r reduction``).

    Args:
        dfile: a JPEG 2000 or HTJ2K file (:func:`handles` its transfer syntax).
        reduction: levels dropped, ``0 ≤ reduction ≤`` the codestream's levels.
        stream: an already open :class:`J2kCodestream` of this file (saves the header parse).

    Returns:
        ``(ceil(rows/2^r), ceil(columns/2^r))`` array of ``dfile.meta.dtype``, C-contiguous.

    Raises:
        DicomError: not a JPEG 2000 file, a header mismatch, or OpenJPEG failed (naming the file).
    """
    if not handles(dfile.transfer_syntax):
        raise CorruptDicomError(dfile.path, f"no resolution levels in transfer syntax {dfile.transfer_syntax}")
    check_codestream(dfile)
    if stream is not None:
        return conform_reduced(stream.read(reduction), dfile)
    with J2kCodestream(dfile.codestream(), dfile.path) as j:
        return conform_reduced(j.read(reduction), dfile)


__all__ = [
    "J2kCodestream",
    "OpenJpegUnavailable",
    "bundled_openjpeg",
    "codestream_path",
    "conform_reduced",
    "decode_reduced",
    "glymur_module",
    "handles",
    "openjpeg_library",
    "openjpeg_version",
    "unavailable_reason",
]
