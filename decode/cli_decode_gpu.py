"""``rsna-mammo decode --device cuda``: nvImageCodec batch decode + the CuPy chain, per batch.

Files are read and parsed by a thread pool; the codestreams the GPU may decode
(:func:`~decode.backends.nvimgcodec_backend.gpu_unsupported_reason`) go to
:class:`~decode.backends.nvimgcodec_backend.NvImageCodecDecoder` in one batched call,
the rest — and any sample nvImageCodec returns no image for — to the CPU backend, for
that file only. VOI, crop and resize run on the GPU (:mod:`decode.gpu_chain`); only the
finished array is copied to the host to be written. A codec that fails the start-up
probe (nvJPEG's all-zero 9–15-bit lossless JPEG) is decoded on the CPU for the run.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backends.nvimgcodec_backend import CPU_SYNTAXES, GPU_SYNTAXES, NvImageCodecDecoder, gpu_unsupported_reason
from .decoding import decode_pixels
from .dicom import read_dicom
from .errors import DicomError, as_dicom_error
from .gpu_chain import preprocess_image, record_params
from .xp import to_host

log = logging.getLogger(__name__)


def gpu_unavailable_reason() -> str | None:
    """Why the GPU decode path cannot run here (``None`` when it can)."""
    try:
        import cupy
    except Exception as exc:
        return f"CuPy does not import ({type(exc).__name__})"
    try:
        if not cupy.is_available():
            return "CuPy sees no CUDA GPU"
    except Exception as exc:  # pragma: no cover
        return f"CUDA is not usable: {exc}"
    try:
        from nvidia import nvimgcodec  # noqa: F401
    except Exception as exc:
        return f"nvImageCodec does not import ({type(exc).__name__})"
    return None


def _read(job, syntaxes) -> tuple:
    """``(job, DicomFile or DicomError, codestream for the GPU or None, CPU reason, CPU decode or None)``.

    Runs in a reader thread; files the GPU must not decode are decoded here (the codecs
    release the GIL), the others only read.
    """
    try:
        dfile = read_dicom(job.path)
        cs = dfile.codestream() if dfile.meta.transfer_syntax in syntaxes else b""
        reason = gpu_unsupported_reason(dfile.meta, cs, syntaxes)
        if reason is None:
            return job, dfile, cs, "", None
        return job, dfile, None, reason, decode_pixels(dfile, job.backend)
    except DicomError as exc:
        return job, exc, None, "", None
    except Exception as exc:
        return job, as_dicom_error(job.path, exc), None, "", None


def _read_batch(batch, syntaxes) -> list:
    return [_read(j, syntaxes) for j in batch]


class _HostStream:
    """Stands in for a CUDA stream on the CPU (``device="cpu"``): no-op context, pointer 0."""

    ptr = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def run_gpu(
    jobs: list,
    *,
    workers: int,
    batch_size: int = 8,
    lookahead: int = 2,
    write: Callable[[object, np.ndarray, dict], dict],
    device: str = "cuda",
) -> Iterator[tuple[object, bool, object]]:
    """Decode and preprocess ``jobs`` on the GPU; yields ``(job, ok, result_or_DicomError)``.

    Args:
        jobs: :class:`~decode.cli_decode.DecodeJob` items.
        workers: reader threads.
        batch_size: files per nvImageCodec call.
        lookahead: batches read ahead of the GPU (bounds host memory).
        write: ``(job, host_image, info) -> result dict`` (writes the outputs).
        device: ``"cuda"``; ``"cpu"`` runs the same flow with nvImageCodec's CPU_ONLY
            backend and numpy (JPEG 2000 / HTJ2K batched, the rest on the CPU backends),
            which is how it is tested without a GPU.
    """
    if device == "cuda":
        import cupy

        decoder = NvImageCodecDecoder(device="cuda", device_id=cupy.cuda.Device().id)
        syntaxes = decoder.calibrate(GPU_SYNTAXES)  # a codec decoded wrongly here goes to the CPU
        stream = cupy.cuda.Stream(non_blocking=True)
    else:
        decoder = NvImageCodecDecoder(device="cpu")
        syntaxes = decoder.calibrate(CPU_SYNTAXES)
        stream = _HostStream()
    batches = deque(jobs[i : i + batch_size] for i in range(0, len(jobs), batch_size))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        pending = deque()
        while batches or pending:
            while batches and len(pending) <= lookahead:
                pending.append(pool.submit(_read_batch, batches.popleft(), syntaxes))
            yield from _gpu_batch(pending.popleft().result(), decoder, stream, write)


def _gpu_batch(read: list, decoder: NvImageCodecDecoder, stream, write) -> Iterator[tuple[object, bool, object]]:
    """Decode one read batch in a single nvImageCodec call, run the chain, write each file."""
    gpu = [(k, r[2], r[1].meta.transfer_syntax) for k, r in enumerate(read) if r[2] is not None]
    with stream:
        decoded = decoder.decode_exact([g[1] for g in gpu], [g[2] for g in gpu], cuda_stream=stream.ptr) if gpu else []
    on_gpu = {g[0]: arr for g, arr in zip(gpu, decoded)}
    for k, (job, dfile, _cs, reason, cpu) in enumerate(read):
        if isinstance(dfile, DicomError):
            yield job, False, dfile
            continue
        t0 = time.perf_counter()
        try:
            with stream:
                raw, backend = on_gpu.get(k), f"nvimgcodec-{decoder.device}"
                if raw is None:
                    if k in on_gpu:
                        log.warning("%s: nvImageCodec returned no image; decoding on the CPU", job.path)
                    cpu = cpu or decode_pixels(dfile, job.backend)
                    raw, backend = _to_decoder_device(cpu.pixels, decoder.device), cpu.backend
                res = preprocess_image(
                    raw, record_params(dfile.meta), meta=dfile.meta, stage=job.stage, size=job.size, flip=job.flip
                )
                img = to_host(res.image)
            info = {
                "backend": backend,
                "device": decoder.device,
                "transfer_syntax": dfile.meta.transfer_syntax,
                "box": list(res.box),
                "flipped": res.flipped,
                "cpu_reason": reason or None,
                "seconds": round(time.perf_counter() - t0, 4),
            }
            yield job, True, write(job, np.ascontiguousarray(img), info)
        except DicomError as exc:
            yield job, False, exc
        except Exception as exc:
            yield job, False, as_dicom_error(job.path, exc)


def _to_decoder_device(pixels: np.ndarray, device: str):
    if device == "cpu":
        return pixels
    import cupy

    return cupy.asarray(pixels)


def default_batch_size() -> int:
    return int(os.environ.get("RSNA_GPU_DECODE_BATCH", "8"))
