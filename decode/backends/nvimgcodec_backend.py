"""nvImageCodec backend: batched JPEG 2000 / HTJ2K / lossless-JPEG decode (GPU, or CPU_ONLY).

Two ways in:

* :class:`NvImageCodecDecoder` decodes a *batch* of codestreams in one call
  (``nvimgcodec.Decoder.decode([...])`` with ``allow_any_depth=True`` and
  ``ColorSpec.UNCHANGED``); on a GPU the output stays on the device as CuPy arrays
  (zero-copy views of the decoder's images), on the CPU (``device="cpu"``, the
  ``CPU_ONLY`` backend) it is numpy. A sample the codec cannot decode comes back as
  ``None``, never as an exception for the batch.
* :func:`register` adds an opt-in registry entry ``nvimgcodec`` that decodes one file on
  the CPU with the ``CPU_ONLY`` backend (registry backends run in forked worker
  processes, which must never touch CUDA). It is *not* registered at import: nvImageCodec's
  CPU path returns no image for signed (Pixel Representation 1) JPEG 2000, so it does not
  meet the registry's contract — every file of its transfer syntaxes, exactly — and on
  the CPU it adds nothing over imagecodecs / pylibjpeg (the same OpenJPEG).

:func:`gpu_unsupported_reason` is the routing rule shared with the DALI source: it
says why a codestream must not go to nvJPEG / nvJPEG2000 (other syntax, a codestream
header that disagrees with the DICOM header, a precision the GPU path does not keep
exact), or ``None`` when it may.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from ..dicom import DicomFile, j2k_info, jpeg_sof_info
from ..errors import CorruptDicomError
from ..meta import DicomMeta
from ..syntax import HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, J2K_FAMILY, JPEG2000_LOSSLESS, JPEG_LOSSLESS_SV1, short_name
from .depth import classify, codestream_precision, probe_codestreams, undo_stretch

log = logging.getLogger(__name__)

#: Lossless syntaxes nvJPEG2000 / nvJPEG decode on the GPU (lossy J2K stays on the CPU, so
#: that every backend returns exactly pydicom's values).
GPU_SYNTAXES = frozenset({JPEG2000_LOSSLESS, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL, JPEG_LOSSLESS_SV1})
#: What the CPU decoders behind nvImageCodec (CPU_ONLY) and DALI (device="cpu") decode exactly.
CPU_SYNTAXES = frozenset({JPEG2000_LOSSLESS, HTJ2K_LOSSLESS, HTJ2K_LOSSLESS_RPCL})
#: Codestream precision the GPU path returns unscaled as uint16.
MIN_PRECISION, MAX_PRECISION = 9, 16

Device = Literal["cuda", "cpu"]
DEVICES = ("cuda", "cpu")


def gpu_unsupported_reason(meta: DicomMeta, codestream: bytes, syntaxes: Iterable[str] = GPU_SYNTAXES) -> str | None:
    """Why this frame must be decoded on the CPU instead; ``None`` when the GPU may decode it.

    Args:
        meta: the DICOM header.
        codestream: the frame's codestream (from ``generate_frames``).
        syntaxes: transfer syntaxes the GPU decoder handles here (e.g. without
            lossless JPEG when nvJPEG is known to decode it wrongly).

    Returns:
        A one-line reason, or ``None``.
    """
    ts = meta.transfer_syntax
    if ts not in syntaxes:
        return f"transfer syntax {short_name(ts)} is decoded on the CPU"
    if meta.bits_allocated != 16:
        return f"Bits Allocated {meta.bits_allocated}: the GPU path decodes 16-bit data only"
    if meta.pixel_representation != 0:
        return "signed pixel data is decoded on the CPU"
    if ts in J2K_FAMILY:
        info = j2k_info(codestream)
        if info is None:
            return "codestream does not start with a J2K SOC+SIZ header"
        if info.signed:
            return "J2K codestream is signed"
    else:
        info = jpeg_sof_info(codestream)
        if info is None:
            return "no JPEG SOF marker before the scan"
        if info.codec != "jpeg-lossless":
            return f"JPEG codestream is {info.codec}, not lossless (SOF3)"
        if info.precision > meta.bits_stored:
            return f"JPEG precision {info.precision} > Bits Stored {meta.bits_stored} (bits must be masked)"
    if (info.rows, info.columns) != meta.shape:
        return f"codestream is {info.rows}x{info.columns}, the DICOM header says {meta.rows}x{meta.columns}"
    if info.components != 1:
        return f"codestream has {info.components} components, 1 expected"
    if not MIN_PRECISION <= info.precision <= MAX_PRECISION:
        return f"codestream precision {info.precision} outside {MIN_PRECISION}..{MAX_PRECISION}"
    return None


def _nvimgcodec():
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # its CPU J2K extension warns on every greyscale frame
    from nvidia import nvimgcodec

    return nvimgcodec


def cuda_usable() -> bool:
    """True when CuPy sees a CUDA device (initialises CUDA in this process)."""
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:
        return False


class NvImageCodecDecoder:
    """Batched decode with ``nvimgcodec.Decoder`` (native bit depth, one channel kept).

    Args:
        device: ``"cuda"`` (GPU backends, output on the device as CuPy) or ``"cpu"``
            (``CPU_ONLY`` backend, numpy output; JPEG 2000 / HTJ2K only).
        device_id: the GPU to decode on.
        threads: CPU threads of the decoder (0: all cores).
    """

    def __init__(self, *, device: Device = "cuda", device_id: int = 0, threads: int = 0):
        if device not in DEVICES:
            raise ValueError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")
        n = _nvimgcodec()
        self.device = device
        self.device_id = device_id
        if device == "cpu":
            self._decoder = n.Decoder(
                device_id=n.NVIMGCODEC_DEVICE_CPU_ONLY, max_num_cpu_threads=threads, backends=[n.Backend(n.CPU_ONLY)]
            )
        else:
            self._decoder = n.Decoder(device_id=device_id, max_num_cpu_threads=threads)
        self._params = n.DecodeParams(allow_any_depth=True, color_spec=n.ColorSpec.UNCHANGED)
        self.modes: dict = {}  # transfer syntax → "exact" | "scaled" (see calibrate)

    def calibrate(self, syntaxes: Iterable[str]) -> frozenset:
        """Decode a 12-bit probe per syntax; keep the ones returned exactly or invertibly stretched.

        Returns:
            The syntaxes this decoder may be given; ``self.modes`` records how each comes back.
        """
        self.modes = {}
        for ts, (cs, expected) in probe_codestreams(syntaxes).items():
            mode = classify(self.decode_batch([cs])[0], expected, 12)
            if mode is None:
                log.warning(
                    "nvImageCodec (%s) decodes a 12-bit %s probe wrongly; that syntax goes to the CPU",
                    self.device,
                    short_name(ts),
                )
            else:
                self.modes[ts] = mode
        return frozenset(self.modes)

    def decode_exact(
        self, codestreams: Sequence[bytes], syntaxes: Sequence[str], *, cuda_stream: int = 0
    ) -> list[object | None]:
        """:meth:`decode_batch`, then undo the stretch for syntaxes :meth:`calibrate` found scaled."""
        out = self.decode_batch(codestreams, cuda_stream=cuda_stream)
        for k, (arr, ts) in enumerate(zip(out, syntaxes)):
            if arr is not None and self.modes.get(ts) == "scaled":
                out[k] = undo_stretch(arr, codestream_precision(ts, bytes(codestreams[k])))
        return out

    def decode_images(self, codestreams: Sequence[bytes], *, cuda_stream: int = 0) -> list:
        """The decoder's own ``Image`` objects (``None`` where a sample failed)."""
        n = _nvimgcodec()
        srcs, pos = [], []
        out: list = [None] * len(codestreams)
        for i, cs in enumerate(codestreams):
            try:
                srcs.append(n.CodeStream(bytes(cs)))
                pos.append(i)
            except Exception as exc:  # unparsable header: that sample only
                log.debug("nvimgcodec cannot parse codestream %d: %s", i, exc)
        if not srcs:
            return out
        kwargs = {"params": self._params}
        if self.device == "cuda":
            kwargs["cuda_stream"] = int(cuda_stream)
        try:
            images = self._decoder.decode(srcs, **kwargs)
        except Exception as exc:  # a whole-batch failure: retry one by one
            log.warning("nvimgcodec batch decode failed (%s); decoding one by one", exc)
            images = []
            for s in srcs:
                try:
                    images.append(self._decoder.decode(s, **kwargs))
                except Exception:
                    images.append(None)
        for i, img in zip(pos, images):
            out[i] = img
        return out

    def decode_batch(self, codestreams: Sequence[bytes], *, cuda_stream: int = 0) -> list[object | None]:
        """Decode a batch of codestreams to ``(H, W)`` arrays of their native depth.

        Args:
            codestreams: encoded frames (J2K, HTJ2K, lossless JPEG on the GPU).
            cuda_stream: the stream the caller works on (GPU only): the output is ready
                in that stream's order.

        Returns:
            One entry per input: uint16 (or uint8) ``(H, W)`` CuPy array on the GPU
            (sharing the decoder's memory), numpy on the CPU, or ``None`` on failure.
        """
        out: list[object | None] = []
        for img in self.decode_images(codestreams, cuda_stream=cuda_stream):
            out.append(None if img is None else image_to_array(img))
        return out


def image_to_array(img):
    """An ``nvimgcodec.Image`` → ``(H, W)`` CuPy (device image, zero-copy) or numpy (host image)."""
    n = _nvimgcodec()
    if img.buffer_kind == n.ImageBufferKind.STRIDED_DEVICE:
        import cupy

        arr = cupy.asarray(img)  # __cuda_array_interface__: no copy
    else:
        arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    return arr


_CPU_DECODERS = threading.local()


def _cpu_decoder() -> NvImageCodecDecoder:
    dec = getattr(_CPU_DECODERS, "decoder", None)
    if dec is None:
        dec = _CPU_DECODERS.decoder = NvImageCodecDecoder(device="cpu", threads=1)
    return dec


def decode_nvimgcodec(dfile: DicomFile) -> np.ndarray:
    """Registry decode function: one frame with the CPU_ONLY backend (numpy, never CUDA)."""
    if dfile.transfer_syntax not in CPU_SYNTAXES:
        raise CorruptDicomError(dfile.path, f"nvimgcodec (CPU) cannot decode {short_name(dfile.transfer_syntax)}")
    arr = _cpu_decoder().decode_batch([dfile.codestream()])[0]
    if arr is None:
        raise CorruptDicomError(dfile.path, "nvimgcodec could not decode the codestream")
    return np.array(arr, copy=True)


def register() -> bool:
    """Opt in: add the ``nvimgcodec`` CPU_ONLY backend to the registry (when the module imports).

    It goes after the other CPU decoders in ``auto`` order (never picked ahead of
    imagecodecs). Unsigned JPEG 2000 / HTJ2K only: a signed frame fails in it (and falls
    back to pydicom when fallback is on). Returns whether it was registered.
    """
    from . import Backend, module_available, register_backend

    if not module_available("nvidia.nvimgcodec"):
        return False
    try:  # importable is not enough: its shared libraries must load (no CUDA is touched)
        _nvimgcodec()
    except Exception as exc:
        log.debug("nvimgcodec is installed but does not import: %s", exc)
        return False
    register_backend(
        Backend(
            "nvimgcodec",
            CPU_SYNTAXES,
            ("nvidia.nvimgcodec",),
            decode_nvimgcodec,
            "nvImageCodec (CPU_ONLY in the registry; batched GPU decode via NvImageCodecDecoder)",
        )
    )
    return True
