"""The backend record and the rules that make every backend return pydicom's values."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from ..codestream import check_codestream, j2k_info
from ..dicom import DicomFile
from ..errors import CorruptDicomError, DicomError
from ..syntax import J2K_FAMILY

ANY = "*"


@cache
def module_available(name: str) -> bool:
    """Whether ``name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Backend:
    """A CPU decode backend, described pydicom-plugin style.

    Attributes:
        name: registry key (``--backend NAME``).
        syntaxes: transfer syntax UIDs it decodes; ``{"*"}`` for anything pydicom decodes.
        requires: importable module names it needs.
        decode_fn: ``DicomFile -> ndarray`` of the frame (any integer dtype).
        description: one line for ``--help`` and ``env``.
    """

    name: str
    syntaxes: frozenset
    requires: tuple
    decode_fn: Callable[[DicomFile], np.ndarray] = field(repr=False)
    description: str = ""
    is_reference: bool = False  # output already follows pydicom's rules (pydicom itself)

    def available(self) -> bool:
        return all(module_available(m) for m in self.requires)

    def handles(self, transfer_syntax: str) -> bool:
        return ANY in self.syntaxes or transfer_syntax in self.syntaxes

    def decode(self, dfile: DicomFile) -> np.ndarray:
        """Decode ``dfile`` to its stored values, exactly as pydicom's ``pixel_array``.

        Returns:
            ``(rows, columns)`` array of ``dfile.meta.dtype`` (uint16 / int16 / uint8).

        Raises:
            CorruptDicomError: the codestream header or the decoder's output disagrees with
                the DICOM header, or the decoder failed.
            UnsupportedDicomError: the codestream holds colour components.
        """
        if not self.is_reference:
            check_codestream(dfile)
        try:
            arr = self.decode_fn(dfile)
        except DicomError:
            raise
        except Exception as exc:
            raise CorruptDicomError(dfile.path, f"{self.name} could not decode: {type(exc).__name__}: {exc}") from None
        if arr is None:
            raise CorruptDicomError(dfile.path, f"{self.name} returned no image")
        if self.is_reference:
            return check_shape(np.asarray(arr), dfile, self.name)
        return conform(arr, dfile, self.name)


def check_shape(arr: np.ndarray, dfile: DicomFile, backend: str) -> np.ndarray:
    """Raise unless ``arr`` has the header's rows × columns (a trailing 1 is dropped)."""
    meta = dfile.meta
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.shape != meta.shape:
        raise CorruptDicomError(
            dfile.path,
            f"{backend or 'decoder'} decoded {'x'.join(map(str, arr.shape))} pixels, "
            f"the header says {meta.rows}x{meta.columns}",
        )
    return arr


def conform(
    arr: np.ndarray,
    dfile: DicomFile,
    backend: str = "",
    j2k_signed: bool | None = None,
    j2k_precision: int | None = None,
) -> np.ndarray:
    """Bring a decoder's output to the stored values pydicom returns.

    pydicom's rules: JPEG 2000 output is sign-corrected when the codestream's signedness
    differs from Pixel Representation (shift by itemsize·8 − precision); every other
    syntax has the bits above Bits Stored cleared (unsigned) or sign-extended (signed).
    """
    meta = dfile.meta
    arr = check_shape(np.asarray(arr), dfile, backend)
    want = meta.dtype
    if arr.dtype != want:
        if arr.dtype.kind in "ui" and arr.dtype.itemsize == want.itemsize:
            arr = arr.view(want)
        else:
            arr = arr.astype(want)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr).copy()
    if meta.transfer_syntax in J2K_FAMILY:
        if j2k_signed is None or j2k_precision is None:
            info = j2k_info(dfile.codestream())
            j2k_signed = info.signed if info else bool(meta.pixel_representation)
            j2k_precision = info.precision if info else meta.bits_stored
        shift = 8 * arr.dtype.itemsize - j2k_precision
        if shift > 0 and j2k_signed != bool(meta.pixel_representation):
            np.left_shift(arr, shift, out=arr)
            np.right_shift(arr, shift, out=arr)
    else:
        shift = meta.bits_allocated - meta.bits_stored
        if shift > 0:
            np.left_shift(arr, shift, out=arr)
            np.right_shift(arr, shift, out=arr)
    return arr
