"""nvImageCodec backend: batched JPEG 2000 / HTJ2K / lossless-JPEG decode (GPU, or CPU_ONLY).

Two ways in:

* :class:`NvImageCodecDecoder` decodes a *batch* of codestreams in one call
  (``nvimgcodec.Decoder.decode([...], params, cuda_stream)`` with ``allow_any_depth=True``
  and ``ColorSpec.UNCHANGED``); on a GPU the output stays on the device as CuPy arrays
  (zero-copy views of the decoder's images, ready in the order of the stream the batch
  was decoded on, with no host wait), on the CPU (``device="cpu"``, the ``CPU_ONLY``
  backend) it is numpy. A sample the codec cannot decode comes back as ``None``, never as
  an exception for the batch. The nvImageCodec loader engine
  (:mod:`dali_pipelines.nvimgcodec_engine`) and ``rsna-mammo decode --device cuda`` use it.
* :func:`register` adds an opt-in registry entry ``nvimgcodec`` that decodes one file on
  the CPU with the ``CPU_ONLY`` backend (registry backends run in worker processes, which
  must never touch CUDA). It is *not* registered at import: nvImageCodec's CPU path
  returns no image for signed (Pixel Representation 1) JPEG 2000, so it does not meet the
  registry's contract — every file of its transfer syntaxes, exactly — and on the CPU it
  adds nothing over imagecodecs / pylibjpeg (the same OpenJPEG).

Which frames may go to the GPU, the start-up probe and the undoing of a decoder's 16-bit
stretch are shared with the DALI engine: :mod:`decode.routing`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np

from ..dicom import DicomFile
from ..errors import CorruptDicomError
from ..routing import CPU_SYNTAXES, calibrate, exact_output
from ..syntax import short_name
from .depth import codestream_precision

log = logging.getLogger(__name__)

DecoderDevice = Literal["cuda", "cpu"]
DECODER_DEVICES = ("cuda", "cpu")


def _nvimgcodec():
    from nvidia import nvimgcodec  # its log levels are set in decode/__init__.py

    return nvimgcodec


class NvImageCodecDecoder:
    """Batched decode with ``nvimgcodec.Decoder`` (native bit depth, one channel kept).

    Args:
        device: ``"cuda"`` (GPU backends, output on the device as CuPy) or ``"cpu"``
            (``CPU_ONLY`` backend, numpy output; JPEG 2000 / HTJ2K only).
        device_id: the GPU to decode on.
        threads: CPU threads of the decoder (0: all cores).
    """

    def __init__(self, *, device: DecoderDevice = "cuda", device_id: int = 0, threads: int = 0):
        if device not in DECODER_DEVICES:
            raise ValueError(f"unknown device {device!r}; allowed: {', '.join(DECODER_DEVICES)}")
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
        self.modes: dict[str, str] = {}  # transfer syntax → "exact" | "scaled" (see calibrate)

    @property
    def name(self) -> str:
        return f"nvimgcodec-{self.device}"

    def calibrate(self, syntaxes: Iterable[str]) -> frozenset:
        """Decode the 12-bit probe of each syntax; keep those returned exactly or invertibly stretched.

        Returns:
            The syntaxes this decoder may be given; ``self.modes`` says how each comes back.
        """
        self.modes = calibrate(lambda cs: self.decode_batch([cs])[0], syntaxes, who=f"nvImageCodec ({self.device})")
        return frozenset(self.modes)

    def decode_exact(
        self,
        codestreams: Sequence,
        syntaxes: Sequence[str],
        *,
        precisions: Sequence[int] | None = None,
        cuda_stream: int = 0,
    ) -> list:
        """:meth:`decode_batch`, then each frame's stored values (a stretch undone per its own precision).

        Args:
            codestreams: encoded frames.
            syntaxes: each frame's transfer syntax.
            precisions: each frame's codestream precision (read from its SIZ / SOF header when None).
            cuda_stream: see :meth:`decode_batch`.
        """
        out = self.decode_batch(codestreams, cuda_stream=cuda_stream)
        for k, arr in enumerate(out):
            if arr is None:
                continue
            p = precisions[k] if precisions is not None else codestream_precision(syntaxes[k], bytes(codestreams[k]))
            out[k] = exact_output(arr, syntaxes[k], p, self.modes)
        return out

    def decode_images(self, codestreams: Sequence, *, cuda_stream: int = 0) -> list:
        """The decoder's own ``Image`` objects (``None`` where a sample failed)."""
        n = _nvimgcodec()
        srcs, pos = [], []
        out: list = [None] * len(codestreams)
        for i, cs in enumerate(codestreams):
            try:
                data = cs if isinstance(cs, np.ndarray) else np.frombuffer(bytes(cs), np.uint8)
                srcs.append(n.CodeStream(np.ascontiguousarray(data, dtype=np.uint8)))
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

    def decode_batch(self, codestreams: Sequence, *, cuda_stream: int = 0) -> list:
        """Decode a batch of codestreams to ``(H, W)`` arrays of their native depth.

        Args:
            codestreams: encoded frames (bytes or uint8 arrays; J2K, HTJ2K, lossless JPEG on the GPU).
            cuda_stream: the stream the caller works on (GPU only): the output is ready in
                that stream's order, and nothing here waits for it on the host.

        Returns:
            One entry per input: uint16 (or uint8) ``(H, W)`` CuPy array on the GPU (a view
            of the decoder's memory, kept alive by it), numpy on the CPU, or ``None`` on failure.
        """
        return [
            None if img is None else image_to_array(img)
            for img in self.decode_images(codestreams, cuda_stream=cuda_stream)
        ]


def device_view(obj):
    """A CuPy array over the device memory of ``obj`` (``__cuda_array_interface__``), with no copy and no sync.

    ``cupy.asarray`` would synchronise the stream an nvImageCodec image carries (CuPy honours
    the interface's ``stream`` field by waiting on the host); the engines decode and
    preprocess on one stream, so stream order is enough. ``obj`` stays alive as the
    memory's owner.
    """
    import cupy

    cai = obj.__cuda_array_interface__
    ptr = int(cai["data"][0])
    shape = tuple(int(s) for s in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is None:
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    else:
        strides = tuple(int(s) for s in strides)
        nbytes = sum((n - 1) * s for n, s in zip(shape, strides)) + dtype.itemsize if all(shape) else 0
    device = getattr(obj, "device_id", None)
    mem = cupy.cuda.UnownedMemory(ptr, nbytes, obj, device if isinstance(device, int) and device >= 0 else None)
    return cupy.ndarray(shape, dtype, cupy.cuda.MemoryPointer(mem, 0), strides)


def image_to_array(img):
    """An ``nvimgcodec.Image`` → ``(H, W)`` CuPy (device image, zero-copy, no sync) or numpy (host image)."""
    n = _nvimgcodec()
    arr = device_view(img) if img.buffer_kind == n.ImageBufferKind.STRIDED_DEVICE else np.asarray(img)
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
