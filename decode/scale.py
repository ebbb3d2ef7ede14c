"""Decode scale: decode a JPEG 2000 frame only at the resolution the model needs.

``decode_scale`` (``--decode-scale``) of the crop stage:

=======  ==================================================================================
full     every frame at full resolution (exact stored values, as everywhere else)
1/2      JPEG 2000 / HTJ2K decoded one resolution level down (``1/4``: two), capped at
         the codestream's decomposition levels
auto     per image, the largest reduction whose breast crop is still at least the target
         size in both axes, so the final resize only ever shrinks: the header rules out
         what the frame itself cannot give, a 1/8 thumbnail (~15 ms) finds the breast box,
         and a crop that still comes out smaller than the target is decoded one level finer
=======  ==================================================================================

Lossless JPEG and uncompressed data have no resolution levels: always full; so is a JPEG 2000
codestream whose signedness differs from Pixel Representation (pydicom wraps its values
around, which no low-pass survives). Raw and VOI outputs are always full resolution. The
box is reported in full-resolution pixels.
"""

from __future__ import annotations

import logging
from typing import Literal

from .chain import Preprocessed, preprocess
from .codestream import j2k_info
from .crop import Box, breast_bbox, reduce_box
from .dicom import DicomFile
from .errors import DicomError, UsageError

log = logging.getLogger(__name__)

DecodeScale = Literal["auto", "full", "1/2", "1/4"]
DECODE_SCALES = ("auto", "full", "1/2", "1/4")
#: Levels dropped by each fixed scale.
FIXED_REDUCTION = {"full": 0, "1/2": 1, "1/4": 2}
#: The thumbnail ``auto`` finds the breast box on: 1/2**3 = 1/8.
THUMB_REDUCTION = 3
#: Backend name reported for frames decoded below full resolution.
REDUCED_BACKEND = "openjpeg"


def check_decode_scale(scale: str) -> str:
    """Validate a decode scale name and return it.

    Raises:
        UsageError: not one of :data:`DECODE_SCALES` (the message lists them).
    """
    if scale not in DECODE_SCALES:
        raise UsageError(f"unknown decode scale {scale!r}; allowed: {', '.join(DECODE_SCALES)}")
    return scale


def scale_name(reduction: int) -> str:
    """``0`` → ``"full"``, ``r`` → ``"1/2^r"`` (``"1/2"``, ``"1/4"``, ``"1/8"``...)."""
    return "full" if reduction == 0 else f"1/{1 << reduction}"


def require_reduced_decoder(scale: str) -> None:
    """Refuse a fixed reduced scale (``1/2``, ``1/4``) where OpenJPEG through glymur is unavailable.

    ``auto`` and ``full`` never raise: ``auto`` decodes at full resolution there (see
    :func:`effective_scale`).

    Raises:
        UsageError: the scale cannot be honoured here (the message says why).
    """
    check_decode_scale(scale)
    if FIXED_REDUCTION.get(scale, 0) == 0:
        return
    from .openjpeg import unavailable_reason

    why = unavailable_reason()
    if why:
        raise UsageError(f"decode scale {scale} needs OpenJPEG through glymur, which is unavailable here: {why}")


def effective_scale(scale: str) -> str:
    """The scale this process will honour: ``auto`` becomes ``full`` where reduced decoding is unavailable."""
    check_decode_scale(scale)
    if scale == "auto":
        from .openjpeg import unavailable_reason

        if unavailable_reason():
            return "full"
    return scale


def header_reduction(frame_shape: tuple[int, int], size: tuple[int, int], levels: int) -> int:
    """The largest ``r ≤ levels`` whose whole decoded frame, ``ceil(rows/2^r) × ceil(columns/2^r)``,
    is at least ``size`` in both axes (0 when even 1/2 is too small)."""
    rows, cols = frame_shape
    th, tw = size
    r = 0
    while r < levels and -(-rows // (2 << r)) >= th and -(-cols // (2 << r)) >= tw:
        r += 1
    return r


def crop_fits(box: Box, reduction: int, size: tuple[int, int], frame_shape: tuple[int, int]) -> bool:
    """Whether the crop of ``box`` (frame pixels) decoded at ``1/2^reduction`` is at least ``size`` in both axes."""
    s = 1 << reduction
    shape = (-(-frame_shape[0] // s), -(-frame_shape[1] // s))
    ry0, ry1, rx0, rx1 = reduce_box(box, reduction, shape)
    return ry1 - ry0 >= size[0] and rx1 - rx0 >= size[1]


def auto_reduction(dfile: DicomFile, stream, size: tuple[int, int]) -> int:
    """``auto``'s pick for one image: header first, then the breast box on a 1/8 thumbnail.

    Args:
        dfile: the file (JPEG 2000 / HTJ2K).
        stream: its open :class:`decode.openjpeg.J2kCodestream`.
        size: the target ``(H, W)``.
    """
    from .openjpeg import decode_reduced
    from .voi import apply_voi

    meta = dfile.meta
    r = header_reduction(meta.shape, size, stream.levels)
    thumb = min(THUMB_REDUCTION, stream.levels)
    if r == 0 or thumb <= r:  # nothing to choose, or the thumbnail would cost as much as the answer
        return r
    img = apply_voi(decode_reduced(dfile, thumb, stream=stream), meta)
    box = breast_bbox(img, frame_shape=meta.shape, reduction=thumb)
    # No safety margin for the thumbnail's coarser box: a guess one level too coarse costs one
    # decode at that level before the caller steps down, a guess too fine a decode 4x as slow.
    while r > 0 and not crop_fits(box, r, size, meta.shape):
        r -= 1
    return r


_WARNED: set[str] = set()


def _warn_once(key: str, msg: str, *args) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(msg, *args)


def reduced_chain(
    dfile: DicomFile, *, size, flip: bool, decode_scale: str, laterality: str = "content"
) -> tuple[Preprocessed | None, str | None]:
    """The crop stage below full resolution: ``(output, None)``; ``(None, None)`` when this file is
    decoded in full by design; ``(None, reason)`` when the reduced decode failed."""
    from .openjpeg import J2kCodestream, decode_reduced, handles, unavailable_reason

    meta = dfile.meta
    if not handles(meta.transfer_syntax) or meta.bits_allocated == 1:
        return None, None
    if decode_scale == "auto" and size is None:  # no target size: nothing tells how far to reduce
        return None, None
    info = j2k_info(dfile.codestream())
    if info is not None and info.signed != bool(meta.pixel_representation):
        # pydicom reinterprets such samples at the codestream precision (values wrap around): the
        # wavelet's low-pass of the codestream's values is no low-pass of the stored values
        return None, None
    why = unavailable_reason()
    if why:
        if decode_scale != "auto":
            raise UsageError(f"decode scale {decode_scale} needs OpenJPEG through glymur: {why}")
        _warn_once("unavailable", "decode scale auto: decoding at full resolution (%s)", why)
        return None, None
    try:
        with J2kCodestream(dfile.codestream(), dfile.path) as j:
            if decode_scale == "auto":
                r = auto_reduction(dfile, j, size)
            else:
                r = min(FIXED_REDUCTION[decode_scale], j.levels)
            while r > 0:
                raw = decode_reduced(dfile, r, stream=j)
                pre = preprocess(
                    raw,
                    meta,
                    stage="crop",
                    size=size,
                    flip=flip,
                    reduction=r,
                    frame_shape=meta.shape,
                    laterality=laterality,
                )
                if decode_scale != "auto" or crop_fits(pre.box, r, size, meta.shape):
                    return pre, None
                r -= 1  # the crop came out smaller than the target: one level finer
    except DicomError as exc:
        return None, exc.reason
    return None, None
