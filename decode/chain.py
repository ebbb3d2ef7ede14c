"""The preprocessing chain, once, for every device: VOI → box → crop → flip → resize+pad."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .crop import Box, breast_bbox, crop, needs_flip, reduce_box
from .errors import UsageError
from .laterality import LateralityCheck, check_laterality, check_laterality_source
from .meta import DicomMeta
from .padding import padding_mask
from .resize import resize_pad
from .voi import WindowParams, apply_voi, window_problem

Stage = Literal["raw", "voi", "crop"]
STAGES = ("raw", "voi", "crop")

#: Bumped whenever the chain's output changes (caches made with another version are stale).
#: 2: Pixel Padding is background for the breast box and 0 in the crop stage's output.
#: 3: a pixel exactly at the breast box's Otsu threshold is foreground (it was background); VOI LUT
#:    data beyond its descriptor's entry count is ignored, as pydicom does.
CHAIN_VERSION = 3


@dataclass
class Preprocessed:
    """Output of :func:`preprocess`: the image plus where it came from in the frame."""

    image: object  # (H, W) array: native dtype for "raw", float32 [0, 1] otherwise
    box: Box  # crop box in the original frame (full frame when not cropped)
    flipped: bool
    reduction: int = 0  # the frame was decoded at 1/2**reduction (JPEG 2000 resolution levels)
    laterality: LateralityCheck | None = None  # crop stage: header against content
    notes: list[str] = field(default_factory=list)  # one line each (laterality mismatch, ...)


def preprocess(
    raw,
    meta: DicomMeta | None,
    *,
    stage: Stage = "crop",
    size: tuple[int, int] | None = None,
    flip: bool = True,
    window_index: int = 0,
    params: WindowParams | None = None,
    voi: Callable | None = None,
    laterality: str = "content",
    reduction: int = 0,
    frame_shape: tuple[int, int] | None = None,
) -> Preprocessed:
    """Run the chain on one decoded frame (numpy or CuPy; the result stays on that device).

    Args:
        raw: ``(rows, columns)`` stored values, or for ``reduction > 0`` the frame decoded
            at ``1/2^reduction`` (:func:`decode.openjpeg.decode_reduced`).
        meta: the header (None: no padding, no header laterality).
        stage: ``"raw"`` (stored values), ``"voi"`` (float32 [0, 1]) or ``"crop"``
            (VOI, breast box, crop, optional flip, optional resize+pad).
        size: ``(H, W)`` for resize with padding (``voi`` and ``crop`` stages).
        flip: mirror so every breast faces the same side (chest wall left).
        voi: replaces :func:`apply_voi` (``raw -> float32 [0, 1]``), e.g. the fused GPU kernel.
        laterality: crop stage: which side decides the flip when the header's laterality
            and the image content disagree (``"content"`` or ``"header"``); the check is
            returned in ``laterality`` and a disagreement in ``notes`` either way.
        reduction: resolution levels ``raw`` lacks (``crop`` stage only; raw and VOI
            outputs are always full resolution). The box is found and reported in frame
            pixels, and the output fits ``size`` as the full-resolution crop would.
        frame_shape: ``(rows, columns)`` of the full frame (default ``meta.shape``) when
            ``reduction > 0``.

    The crop stage treats Pixel Padding (``meta.pixel_padding``) as background: left out
    of the breast box and its threshold, and 0 in the output. The voi stage is pydicom's
    VOI unchanged.
    """
    if stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    if reduction < 0 or (reduction and stage != "crop"):
        raise ValueError(f"reduction {reduction}: only the crop stage decodes below full resolution")
    check_laterality_source(laterality)
    frame = raw.shape
    if reduction:
        frame = tuple(frame_shape) if frame_shape is not None else meta.shape
    full = (0, frame[0], 0, frame[1])
    if stage == "raw":
        return Preprocessed(raw, full, False)
    img = voi(raw) if voi is not None else apply_voi(raw, meta, index=window_index, params=params)
    box, flipped, lat = full, False, None
    notes = [n for n in [window_problem(meta, window_index) if meta is not None else None] if n]
    if stage == "crop":
        pad = padding_mask(raw, meta)
        if pad is not None:
            img[pad] = 0  # padding is background
        box = breast_bbox(img, background=pad, frame_shape=frame if reduction else None, reduction=reduction)
        img = crop(img, reduce_box(box, reduction, img.shape) if reduction else box)
        lat = check_laterality(meta, "right" if needs_flip(img) else "left", laterality)
        if lat.note():
            notes.append(lat.note())
        if flip and lat.side == "right":
            img, flipped = img[:, ::-1], True
    if size is not None:
        img = resize_pad(img, size, fit_shape=(box[1] - box[0], box[3] - box[2]) if reduction else None)
    elif flipped:
        img = img.copy()
    return Preprocessed(img, box, flipped, reduction, lat, notes)


def parse_size(value) -> tuple[int, int]:
    """``"512x256"``, ``[512, 256]`` or ``(512, 256)`` → ``(512, 256)`` (height × width).

    Raises:
        UsageError: not two integers, or one of them is not positive.
    """
    try:
        parts = value.lower().split("x") if isinstance(value, str) else list(value)
        h, w = (int(v) for v in parts)
    except (TypeError, ValueError):
        raise UsageError(f"size {value!r} is not HxW, e.g. 512x256") from None
    if h <= 0 or w <= 0:
        raise UsageError(f"size {value!r} must be positive")
    return h, w
