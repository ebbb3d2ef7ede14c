"""The nvImageCodec loader engine: worker processes read, the GPU decodes whole batches; no DALI.

:class:`NvImageCodecRunner` has the same interface as DALI's
:class:`~dali_pipelines.pipelines.DecodeRunner` (``start``, ``epoch(rows)`` yielding
:class:`~dali_pipelines.records.DecodedBatch`, ``close``):

1. Worker processes — the crash/hang-contained :class:`decode.parallel.WorkerPool`,
   started before this process touches CUDA — read each file, parse the header, take the
   codestream with ``generate_frames``, check it against the header and route it
   (:func:`dali_pipelines.records.prepare_sample`, the same function DALI's source runs).
   Frames the GPU must not decode are decoded there on the CPU, with the pool's per-file
   timeout. ``prefetch`` batches are read ahead.
2. This process decodes each batch's codestreams in **one**
   ``nvimgcodec.Decoder.decode(list, params, cuda_stream)`` call
   (:class:`~decode.backends.nvimgcodec_backend.NvImageCodecDecoder`: ``allow_any_depth``,
   ``ColorSpec.UNCHANGED``) on the stream it is given; the output stays on the device as
   zero-copy CuPy views, ready in that stream's order (no host wait per image), and a
   decoder that stretches to 16 bits is undone per sample (:mod:`decode.routing`).
3. A sample the decoder returns no image for goes back to the worker pool and is decoded
   on the CPU for that sample only; a file that cannot be decoded at all is a ``failed``
   row. Every row ends as a sample or a failure, in row order.

With ``device="cpu"`` the same flow runs on nvImageCodec's ``CPU_ONLY`` backend (JPEG 2000
and HTJ2K; lossless JPEG is routed to the CPU backends) with numpy — how it is tested
without a GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np

from decode.backends.depth import SYNTAX_CODES
from decode.routing import CPU_SYNTAXES, GPU_SYNTAXES

from .records import (
    ROUTE_DECODER,
    ROUTE_ERROR,
    ROUTE_RAW,
    DecodedBatch,
    DecodedSample,
    I,
    PrepareRow,
    SampleRecord,
    error_record,
    unpack_raw,
)

log = logging.getLogger(__name__)

#: Seconds between checks of the stop flag while waiting for worker results.
POLL_S = 0.2


class Stopped(Exception):
    """The epoch was abandoned (the consumer stopped early or the engine is closing)."""


class NvImageCodecRunner:
    """Decode rows batch by batch with worker-process reads and one nvImageCodec call per batch.

    Args:
        paths: DICOM files, one per row.
        batch_size: rows per decode call.
        device: ``"cuda"`` or ``"cpu"`` (``CPU_ONLY`` backend, numpy).
        device_id: the GPU.
        workers: reader processes.
        prefetch: batches read ahead of the decoder.
        backend: CPU backend for the rows routed to the CPU and for fallbacks.
        timeout: seconds one file may take in a worker (read + CPU decode) before the
            worker is killed and the row reported (None: no limit).
        fail_indices: test hook: rows whose codestream is cut so that the real decoder fails.
        decoder: an :class:`~decode.backends.nvimgcodec_backend.NvImageCodecDecoder` (or an
            object with its ``calibrate`` / ``decode_exact`` / ``modes``) to use instead of a new one.
        probe: decode the 12-bit probes first and route a codec decoded wrongly to the CPU.
        task: the per-row reader run in the workers (default :class:`~dali_pipelines.records.PrepareRow`
            over ``paths``); any picklable ``(row, gpu_syntaxes) -> SampleRecord`` with ``path_of``.
        for_processing: the FOR PROCESSING policy of the default reader (``warn``, ``skip``, ``error``).
    """

    def __init__(
        self,
        paths: Sequence[str],
        *,
        batch_size: int,
        device: str = "cuda",
        device_id: int = 0,
        workers: int = 2,
        prefetch: int = 2,
        backend: str = "auto",
        timeout: float | None = 300.0,
        fail_indices: Sequence[int] = (),
        decoder=None,
        probe: bool = True,
        task: PrepareRow | None = None,
        for_processing: str = "warn",
    ):
        if device not in ("cuda", "cpu"):
            raise ValueError(f"unknown device {device!r}; allowed: cuda, cpu")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.paths = tuple(os.fspath(p) for p in paths)
        self.batch_size = int(batch_size)
        self.device, self.device_id = device, int(device_id)
        self.workers, self.prefetch = max(1, int(workers)), max(1, int(prefetch))
        self.backend, self.timeout = backend, timeout
        self.fail_indices = frozenset(int(i) for i in fail_indices)
        self.decoder = decoder
        self.probe = probe
        self.task = task or PrepareRow(self.paths, backend, self.fail_indices, for_processing)
        self.syntaxes = frozenset(GPU_SYNTAXES if device == "cuda" else CPU_SYNTAXES)
        self.stats = {
            "batches": 0,
            "decoded": 0,
            "decoder_failures": 0,
            "cpu_fallback": 0,
            "routed_raw": 0,
            "errors": 0,
        }
        self._pool = None
        self._stop = threading.Event()
        self._epoch = 0
        self._done: dict = {}

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> NvImageCodecRunner:
        """Start the reader processes first (before CUDA is touched here), then the decoder and its probe."""
        if self._pool is not None:
            return self
        from decode.parallel import WorkerPool

        self._pool = WorkerPool(self.task, self.workers, timeout=self.timeout, path_of=self.task.path_of)
        if self.decoder is None:
            from decode.backends.nvimgcodec_backend import NvImageCodecDecoder

            self.decoder = NvImageCodecDecoder(device=self.device, device_id=self.device_id)
        if self.probe:
            self.syntaxes = self.syntaxes & self.decoder.calibrate(self.syntaxes)
        return self

    def close(self) -> None:
        """Stop the reader processes (none is leaked); the decoder's memory goes with its images."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._done.clear()

    def __enter__(self) -> NvImageCodecRunner:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- decoding ---------------------------------------------------------------------------
    def epoch(
        self, rows: Sequence[int], *, cuda_stream: int = 0, stop: threading.Event | None = None
    ) -> Iterator[DecodedBatch]:
        """Decode ``rows`` in order, one :class:`DecodedBatch` per ``batch_size`` rows.

        Args:
            rows: row indices (a sampler's order, a shard).
            cuda_stream: the stream decode and device copies are issued on (GPU).
            stop: when set (by another thread), the epoch ends with :class:`Stopped` at the
                next wait for a worker (within :data:`POLL_S` seconds).

        Every row ends in a batch's ``samples`` or ``failed``. Stopping early is allowed:
        the rows still being read are discarded as they arrive.
        """
        rows = [int(r) for r in rows]
        if not rows:
            return
        self.start()
        self._stop = stop or threading.Event()
        self._epoch += 1
        ep = self._epoch
        self._done = {k: v for k, v in self._done.items() if k[1] == ep}  # results of abandoned epochs
        batches = [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        ahead = 0
        for b, batch_rows in enumerate(batches):
            while ahead < len(batches) and ahead <= b + self.prefetch:
                for pos, row in enumerate(batches[ahead]):
                    self._pool.submit(("read", ep, ahead, pos), (row, self.syntaxes))
                ahead += 1
            keys = [("read", ep, b, pos) for pos in range(len(batch_rows))]
            records = [self._record(row, res) for row, res in zip(batch_rows, self._collect(keys), strict=True)]
            yield self._decode(records, ep, cuda_stream)

    def _collect(self, keys: list) -> list:
        """The results of ``keys`` (in order), waiting on the pool; discards results of old epochs."""
        want = set(keys)
        while not want <= self._done.keys():
            got = self._pool.next_result(timeout=POLL_S)
            if got is None:
                if self._stop.is_set():
                    raise Stopped
                continue
            key, ok, res = got
            if key[1] == self._epoch:
                self._done[key] = (ok, res)
        return [self._done.pop(k) for k in keys]

    @staticmethod
    def _record(row: int, result) -> SampleRecord:
        """A worker's record, or an ``error`` record for a worker that crashed or timed out on ``row``."""
        ok, res = result
        return res if ok else error_record(row, res.reason)

    def _decode(self, records: list[SampleRecord], ep: int, cuda_stream: int) -> DecodedBatch:
        """One decode call for the batch's decoder rows; CPU fallback for the ones it returns nothing for."""
        batch = DecodedBatch([])
        by_row: dict[int, DecodedSample] = {}
        failed: dict[int, str] = {}
        gpu = [r for r in records if r.route == ROUTE_DECODER]
        with self._on_stream(cuda_stream):
            arrays = []
            if gpu:
                arrays = self.decoder.decode_exact(
                    [r.codestream for r in gpu],
                    [SYNTAX_CODES[int(r.info[I["syntax"]])] for r in gpu],
                    precisions=[int(r.info[I["precision"]]) for r in gpu],
                    cuda_stream=cuda_stream,
                )
            retry = []
            for r, arr in zip(gpu, arrays, strict=True):
                if arr is None:
                    retry.append(r)
                    continue
                self.stats["decoded"] += 1
                image = unpack_raw(arr, r.info)
                by_row[r.index] = DecodedSample(r.index, image, r.params, r.info, "decoder", "", r.meta, r.notes)
            for r in records:
                if r.route == ROUTE_RAW:
                    self.stats["routed_raw"] += 1
                    by_row[r.index] = self._raw_sample(r, "raw")
                elif r.route == ROUTE_ERROR:
                    self.stats["errors"] += 1
                    failed[r.index] = r.message
                    if r.skipped:
                        batch.skipped.add(r.index)
            if retry:
                self.stats["decoder_failures"] += len(retry)
                keys = [("cpu", ep, r.index) for r in retry]
                for k, r in zip(keys, retry):
                    self._pool.submit(k, (r.index, frozenset()))  # no GPU syntax: decoded on the CPU
                for r, res in zip(retry, self._collect(keys), strict=True):
                    cpu = self._record(r.index, res)
                    if cpu.route != ROUTE_RAW:
                        failed[r.index] = cpu.message
                        continue
                    self.stats["cpu_fallback"] += 1
                    log.warning(
                        "%s: nvImageCodec (%s) returned no image; decoded with %s on the CPU instead",
                        self.paths[r.index],
                        self.device,
                        cpu.backend,
                    )
                    by_row[r.index] = self._raw_sample(cpu, "cpu")
        self.stats["batches"] += 1
        batch.samples = [by_row[r.index] for r in records if r.index in by_row]
        batch.failed = [(r.index, failed[r.index]) for r in records if r.index in failed]
        batch.keep = arrays
        return batch

    def _raw_sample(self, r: SampleRecord, route: str) -> DecodedSample:
        image = unpack_raw(self._to_device(r.raw), r.info)
        return DecodedSample(r.index, image, r.params, r.info, route, r.message, r.meta, r.notes)

    def _to_device(self, raw: np.ndarray):
        if self.device == "cpu":
            return raw
        import cupy

        return cupy.asarray(raw)  # on the current (engine) stream

    def _on_stream(self, ptr: int):
        """CuPy work on the engine's stream (a no-op context on the CPU)."""
        if self.device != "cuda":
            return contextlib.nullcontext()
        import cupy

        return cupy.cuda.ExternalStream(int(ptr)) if ptr else cupy.cuda.Stream.null
