"""The fused preprocessing chain, for a batch of frames on the GPU (CuPy) or the CPU (numpy).

One fused VOI kernel, then the shared crop/resize code (the GPU engines' chain).

The per-pixel part — rescale (min–max case) + VOI window (LINEAR / LINEAR_EXACT /
SIGMOID / step) + MONOCHROME1 inversion + scale to [0, 1] + cast — runs as one
``cupy.ElementwiseKernel`` pass with per-image float32 parameters (the record
:func:`record_params` builds from :func:`decode.voi.window_params`).
Breast box, crop, flip and resize+pad are the array-module functions of
:mod:`decode.crop` / :mod:`decode.resize`, unchanged, on CuPy arrays.

Every function also accepts numpy arrays: then the kernel is replaced by the same
arithmetic in numpy (bit-identical to :func:`decode.voi.apply_voi` for the window kinds,
within 1 ulp for min–max); the GPU engines' CPU
variants run it that way, and so do the tests on a machine without a GPU. VOI LUT Sequence / Modality LUT
images need their header (``meta``) and go through :func:`decode.voi.apply_voi`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from .chain import Preprocessed, Stage, preprocess
from .meta import DicomMeta
from .voi import apply_voi, window_params
from .xp import array_module

KINDS = {"linear": 0, "sigmoid": 1, "step": 2, "lut": 3, "minmax": 4}
OUT_DTYPES = (np.float32, np.float16)
P_KIND, P_CENTER, P_SCALE, P_OFFSET, P_INVERT, P_SLOPE, P_INTERCEPT = range(7)

_VOI_SOURCE = r"""
float xm = (float)x * slope + intercept;
float t = (xm - center) * scale + offset;
float y;
if (kind == 1) {
    y = 1.0f / (1.0f + expf(-t));
} else if (kind == 2) {
    y = t > 0.0f ? 1.0f : 0.0f;
} else {
    y = fminf(fmaxf(t, 0.0f), 1.0f);
}
if (invert) y = 1.0f - y;
out = (T)y;
"""


#: NVRTC options of the fused kernel. Without fused multiply-add, ``(x − c)·s + o`` rounds
#: twice exactly as numpy's separate multiply and add do, so a LINEAR window on the GPU is
#: the CPU image to the last bit and the breast box (a threshold on it) cannot move; with
#: FMA one rounding is skipped and a pixel at a threshold edge could fall the other way.
#: (SIGMOID goes through ``expf``, within 2 ulp of numpy's ``exp``.)
KERNEL_OPTIONS = ("--fmad=false",)


@lru_cache(maxsize=1)
def voi_kernel():
    """The fused ``stored values → [0, 1] float`` CuPy kernel (compiled on first use, no FMA)."""
    import cupy

    return cupy.ElementwiseKernel(
        "X x, float32 center, float32 scale, float32 offset, float32 slope, float32 intercept, int32 kind, "
        "int32 invert",
        "T out",
        _VOI_SOURCE,
        "rsna_mammo_voi",
        options=KERNEL_OPTIONS,
    )


def record_params(meta: DicomMeta) -> np.ndarray:
    """float32 ``[kind, center, scale, offset, invert, slope, intercept]`` for :func:`voi_fused`.

    The first five are ``window_params(meta).as_array()``; the rescale is used by min–max only.
    """
    p = window_params(meta).as_array()
    slope = meta.rescale_slope if meta.rescale_slope is not None else 1.0
    intercept = meta.rescale_intercept if meta.rescale_intercept is not None else 0.0
    return np.concatenate([p, np.array([slope, intercept], np.float32)]).astype(np.float32)


def _check_dtype(out_dtype) -> np.dtype:
    dt = np.dtype(out_dtype)
    if dt not in [np.dtype(d) for d in OUT_DTYPES]:
        raise ValueError(f"out_dtype {dt} not allowed; allowed: float32, float16")
    return dt


def linear_params(raw, params: np.ndarray) -> tuple[int, float, float, float, float, float]:
    """Resolve ``params`` to the kernel's ``(kind, center, scale, offset, slope, intercept)``.

    Window kinds already hold the rescale folded into center/scale (``x`` is the stored
    value); min–max rescales first, then maps [min, max] to [0, 1] (one reduction pass,
    two host scalars).
    """
    kind = int(params[P_KIND])
    if kind in (0, 1, 2):
        return kind, float(params[P_CENTER]), float(params[P_SCALE]), float(params[P_OFFSET]), 1.0, 0.0
    if kind == KINDS["minmax"]:
        slope, intercept = float(params[P_SLOPE]), float(params[P_INTERCEPT])
        a = np.float32(float(raw.min()) * slope + intercept)
        b = np.float32(float(raw.max()) * slope + intercept)
        lo, hi = min(a, b), max(a, b)
        span = float(hi - lo)
        return 0, float(lo), 1.0 / span if span > 0 else 1.0, 0.0, slope, intercept
    raise ValueError("a VOI LUT / Modality LUT image needs its header: pass meta= (apply_voi)")


def voi_fused(raw, params: np.ndarray, *, out_dtype=np.float32, out=None):
    """Rescale + VOI + MONOCHROME1 + scale + cast in one pass.

    Args:
        raw: ``(H, W)`` stored values (uint16 / int16 / uint8), CuPy or numpy.
        params: float32 ``[kind, center, scale, offset, invert, slope, intercept]``.
        out_dtype: float32 or float16.
        out: optional preallocated ``(H, W)`` output of ``out_dtype`` (CuPy only).

    Returns:
        ``(H, W)`` ``out_dtype`` in [0, 1] on the device of ``raw``.
    """
    dt = _check_dtype(out_dtype)
    xp = array_module(raw)
    kind, center, scale, offset, slope, intercept = linear_params(raw, params)
    invert = bool(params[P_INVERT])
    if xp is np:
        return _voi_numpy(raw, kind, center, scale, offset, slope, intercept, invert).astype(dt, copy=False)
    if out is None:
        out = xp.empty(raw.shape, dtype=dt)
    return voi_kernel()(
        raw,
        np.float32(center),
        np.float32(scale),
        np.float32(offset),
        np.float32(slope),
        np.float32(intercept),
        np.int32(kind),
        np.int32(invert),
        out,
    )


def _voi_numpy(raw, kind, center, scale, offset, slope, intercept, invert) -> np.ndarray:
    """The kernel's arithmetic in numpy: the operations of :func:`decode.voi.apply_voi` for the
    window kinds (bit-identical); min–max multiplies by 1/span where apply_voi divides (≤ 1 ulp)."""
    x = raw.astype(np.float32)
    if slope != 1.0 or intercept != 0.0:
        x = (raw.astype(np.float64) * slope + intercept).astype(np.float32)
    t = (x - np.float32(center)) * np.float32(scale) + np.float32(offset)
    if kind == 1:
        y = 1.0 / (1.0 + np.exp(-t))
    elif kind == 2:
        y = (t > 0).astype(np.float32)
    else:
        y = np.clip(t, 0.0, 1.0)
    y = y.astype(np.float32, copy=False)
    return 1.0 - y if invert else y


def needs_meta(params: np.ndarray) -> bool:
    """True for a VOI LUT image (the kernel cannot apply a table)."""
    return int(params[P_KIND]) == KINDS["lut"]


def apply_voi_record(raw, params: np.ndarray, *, meta: DicomMeta | None = None, out_dtype=np.float32):
    """VOI from the record; images with a LUT (``meta`` given and needed) use :func:`apply_voi`."""
    dt = _check_dtype(out_dtype)
    if meta is not None and (meta.modality_lut is not None or meta.voi_lut is not None):
        return apply_voi(raw, meta).astype(dt, copy=False)
    if needs_meta(params):
        raise ValueError("a VOI LUT image needs its header: pass meta=")
    return voi_fused(raw, params, out_dtype=dt)


def preprocess_image(
    raw,
    params: np.ndarray,
    *,
    meta: DicomMeta | None = None,
    stage: Stage = "crop",
    size: tuple[int, int] | None = None,
    flip: bool = True,
    out_dtype=np.float32,
    laterality: str = "content",
) -> Preprocessed:
    """:func:`decode.chain.preprocess` with the fused VOI (CuPy or numpy, stays on that device).

    Args:
        raw: ``(rows, columns)`` stored values.
        params: the image's float32 record.
        meta: the header (LUT images, Pixel Padding and the header's laterality need it).
        stage: ``"voi"`` or ``"crop"`` (``"raw"`` returns ``raw`` unchanged).
        size: ``(H, W)`` resize with padding.
        flip: mirror so the chest wall is on the left.
        out_dtype: float32 or float16 (the chain computes in float32 and casts at the end).
        laterality: which side decides the flip when header and content disagree (needs
            ``meta``; Pixel Padding also needs ``meta``).
    """
    dt = _check_dtype(out_dtype)
    res = preprocess(
        raw,
        meta,
        stage=stage,
        size=size,
        flip=flip,
        voi=lambda r: apply_voi_record(r, params, meta=meta, out_dtype=np.float32),
        laterality=laterality,
    )
    if stage != "raw":
        res.image = res.image.astype(dt, copy=False)
    return res


def preprocess_batch(
    raws: Sequence,
    params: Sequence[np.ndarray],
    *,
    size: tuple[int, int],
    metas: Sequence[DicomMeta | None] | None = None,
    stage: Stage = "crop",
    flip: bool = True,
    out_dtype=np.float32,
    out=None,
    laterality: str = "content",
) -> tuple[object, list[Preprocessed]]:
    """Run :func:`preprocess_image` on each frame and stack into ``[B, 1, H, W]``.

    Args:
        out: optional ``[B, 1, H, W]`` array of ``out_dtype`` on the inputs' device to write
            into (e.g. a CuPy view of a torch tensor, so the batch is torch's memory).

    Returns:
        ``(batch, per_image)``: the ``out_dtype`` array on the device of the inputs, and
        each image's :class:`Preprocessed` (boxes, flips).
    """
    if stage == "raw":
        raise ValueError("preprocess_batch needs stage 'voi' or 'crop' (raw frames differ in size)")
    dt = _check_dtype(out_dtype)
    if not raws:
        raise ValueError("empty batch")
    xp = array_module(raws[0])
    shape = (len(raws), 1, *tuple(size))
    if out is None:
        out = xp.zeros(shape, dtype=dt)
    elif tuple(out.shape) != shape or np.dtype(out.dtype) != dt:
        raise ValueError(f"out is {tuple(out.shape)} {out.dtype}, expected {shape} {dt}")
    done = []
    for k, raw in enumerate(raws):
        meta = metas[k] if metas is not None else None
        res = preprocess_image(
            raw, params[k], meta=meta, stage=stage, size=size, flip=flip, out_dtype=np.float32, laterality=laterality
        )
        out[k, 0] = res.image
        done.append(res)
    return out, done
