"""Zero-copy hand-off: DALI / nvImageCodec output → CuPy → torch, on the caller's stream.

GPU path, no host round trip anywhere::

    TensorGPU ──__cuda_array_interface__──► cupy.ndarray ──DLPack──► torch.Tensor
    (same device pointer all the way; the DALI buffer stays alive while referenced)

Synchronisation: DALI's ``__cuda_array_interface__`` carries no stream, so ordering is
set when the pipeline runs: :class:`~dali_pipelines.pipelines.DecodeRunner` calls
``pipe.run(stream)`` with :func:`current_stream_ptr` (torch's current stream when torch
has CUDA initialised, else CuPy's), which makes the outputs ready *in that stream's
order* without a host wait. CuPy work is then issued on the same stream (:func:`cupy_stream`), and
``torch.from_dlpack`` passes torch's current stream to CuPy's ``__dlpack__``, which
inserts an event wait only if the streams differ. nvImageCodec images are decoded on
the stream the nvImageCodec engine works on and viewed as CuPy arrays without the host
wait ``cupy.asarray`` would add (:func:`decode.backends.nvimgcodec_backend.device_view`);
that engine's batches are torch tensors written on its side stream and handed over with
a CUDA event (:class:`dali_pipelines.engines.Prefetcher`).

On the CPU (``device_id=None`` pipelines) the same functions return numpy views.
"""

from __future__ import annotations

import contextlib
import sys

import numpy as np


def _torch_cuda_ready() -> bool:
    torch = sys.modules.get("torch")
    return bool(torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized())


def current_stream_ptr() -> int:
    """The CUDA stream the caller works on (torch's current stream, else CuPy's); 0 = legacy default."""
    if _torch_cuda_ready():
        import torch

        return int(torch.cuda.current_stream().cuda_stream)
    import cupy

    return int(cupy.cuda.get_current_stream().ptr)


def cupy_stream(ptr: int | None = None):
    """A CuPy stream object for ``ptr`` (default: :func:`current_stream_ptr`); use as a context."""
    import cupy

    ptr = current_stream_ptr() if ptr is None else int(ptr)
    return cupy.cuda.Stream.null if ptr == 0 else cupy.cuda.ExternalStream(ptr)


@contextlib.contextmanager
def on_current_stream():
    """Run CuPy work on torch's current stream (no-op context without CUDA)."""
    if not _torch_cuda_ready():
        yield
        return
    with cupy_stream():
        yield


def is_device_array(arr) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(arr, cupy.ndarray)


def dali_to_array(tensor):
    """A DALI ``TensorGPU`` → CuPy (``__cuda_array_interface__``), ``TensorCPU`` → numpy; no copy."""
    if hasattr(tensor, "__cuda_array_interface__"):
        import cupy

        return cupy.asarray(tensor)
    return np.asarray(tensor)


def nvimgcodec_to_array(image):
    """An ``nvimgcodec.Image`` → CuPy (device image) or numpy (host image); no copy."""
    from decode.backends.nvimgcodec_backend import image_to_array

    return image_to_array(image)


def to_device(arr, device: str):
    """Put a host array on ``device`` (``"cuda"``: CuPy, on the current stream; ``"cpu"``: as is)."""
    if device == "cpu":
        return np.asarray(arr)
    import cupy

    with on_current_stream():
        return cupy.asarray(arr)


def to_torch(arr):
    """CuPy → torch via DLPack (same memory, stream-ordered); numpy → ``torch.from_numpy`` (same memory)."""
    import torch

    if is_device_array(arr):
        return torch.from_dlpack(arr)
    return torch.from_numpy(np.ascontiguousarray(arr))


def data_ptr(obj) -> int:
    """Device/host address of the first element of a DALI tensor, nvImageCodec image, CuPy, numpy or torch array."""
    if hasattr(obj, "data_ptr") and callable(obj.data_ptr):
        ptr = obj.data_ptr()
        return int(ptr.value if hasattr(ptr, "value") else ptr)
    if is_device_array(obj):
        return int(obj.data.ptr)
    try:  # a host nvImageCodec image raises here rather than lacking the attribute
        return int(obj.__cuda_array_interface__["data"][0])
    except Exception:
        pass
    return int(np.asarray(obj).__array_interface__["data"][0])
