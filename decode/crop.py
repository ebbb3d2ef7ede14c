"""Breast box, crop and flip on a [0, 1] image (numpy or CuPy).

The box comes from an Otsu threshold on a strided thumbnail, then row/column
profiles: the longest run of columns (then rows, inside those columns) whose
foreground fraction exceeds ``min_fraction``. Small bright labels separated from the
breast by background fall outside that run. Nothing found → the full frame.
"""

from __future__ import annotations

import numpy as np

from .xp import array_module, to_host

Box = tuple[int, int, int, int]  # y0, y1, x0, x1 (half-open)


def otsu_threshold(img, bins: int = 256, xp=None, *, background=None) -> float:
    """Otsu's threshold of a [0, 1] image (host float); ``background`` pixels (bool mask) are left out."""
    xp = xp or array_module(img)
    values = img if background is None else img[~background]
    hist = to_host(xp.histogram(values, bins=bins, range=(0.0, 1.0))[0]).astype(np.float64)
    total = hist.sum()
    if total == 0:
        return 0.5
    # The split is unchanged by an affine map of the values: bin indices stand in for the bin
    # centres, and the moments stay exact integers.
    w0 = np.cumsum(hist)
    w1 = total - w0
    m0 = np.cumsum(hist * np.arange(bins))
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m0 * total) ** 2 / (w0 * w1)  # total² × the between-class variance
    between[~np.isfinite(between)] = -1  # no split: an empty class
    k = int(np.argmax(between))
    return float((k + 1) / bins)


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """[start, stop) of the longest run of True; (0, 0) when there is none."""
    best, start, best_run = 0, None, (0, 0)
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if i - start > best:
                best, best_run = i - start, (start, i)
            start = None
    return best_run


def breast_bbox(
    img,
    *,
    thumb: int = 256,
    min_fraction: float = 0.02,
    margin: float = 0.02,
    background=None,
    frame_shape: tuple[int, int] | None = None,
    reduction: int = 0,
) -> Box:
    """Bounding box of the breast in a [0, 1] image (background dark, tissue bright).

    Args:
        img: ``(H, W)`` float image in [0, 1] after VOI and MONOCHROME1 inversion.
        background: optional ``(H, W)`` bool, True where a pixel is known background
            (Pixel Padding): left out of the Otsu histogram and never foreground.
        thumb: longest side of the thumbnail the threshold is computed on.
        min_fraction: a row/column belongs to the breast above this foreground fraction.
        margin: added on every side, as a fraction of the box size.
        frame_shape: ``(rows, columns)`` of the full-resolution frame when ``img`` is that
            frame decoded at ``1/2^reduction`` (JPEG 2000 resolution levels).
        reduction: resolution levels ``img`` lacks (0: ``img`` is the frame itself).

    The thumbnail samples the same frame positions at every resolution (frame position
    ``y`` is reduced pixel ``round(y / 2^r)``, where the wavelet's low-pass is centred),
    so a box found on a reduced image is the full-resolution box up to how the two
    thumbnails' values differ.

    Returns:
        ``(y0, y1, x0, x1)`` half-open, in full-resolution (frame) pixels, on the host.
    """
    xp = array_module(img)
    if reduction < 0:
        raise ValueError(f"reduction must be >= 0, got {reduction}")
    h, w = img.shape if frame_shape is None else (int(frame_shape[0]), int(frame_shape[1]))
    step = max(1, int(np.ceil(max(h, w) / thumb)))
    if reduction == 0:
        if (h, w) != img.shape:
            raise ValueError(f"frame_shape {frame_shape} differs from the image {img.shape} at reduction 0")
        small = img[::step, ::step]
        bg = None if background is None else background[::step, ::step]
    else:
        half = 1 << (reduction - 1)
        iy = np.minimum((np.arange(0, h, step) + half) >> reduction, img.shape[0] - 1)
        ix = np.minimum((np.arange(0, w, step) + half) >> reduction, img.shape[1] - 1)
        iy, ix = xp.asarray(iy)[:, None], xp.asarray(ix)[None, :]
        small = img[iy, ix]
        bg = None if background is None else background[iy, ix]
    thr = otsu_threshold(small, xp=xp, background=bg)
    mask = small >= thr  # the threshold's own bin is above the split (histogram bins are closed on the left)
    if bg is not None:
        mask &= ~bg
    cols = to_host(mask.mean(axis=0)) > min_fraction
    x0, x1 = _longest_run(cols)
    if x1 <= x0:
        return (0, h, 0, w)
    # every column of the run exceeds min_fraction, so the mean of its rows does and one row at least:
    # the row run is never empty
    rows = to_host(mask[:, x0:x1].mean(axis=1)) > min_fraction
    y0, y1 = _longest_run(rows)
    y0, y1, x0, x1 = y0 * step, min(h, y1 * step), x0 * step, min(w, x1 * step)
    my, mx = int(round((y1 - y0) * margin)), int(round((x1 - x0) * margin))
    return (max(0, y0 - my), min(h, y1 + my), max(0, x0 - mx), min(w, x1 + mx))


def reduce_box(box: Box, reduction: int, shape: tuple[int, int]) -> Box:
    """A frame box in the pixels of the frame at ``1/2^reduction`` (rounded outward, clipped to ``shape``)."""
    y0, y1, x0, x1 = box
    s = 1 << reduction
    return (y0 // s, min(shape[0], -(-y1 // s)), x0 // s, min(shape[1], -(-x1 // s)))


def crop(img, box: Box):
    """``img[y0:y1, x0:x1]`` (a view)."""
    y0, y1, x0, x1 = box
    return img[y0:y1, x0:x1]


def needs_flip(img) -> bool:
    """True when the breast is on the right (more signal in the right half)."""
    w = img.shape[1]
    left = float(img[:, : w // 2].sum())
    right = float(img[:, w - w // 2 :].sum())
    return right > left


def flip_to_left(img):
    """Mirror the image so the chest wall is on the left; returns ``(image, flipped)``."""
    if needs_flip(img):
        return img[:, ::-1], True
    return img, False
