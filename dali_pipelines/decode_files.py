"""``rsna-mammo decode --device cuda``: the GPU engines over a list of files, one output per file.

The same runners as the loader's GPU engines (:class:`~dali_pipelines.nvimgcodec_engine.NvImageCodecRunner`
or DALI's :class:`~dali_pipelines.pipelines.DecodeRunner`) read, route and decode the files
in batches; files the GPU must not decode are decoded on the CPU in the engine's contained
worker processes, under the command's ``--timeout``. Each decoded frame then runs the chain
on the GPU (:func:`decode.fused_chain.preprocess_image`, the stage and size the command asks
for) and only the finished array is copied to the host to be written. No torch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import numpy as np

from decode.backends.depth import SYNTAX_CODES
from decode.cli_decode import file_record
from decode.dicom import read_dicom
from decode.errors import CorruptDicomError, DicomError, SkippedDicomError, UsageError, as_dicom_error
from decode.fused_chain import preprocess_image
from decode.xp import to_host

from .records import DecodedSample, I

#: Files per GPU decode call (``RSNA_GPU_DECODE_BATCH`` overrides).
DEFAULT_BATCH = 8


def default_batch_size() -> int:
    return int(os.environ.get("RSNA_GPU_DECODE_BATCH", str(DEFAULT_BATCH)))


def make_runner(
    engine: str,
    paths,
    *,
    device: str,
    workers: int,
    batch_size: int,
    timeout,
    backend: str,
    fail_indices=(),
    task=None,
    for_processing: str = "warn",
):
    """A started runner of ``engine`` (``nvimgcodec`` or ``dali``) over ``paths`` (``task``: its per-row reader)."""
    if engine == "nvimgcodec":
        from .nvimgcodec_engine import NvImageCodecRunner

        runner = NvImageCodecRunner(
            paths,
            batch_size=batch_size,
            device=device,
            workers=workers,
            backend=backend,
            timeout=timeout,
            fail_indices=fail_indices,
            task=task,
            for_processing=for_processing,
        )
    elif engine == "dali":
        from .pipelines import DecodeRunner

        runner = DecodeRunner(
            paths,
            batch_size=batch_size,
            device=device,
            workers=workers,
            threads=max(1, workers),
            backend=backend,
            timeout=timeout,
            fail_indices=fail_indices,
            task=task,
            for_processing=for_processing,
        )
    else:
        raise UsageError(f"unknown GPU engine {engine!r}; allowed: nvimgcodec, dali")
    return runner.start()


def decode_jobs(
    jobs: list,
    *,
    engine: str,
    device: str = "cuda",
    workers: int = 2,
    batch_size: int | None = None,
    timeout: float | None = None,
    write,
    task=None,
) -> Iterator[tuple[object, bool, object]]:
    """Decode and preprocess ``jobs`` with a GPU engine; yields ``(job, ok, result_or_DicomError)``.

    Args:
        jobs: :class:`~decode.cli_decode.DecodeJob` items (the first one's backend and
            FOR PROCESSING policy apply to all; each job's stage, size, flip and laterality to it).
        engine: ``"nvimgcodec"`` or ``"dali"``.
        device: ``"cuda"``; ``"cpu"`` runs the same flow on the engine's CPU decoder and
            numpy, which is how it is tested without a GPU.
        workers: reader processes.
        batch_size: files per decode call (default :func:`default_batch_size`).
        timeout: seconds one file may take in a reader (read + CPU decode).
        write: ``(job, host_image, info) -> result dict`` (writes the outputs).
        task: the engine's per-row reader (default: read, route and CPU-decode the file).
    """
    if not jobs:
        return
    paths = [j.path for j in jobs]
    runner = make_runner(
        engine,
        paths,
        device=device,
        workers=workers,
        batch_size=batch_size or default_batch_size(),
        timeout=timeout,
        backend=jobs[0].backend,
        task=task,
        for_processing=jobs[0].for_processing,
    )
    try:
        if engine == "nvimgcodec":  # decode and chain on one non-blocking stream
            stream = _stream(device)
            epoch = runner.epoch(range(len(jobs)), cuda_stream=stream.ptr)
        else:  # DALI's outputs are ready in the order of CuPy's current stream: stay on it
            stream = _HostStream()
            epoch = runner.epoch(range(len(jobs)))
        for decoded in epoch:
            for row, reason in decoded.failed:
                kind = SkippedDicomError if row in decoded.skipped else CorruptDicomError
                yield jobs[row], False, kind(paths[row], reason)
            for s in decoded.samples:
                with stream:
                    yield _finish(jobs[s.index], s, runner, write, device)
    finally:
        runner.close()


def _finish(job, s: DecodedSample, runner, write, device: str):
    t0 = time.perf_counter()
    try:
        meta = s.meta
        if meta is None and job.stage != "raw" and int(s.info[I["needs_meta"]]):
            meta = read_dicom(job.path).meta
        res = preprocess_image(
            s.image, s.params, meta=meta, stage=job.stage, size=job.size, flip=job.flip, laterality=job.laterality
        )
        img = np.ascontiguousarray(to_host(res.image))
        code = int(s.info[I["syntax"]])
        info = {
            "backend": f"{runner_name(runner)}-{device}" if s.route in ("decoder", "retry") else s.message,
            "device": device,
            "route": s.route,
            "transfer_syntax": SYNTAX_CODES[code] if 0 <= code < len(SYNTAX_CODES) else None,
            "box": list(res.box),
            "flipped": res.flipped,
            "decode_scale": "full",
            "seconds": round(time.perf_counter() - t0, 4),
        }
        if meta is not None:
            # the warning line: FOR PROCESSING, ignored header elements, a CPU fallback (not library chatter)
            info.update(file_record(meta, res, warnings=[n for n in s.notes if not n.startswith("while reading:")]))
        info["notes"] = [*s.notes, *res.notes]
        return job, True, write(job, img, info)
    except DicomError as exc:
        return job, False, exc
    except Exception as exc:
        return job, False, as_dicom_error(job.path, exc)


def runner_name(runner) -> str:
    return "nvimgcodec" if type(runner).__name__ == "NvImageCodecRunner" else "dali"


class _HostStream:
    """Stands in for a CUDA stream on the CPU: a no-op context, pointer 0."""

    ptr = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _stream(device: str):
    if device != "cuda":
        return _HostStream()
    import cupy

    return cupy.cuda.Stream(non_blocking=True)
