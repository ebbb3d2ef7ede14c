"""DALI decode graphs and the runner that drives them, with per-sample fallback.

:func:`make_decode_pipeline` builds the batch pipeline::

    fn.external_source(DicomSource, parallel=True, batch=False, py_start_method="spawn")
      ├─ is_raw → raw pixels decoded on the CPU in the worker (``.gpu()`` on a GPU)
      └─ else   → fn.decoders.image(device="mixed" | "cpu", output_type=ANY_DATA, dtype=UINT16)
    → (image HWC uint16, params float32[7], info int32[12], message uint8[n], extra uint8[n])

``device="cuda"`` decodes on the GPU (nvJPEG2000 / nvJPEG through nvImageCodec);
``device="cpu"`` builds the same graph with ``device_id=None`` (JPEG 2000 / HTJ2K
decode on the CPU there; lossless JPEG is routed to the workers' CPU backend).

:class:`DecodeRunner` runs it epoch by epoch. A batch that still fails inside DALI (a
codestream whose body is corrupt) does not stop anything: its samples are decoded one
by one with a batch-1 pipeline, and the ones that fail there too go to the CPU backend
(in a contained child process when ``timeout`` is set, else in this process). The
pipeline is never rebuilt for an error. At start the 12-bit probe of every codec is
decoded (:func:`decode.routing.calibrate`, shared with the nvImageCodec engine); a codec
the GPU decodes wrongly (e.g. nvJPEG's all-zero 9–15-bit lossless JPEG before 13.0.2) is
routed to the CPU for the whole run, and a decoder that stretches ``p``-bit output to 16
bits is undone per sample from its codestream precision.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np

from decode.backends.depth import SYNTAX_CODES
from decode.routing import CPU_SYNTAXES, GPU_SYNTAXES, calibrate, exact_output

from . import handoff
from .records import (
    INFO,
    PARAMS,
    ROUTE_DECODER,
    ROUTE_ERROR,
    ROUTE_PAD,
    ROUTE_RAW,
    ROUTES,
    DecodedBatch,
    DecodedSample,
    I,
    unpack_extra,
    unpack_raw,
)
from .source import DicomSource

log = logging.getLogger(__name__)

#: Where a DALI graph decodes: DALI's "mixed" (GPU) decoder or its CPU one.
PipelineDevice = Literal["cuda", "cpu"]
PIPELINE_DEVICES = ("cuda", "cpu")
SOURCE_LAYOUTS = ["", "HWC", "", "", "", "", ""]
#: Shared-memory hint per sample: a full-size 16-bit raw frame (3328×2560×2 bytes).
BYTES_PER_SAMPLE_HINT = 3328 * 2560 * 2
SHM = "/dev/shm"


def shm_bytes_per_sample(batch_size: int, queue_depth: int, *, folder: str = SHM) -> int:
    """The shared-memory hint per sample for DALI's parallel source, sized to what ``folder`` has free.

    The source keeps ``queue_depth`` chunks of ``batch_size`` samples in shared memory,
    each sized ``hint`` bytes per sample up front: about ``queue_depth × batch_size × 17 MB``
    for full-size frames. When ``folder`` (``/dev/shm``) has less free, the hint shrinks to
    fit 80 % of it (DALI grows a chunk when a sample does not fit); one log line says so.
    """
    need = queue_depth * batch_size * BYTES_PER_SAMPLE_HINT
    try:
        st = os.statvfs(folder)
        free = st.f_bavail * st.f_frsize
    except OSError as exc:
        log.info(
            "cannot read the free space of %s (%s); DALI's shared-memory hint stays at %.0f MB per sample",
            folder,
            exc,
            BYTES_PER_SAMPLE_HINT / 2**20,
        )
        return BYTES_PER_SAMPLE_HINT
    if free >= need:
        return BYTES_PER_SAMPLE_HINT
    hint = max(1 << 20, int(0.8 * free) // max(1, queue_depth * batch_size))
    log.warning(
        "%s has %.0f MB free; DALI's parallel source would take about %.0f MB (%d x %d x %.0f MB): "
        "shared-memory hint lowered to %.1f MB per sample",
        folder,
        free / 2**20,
        need / 2**20,
        queue_depth,
        batch_size,
        BYTES_PER_SAMPLE_HINT / 2**20,
        hint / 2**20,
    )
    return hint


def _check_device(device: str) -> None:
    if device not in PIPELINE_DEVICES:
        raise ValueError(f"unknown device {device!r}; allowed: {', '.join(PIPELINE_DEVICES)}")


def _decoder(data, device: PipelineDevice):
    from nvidia.dali import fn, types

    return fn.decoders.image(
        data, device="mixed" if device == "cuda" else "cpu", output_type=types.ANY_DATA, dtype=types.UINT16
    )


def make_decode_pipeline(
    source: DicomSource,
    *,
    batch_size: int,
    device: PipelineDevice = "cuda",
    device_id: int = 0,
    num_threads: int = 2,
    py_workers: int = 2,
    prefetch: int = 2,
):
    """The batch decode pipeline (not built; :class:`DecodeRunner` builds it).

    Args:
        source: the per-sample callback (picklable; runs in spawned workers).
        batch_size: samples per batch (> 1 for throughput).
        device: ``"cuda"`` (decoder ``"mixed"``) or ``"cpu"`` (``device_id=None``).
        device_id: the GPU (ignored on the CPU).
        num_threads: DALI CPU threads.
        py_workers: worker processes of the external source.
        prefetch: batches prepared ahead (pipeline and source queues).

    Returns:
        A DALI ``Pipeline`` with outputs ``(image HWC uint16, params, info, message, extra)``.
    """
    _check_device(device)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    from nvidia.dali import fn, pipeline_def

    hint = shm_bytes_per_sample(batch_size, prefetch + 1)

    @pipeline_def(enable_conditionals=True)
    def graph():
        cs, raw, is_raw, params, info, message, extra = fn.external_source(
            source=source,
            num_outputs=7,
            parallel=True,
            batch=False,
            layout=SOURCE_LAYOUTS,
            prefetch_queue_depth=prefetch + 1,
            bytes_per_sample_hint=hint,
        )
        if is_raw:
            image = raw.gpu() if device == "cuda" else raw
        else:
            image = _decoder(cs, device)
        return image, params, info, message, extra

    return graph(
        batch_size=batch_size,
        num_threads=max(1, num_threads),
        device_id=None if device == "cpu" else device_id,
        py_num_workers=max(1, py_workers),
        py_start_method="spawn",
        prefetch_queue_depth=max(1, prefetch),
    )


def make_single_pipeline(*, device: PipelineDevice = "cuda", device_id: int = 0, num_threads: int = 1):
    """Batch-1 pipeline fed through ``run(codestream=[...])``: retries and codec probes."""
    _check_device(device)
    from nvidia.dali import fn, pipeline_def

    @pipeline_def
    def graph():
        return _decoder(fn.external_source(name="codestream", no_copy=False), device)

    pipe = graph(
        batch_size=1,
        num_threads=max(1, num_threads),
        device_id=None if device == "cpu" else device_id,
        prefetch_queue_depth=1,
    )
    pipe.build()
    return pipe


def close_pipeline(pipe) -> None:
    """Stop a pipeline and its worker processes (DALI has no public close)."""
    if pipe is None:
        return
    pool = getattr(pipe, "_py_pool", None)
    try:
        pipe._shutdown()
    except Exception as exc:  # pragma: no cover - best effort
        log.debug("pipeline shutdown: %s", exc)
    if pool is not None:
        try:
            pool.close()
        except Exception as exc:  # pragma: no cover
            log.debug("worker pool close: %s", exc)


class DecodeRunner:
    """Drives :func:`make_decode_pipeline` epoch by epoch (see the module docstring).

    Args:
        paths: DICOM files, one per row.
        batch_size: rows per DALI batch.
        device: ``"cuda"`` or ``"cpu"``.
        device_id: the GPU.
        workers: external-source worker processes.
        threads: DALI CPU threads.
        prefetch: batches ahead.
        backend: CPU backend for routed and fallback samples.
        probe: check each codec on a tiny image first and route wrong ones to the CPU.
        fail_indices: test hook, see :class:`~dali_pipelines.source.DicomSource`.
        timeout: seconds one file may take in a source worker (read + CPU decode) before
            it is reported as failed (None: no limit).
        task: the per-row reader of the source (see :class:`~dali_pipelines.source.DicomSource`).
        for_processing: the FOR PROCESSING policy (``warn``, ``skip``, ``error``).
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        batch_size: int,
        device: PipelineDevice = "cuda",
        device_id: int = 0,
        workers: int = 2,
        threads: int = 2,
        prefetch: int = 2,
        backend: str = "auto",
        probe: bool = True,
        fail_indices: Sequence[int] = (),
        timeout: float | None = None,
        task=None,
        for_processing: str = "warn",
    ):
        _check_device(device)
        self.paths = [os.fspath(p) for p in paths]
        self.batch_size = int(batch_size)
        self.device = device
        self.device_id = device_id
        self.workers, self.threads, self.prefetch = workers, threads, prefetch
        self.backend = backend
        self.probe = probe
        self.fail_indices = tuple(fail_indices)
        self.timeout = timeout
        self.task = task
        self.for_processing = for_processing
        self.syntaxes = frozenset(GPU_SYNTAXES if device == "cuda" else CPU_SYNTAXES)
        self.modes = dict.fromkeys(self.syntaxes, "exact")  # "scaled": undo the decoder's 16-bit stretch
        self.stats = {
            "batches": 0,
            "batch_failures": 0,
            "retried": 0,
            "retry_failures": 0,
            "cpu_fallback": 0,
            "routed_raw": 0,
            "errors": 0,
            "rebuilds": 0,
        }
        self._tmp: str | None = None
        self._pipe = None
        self._single = None
        self._epoch = 0
        self._dirty = False

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> DecodeRunner:
        """Start the workers (before this process touches CUDA), then build and probe."""
        if self._pipe is not None:
            return self
        self._tmp = self._tmp or tempfile.mkdtemp(prefix="rsna-dali-")
        self.source = DicomSource(
            self.paths,
            os.path.join(self._tmp, "plan"),
            backend=self.backend,
            fail_indices=self.fail_indices,
            timeout=self.timeout,
            task=self.task,
            for_processing=self.for_processing,
        )
        self._pipe = make_decode_pipeline(
            self.source,
            batch_size=self.batch_size,
            device=self.device,
            device_id=self.device_id,
            num_threads=self.threads,
            py_workers=self.workers,
            prefetch=self.prefetch,
        )
        self._pipe.start_py_workers()  # spawned workers first, CUDA afterwards
        self._single = make_single_pipeline(device=self.device, device_id=self.device_id)
        if self.probe:
            self.syntaxes = self._probe(self.syntaxes)
        self._epoch = 0
        return self

    def close(self) -> None:
        close_pipeline(self._pipe)
        close_pipeline(self._single)
        self._pipe = self._single = None
        if getattr(self, "source", None) is not None:
            self.source.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

    def _probe(self, syntaxes: frozenset) -> frozenset:
        """Decode the 12-bit probe of each syntax (:func:`decode.routing.calibrate`); fills ``self.modes``."""

        def decode_one(cs):
            with self._on_stream():
                return self.decode_one(cs)

        self.modes = calibrate(decode_one, syntaxes, who=f"DALI ({self.device})")
        return frozenset(t for t in syntaxes if t in self.modes)

    def _exact(self, image, info: np.ndarray):
        """The stored values (in place): a stretch the probe found is undone with the sample's precision."""
        code = int(info[I["syntax"]])
        if not 0 <= code < len(SYNTAX_CODES):
            return image
        return exact_output(image, SYNTAX_CODES[code], int(info[I["precision"]]), self.modes)

    # -- decoding ---------------------------------------------------------------------------
    def decode_one(self, codestream: np.ndarray):
        """Decode one codestream with the batch-1 pipeline: ``(H, W)`` uint16 on the device, or None.

        The output is the decoder's (possibly stretched, see :mod:`decode.backends.depth`).
        """
        try:
            out = self._run(self._single, codestream=[np.asarray(codestream, np.uint8)])
            return handoff.dali_to_array(out[0][0])[..., 0]
        except Exception as exc:
            log.debug("single decode failed: %s", exc)
            return None

    def _run(self, pipe, **inputs):
        """One iteration; on the GPU the outputs are ready in the caller's stream order (no host wait)."""
        if self.device == "cuda":
            return pipe.run(handoff.current_stream_ptr(), **inputs)
        return pipe.run(**inputs)

    def _on_stream(self):
        """CuPy work on the stream the outputs were bound to (a no-op context on the CPU)."""
        if self.device == "cuda":
            return handoff.cupy_stream(handoff.current_stream_ptr())
        return contextlib.nullcontext()

    def epoch(self, rows: Sequence[int]) -> Iterator[DecodedBatch]:
        """Decode ``rows`` in order, one :class:`DecodedBatch` per ``batch_size`` rows.

        Every row ends in a batch's ``samples`` or ``failed``. Stopping early is allowed
        (the next epoch then starts a fresh pipeline).
        """
        rows = [int(r) for r in rows]
        if not rows:  # an empty shard: nothing to schedule
            return
        self.start()
        if self._dirty:
            self._restart()
        padded = self.source.plan.write(self._epoch, rows, batch_size=self.batch_size, syntaxes=self.syntaxes)
        if self._epoch > 0:
            self._pipe.reset()
        nb = len(padded) // self.batch_size
        self._dirty = True
        for k in range(nb):
            expected = [int(r) for r in padded[k * self.batch_size : (k + 1) * self.batch_size]]
            try:
                outs = self._run(self._pipe)
            except StopIteration:
                log.error("the pipeline ended after %d of %d batches; decoding the rest one by one", k, nb)
                with self._on_stream():
                    batch = self._fallback(expected)
                yield batch
                continue
            except Exception as exc:
                self.stats["batch_failures"] += 1
                log.warning(
                    "a decode batch failed (%s); decoding its %d samples one by one",
                    " ".join(str(exc).split())[:300],
                    sum(r >= 0 for r in expected),
                )
                with self._on_stream():
                    batch = self._fallback(expected)
                yield batch
                continue
            self.stats["batches"] += 1
            with self._on_stream():
                batch = self._unpack(outs, expected)
            yield batch
        self._finish_epoch()

    def _finish_epoch(self) -> None:
        for _ in range(self.prefetch + 2):  # the source's StopIteration closes the epoch
            try:
                self._run(self._pipe)
            except StopIteration:
                break
            except Exception:
                continue
        self._epoch += 1
        self._dirty = False

    def _restart(self) -> None:
        log.info("previous epoch was not finished; starting a fresh decode pipeline")
        close_pipeline(self._pipe)
        close_pipeline(self._single)
        self._pipe = None
        self.stats["rebuilds"] += 1
        self._dirty = False
        self.start()

    def _unpack(self, outs, expected: list[int]) -> DecodedBatch:
        images, params_tl, info_tl, msg_tl, extra_tl = outs
        params = np.asarray(params_tl.as_array())  # CPU outputs on both devices
        infos = np.asarray(info_tl.as_array())
        batch = DecodedBatch([], keep=outs)
        for j in range(len(infos)):
            info, route = infos[j], int(infos[j][I["route"]])
            row = int(info[I["index"]])
            if route == ROUTE_PAD:
                continue
            message = bytes(np.asarray(msg_tl[j])).decode("utf-8", "replace")
            if route == ROUTE_ERROR:
                self.stats["errors"] += 1
                batch.failed.append((row, message))
                if info[I["skipped"]]:
                    batch.skipped.add(row)
                continue
            if route == ROUTE_RAW:
                self.stats["routed_raw"] += 1
            image = unpack_raw(handoff.dali_to_array(images[j]), info)
            if route == ROUTE_DECODER:
                image = self._exact(image, info)
            meta, notes = unpack_extra(extra_tl[j])
            batch.samples.append(
                DecodedSample(row, image, params[j].copy(), info.copy(), ROUTES[route], message, meta, notes)
            )
        got = sorted([s.index for s in batch.samples] + [i for i, _ in batch.failed])
        if got != sorted(r for r in expected if r >= 0):
            log.error("batch rows %s differ from the plan %s", got, [r for r in expected if r >= 0])
        return batch

    def _fallback(self, rows: list[int]) -> DecodedBatch:
        """Decode a failed batch sample by sample: batch-1 decoder, then the CPU backend."""
        batch = DecodedBatch([], fell_back=True)
        for row in rows:
            if row < 0:
                continue
            rec = self.source.record(row, self.syntaxes)
            if rec.route == ROUTE_ERROR:
                self.stats["errors"] += 1
                batch.failed.append((row, rec.message))
                if rec.skipped:
                    batch.skipped.add(row)
                continue
            if rec.route == ROUTE_RAW:
                image = unpack_raw(handoff.to_device(rec.raw, self.device), rec.info)
                batch.samples.append(
                    DecodedSample(row, image, rec.params, rec.info, "raw", rec.message, rec.meta, rec.notes)
                )
                continue
            self.stats["retried"] += 1
            arr = self.decode_one(rec.codestream)
            if arr is not None:
                image = self._exact(unpack_raw(arr, rec.info), rec.info)
                batch.samples.append(DecodedSample(row, image, rec.params, rec.info, "retry", "", rec.meta, rec.notes))
                continue
            self.stats["retry_failures"] += 1
            cpu = self.source.record(row, frozenset())  # no GPU syntax: decoded on the CPU, contained
            if cpu.route != ROUTE_RAW:
                batch.failed.append((row, cpu.message))
                continue
            self.stats["cpu_fallback"] += 1
            log.warning(
                "%s: the DALI %s decoder failed on it; decoded with %s on the CPU instead",
                self.paths[row],
                self.device,
                cpu.backend,
            )
            image = unpack_raw(handoff.to_device(cpu.raw, self.device), cpu.info)
            batch.samples.append(
                DecodedSample(row, image, cpu.params, cpu.info, "cpu", cpu.message, cpu.meta, cpu.notes)
            )
        return batch


__all__ = [
    "BYTES_PER_SAMPLE_HINT",
    "PIPELINE_DEVICES",
    "DecodeRunner",
    "DecodedBatch",
    "DecodedSample",
    "INFO",
    "PARAMS",
    "ROUTE_DECODER",
    "close_pipeline",
    "make_decode_pipeline",
    "make_single_pipeline",
]
