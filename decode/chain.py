"""The preprocessing chain, once, for every device: VOI → box → crop → flip → resize+pad."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .crop import Box, breast_bbox, crop, flip_to_left
from .meta import DicomMeta
from .resize import resize_pad
from .voi import WindowParams, apply_voi

Stage = Literal["raw", "voi", "crop"]
STAGES = ("raw", "voi", "crop")

#: Bumped whenever the chain's output changes (caches made with another version are stale).
CHAIN_VERSION = 1


@dataclass
class Preprocessed:
    """Output of :func:`preprocess`: the image plus where it came from in the frame."""

    image: object  # (H, W) array: native dtype for "raw", float32 [0, 1] otherwise
    box: Box  # crop box in the original frame (full frame when not cropped)
    flipped: bool


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
) -> Preprocessed:
    """Run the chain on one decoded frame (numpy or CuPy; the result stays on that device).

    Args:
        raw: ``(rows, columns)`` stored values.
        meta: the header.
        stage: ``"raw"`` (stored values), ``"voi"`` (float32 [0, 1]) or ``"crop"``
            (VOI, breast box, crop, optional flip, optional resize+pad).
        size: ``(H, W)`` for resize with padding (``voi`` and ``crop`` stages).
        flip: mirror so every breast faces the same side (chest wall left).
        voi: replaces :func:`apply_voi` (``raw -> float32 [0, 1]``), e.g. the fused GPU kernel.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; allowed: {', '.join(STAGES)}")
    full = (0, raw.shape[0], 0, raw.shape[1])
    if stage == "raw":
        return Preprocessed(raw, full, False)
    img = voi(raw) if voi is not None else apply_voi(raw, meta, index=window_index, params=params)
    box, flipped = full, False
    if stage == "crop":
        box = breast_bbox(img)
        img = crop(img, box)
        if flip:
            img, flipped = flip_to_left(img)
    if size is not None:
        img = resize_pad(img, size)
    elif flipped:
        img = img.copy()
    return Preprocessed(img, box, flipped)


def parse_size(text: str) -> tuple[int, int]:
    """``"512x256"`` → ``(512, 256)`` (height × width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size {text!r} is not HxW, e.g. 512x256") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"size {text!r} must be positive")
    return h, w
