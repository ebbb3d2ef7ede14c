"""Aspect-preserving, antialiased resize with zero padding (numpy or CuPy).

Separable resampling with a triangle kernel whose support widens with the downscale
factor (antialiasing, as PIL / torchvision ``antialias=True``): two matrix products
``Wy @ img @ Wx.T`` — fast on BLAS and on the GPU alike.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np

from .xp import array_module


@lru_cache(maxsize=64)
def _weights_host(n_in: int, n_out: int) -> np.ndarray:
    scale = n_in / n_out
    support = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale
    pos = np.arange(n_in) + 0.5
    w = np.maximum(0.0, 1.0 - np.abs(pos[None, :] - centers[:, None]) / support)
    s = w.sum(axis=1, keepdims=True)
    w = np.where(s > 0, w / np.where(s > 0, s, 1), 0)
    return w.astype(np.float32)


def resample_weights(n_in: int, n_out: int, xp=np):
    """``(n_out, n_in)`` float32 resampling matrix with antialiasing."""
    w = _weights_host(int(n_in), int(n_out))
    return w if xp is np else xp.asarray(w)


def fit_size(h: int, w: int, size: Tuple[int, int]) -> Tuple[int, int]:
    """The largest ``(h', w')`` with the aspect of ``(h, w)`` that fits in ``size``."""
    th, tw = size
    s = min(th / h, tw / w)
    return max(1, min(th, int(round(h * s)))), max(1, min(tw, int(round(w * s))))


def resize(img, out_hw: Tuple[int, int]):
    """Resize a 2-D float image to ``out_hw`` exactly (aspect not kept)."""
    xp = array_module(img)
    h, w = img.shape
    oh, ow = out_hw
    x = img.astype(np.float32, copy=False)
    if (oh, ow) == (h, w):
        return x.copy()
    wy = resample_weights(h, oh, xp)
    wx = resample_weights(w, ow, xp)
    if oh * w <= h * ow:  # do the larger reduction first
        return (wy @ x) @ wx.T
    return wy @ (x @ wx.T)


def resize_pad(img, size: Tuple[int, int], *, pad_value: float = 0.0):
    """Resize keeping the aspect ratio, then pad bottom/right to ``size``.

    Args:
        img: ``(h, w)`` float image (numpy or CuPy).
        size: target ``(H, W)``.

    Returns:
        ``(H, W)`` float32 on the same device; the image sits at the top-left.
    """
    xp = array_module(img)
    th, tw = size
    nh, nw = fit_size(*img.shape, size)
    out = xp.full((th, tw), pad_value, dtype=np.float32)
    out[:nh, :nw] = resize(img, (nh, nw))
    return out
