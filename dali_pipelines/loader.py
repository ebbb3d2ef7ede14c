"""`DicomLoader`: the one loader for training, inference, caching and benchmarks.

Yields batches as dicts::

    {"image": FloatTensor [B, 1, H, W] on the device (float32 in [0, 1]),
     "label": FloatTensor [B] or None,
     "index": LongTensor [B]   (row indices into ``paths``),
     "failed": [{"index", "path", "stage", "reason"}, ...]  (this batch's failures),
     "notes": [{"index", "path", "note"}, ...]  (one line each: FOR PROCESSING, a laterality
               disagreement, ignored header elements, what the libraries said)}

A file that cannot be read or decoded never stops the loader: it is dropped from its
batch and reported in ``failed`` (and accumulated in ``loader.failures``); a row left
out by ``for_processing="skip"`` is reported there with stage ``"skipped"``. Notes about
rows that were used are accumulated in ``loader.notes``. Row order
is the sampler's (or 0..N−1), sharded by ``shard=(rank, world)`` with no overlap.

How rows become batches is the loader's **engine** (:mod:`dali_pipelines.engines`):
``cpu`` (worker processes, CPU backends, numpy chain), ``dali`` (DALI GPU decode) or
``nvimgcodec`` (nvImageCodec batch decode on a side stream, no DALI); ``engine="auto"``
picks DALI when it imports and CUDA is there, else nvImageCodec on CUDA, else the CPU.
``loader.engine_name`` says which runs and ``loader.engine_reason`` why.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from decode.backends import BACKENDS
from decode.errors import UsageError
from decode.intent import check_for_processing
from decode.laterality import check_laterality_source
from decode.sample import read_sample
from decode.scale import DecodeScale, check_decode_scale, effective_scale, require_reduced_decoder

from .devices import Device, resolve_device
from .engines import ENGINES, make_engine, resolve_engine
from .tensor_cache import TensorCacheReader, is_tensor_cache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SampleReader:
    """Turns row ``i`` into a ``(H, W)`` float32 image (picklable; runs in workers).

    The default reads a DICOM file, decodes it and runs the chain; a cache reader
    (``rsna-mammo prepare``) can stand in with the same interface.
    """

    paths: tuple[str, ...]
    size: tuple[int, int]
    backend: str = "auto"
    flip: bool = True
    decode_scale: str = "full"  # see decode.scale: "auto" decodes JPEG 2000 only as finely as ``size`` needs
    for_processing: str = "warn"
    laterality: str = "content"

    def read(self, i: int) -> tuple[np.ndarray, tuple[str, ...]]:
        """Row ``i`` as ``(image, notes)`` (see :func:`decode.sample.read_sample`)."""
        smp = read_sample(
            self.paths[i],
            size=self.size,
            backend=self.backend,
            flip=self.flip,
            for_processing=self.for_processing,
            laterality=self.laterality,
            decode_scale=self.decode_scale,
        )
        return np.ascontiguousarray(smp.pre.image, dtype=np.float32), tuple(smp.notes)

    def __call__(self, i: int) -> np.ndarray:
        return self.read(i)[0]


class DicomLoader:
    """Batches of preprocessed images from DICOM files (see the module docstring).

    Args:
        paths: DICOM files, one per row.
        labels: optional per-row targets (float).
        batch_size: rows per batch (a batch may come out smaller when rows fail).
        size: ``(H, W)`` output size (aspect kept, padded).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        engine: ``"auto"``, ``"dali"``, ``"nvimgcodec"`` or ``"cpu"`` (see the module docstring).
            A GPU engine asked for on ``device="cpu"`` runs its CPU variant.
        workers: decode / read processes (0: in this process, CPU engine only). A worker
            that crashes or hangs on a file is replaced and only that row fails.
        shard: ``(rank, world)``: this process takes every ``world``-th row from ``rank``.
        sampler: an iterable of row indices, re-iterated each epoch (default 0..N−1);
            ``set_epoch`` is forwarded to it when it has one.
        reader: replaces the DICOM reader (e.g. a tensor-cache reader; CPU engine only).
        backend: CPU decode backend name.
        flip: mirror every breast to face the same side.
        prefetch: batches prepared ahead (per worker on the CPU engine).
        drop_last: drop a final short batch.
        timeout: seconds one file may take in a worker before it is killed and the row
            reported as failed (a hung decoder never stalls training).
        for_processing: FOR PROCESSING images: ``"warn"`` (use them, note them),
            ``"skip"`` (leave them out, stage ``"skipped"``) or ``"error"`` (fail them).
        laterality: which side decides the flip when the header's laterality and the
            image disagree (``"content"`` or ``"header"``); a disagreement is noted.
        data_root: the dataset folder the paths come from; when it holds a tensor cache
            (``tensor_index.json``, made by ``rsna-mammo prepare --format tensor``) the
            loader reads the cache instead of decoding (refused if made for another size,
            chain version, flip, decode scale, ``laterality`` or ``for_processing``).
        decode_scale: ``"auto"`` (default) decodes each JPEG 2000 / HTJ2K image at the
            coarsest resolution level whose breast crop still covers ``size`` (see
            :mod:`decode.scale`); ``"full"``, ``"1/2"``, ``"1/4"`` fix it. CPU engine only: the
            GPU engines decode at full resolution (:meth:`effective_decode_scale`).
        decoder: nvImageCodec engine: the decoder object to use (default: a new
            :class:`~decode.backends.nvimgcodec_backend.NvImageCodecDecoder`).
        fail_indices: test hook of the GPU engines: rows whose codestream is cut so that
            the real decoder fails on it (the file is untouched), to exercise the fallback.

    Use as a context manager, or call :meth:`close`, to stop the engine's processes and
    threads; a collected loader closes its engine too.
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[float] | None = None,
        *,
        batch_size: int = 8,
        size: tuple[int, int] = (512, 256),
        device: Device = "auto",
        engine: str = "auto",
        workers: int = 2,
        shard: tuple[int, int] = (0, 1),
        sampler: Iterable[int] | None = None,
        reader: Callable[[int], np.ndarray] | None = None,
        backend: str = "auto",
        flip: bool = True,
        prefetch: int = 2,
        drop_last: bool = False,
        data_root: str | None = None,
        timeout: float | None = 300.0,
        decode_scale: DecodeScale = "auto",
        for_processing: str = "warn",
        laterality: str = "content",
        decoder=None,
        fail_indices: Sequence[int] = (),
    ):
        if batch_size < 1:
            raise UsageError("batch_size must be >= 1")
        rank, world = shard
        if not (world >= 1 and 0 <= rank < world):
            raise UsageError(f"shard {shard} is not (rank, world) with 0 <= rank < world")
        if labels is not None and len(labels) != len(paths):
            raise UsageError(f"{len(labels)} labels for {len(paths)} paths")
        if engine not in ENGINES:
            raise UsageError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
        if backend != "auto" and backend not in BACKENDS:  # else every row would fail, one by one
            raise UsageError(f"unknown backend {backend!r}; allowed: auto, {', '.join(BACKENDS)}")
        self.paths = [os.fspath(p) for p in paths]
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32)
        self.batch_size = batch_size
        self.size = tuple(size)
        self.device = resolve_device(device)
        self.workers = max(0, int(workers))
        self.shard = (rank, world)
        self.sampler = sampler
        self.data_root = data_root
        self.backend = backend
        self.flip = flip
        self.decode_scale = check_decode_scale(decode_scale)
        self.for_processing = check_for_processing(for_processing)
        self.laterality = check_laterality_source(laterality)
        if reader is None and data_root and is_tensor_cache(data_root):
            reader = TensorCacheReader.open(
                data_root,
                self.paths,
                self.size,
                flip=flip,
                decode_scale=effective_scale(decode_scale),
                laterality=laterality,
                for_processing=for_processing,
            )
        if reader is None:
            require_reduced_decoder(decode_scale)
            reader = SampleReader(
                tuple(self.paths), self.size, backend, flip, effective_scale(decode_scale), for_processing, laterality
            )
        self.reader = reader
        self.prefetch = prefetch
        self.drop_last = drop_last
        self.timeout = timeout
        self.decoder = decoder
        self.fail_indices = tuple(int(i) for i in fail_indices)
        self.failures: list[dict] = []
        self.notes: list[dict] = []
        self.epoch = 0
        if not isinstance(self.reader, SampleReader):
            if engine not in ("auto", "cpu"):
                raise UsageError(
                    f"engine {engine!r} decodes DICOM files; a custom reader or a tensor cache runs on the cpu engine"
                )
            self.engine_name, self.engine_reason = "cpu", "reading with a custom reader or a tensor cache"
        else:
            self.engine_name, self.engine_reason = resolve_engine(engine, self.device)
        if self.engine_name != "cpu" and self.workers == 0:
            self.workers = 1  # the GPU engines read in worker processes
        if self.engine_name != "cpu" and self.decode_scale not in ("auto", "full"):
            log.warning(
                "decode scale %s applies to the cpu engine; the %s engine decodes at full resolution",
                self.decode_scale,
                self.engine_name,
            )
        self.engine = make_engine(self.engine_name, self)
        self._finalizer = weakref.finalize(self, self.engine.close)
        log.info("loader engine: %s (%s)", self.engine_name, self.engine_reason)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def rows(self) -> list[int]:
        """This shard's row indices for the current epoch, in order."""
        order = list(self.sampler) if self.sampler is not None else list(range(len(self.paths)))
        rank, world = self.shard
        return [int(i) for i in order[rank::world]]

    def _batches(self) -> list[list[int]]:
        rows = self.rows()
        out = [rows[i : i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        if self.drop_last and out and len(out[-1]) < self.batch_size:
            out.pop()
        return out

    def __len__(self) -> int:
        return len(self._batches())

    def effective_decode_scale(self) -> str:
        """The decode scale the images really come at: ``full`` on a GPU engine (and where OpenJPEG
        is unavailable for ``auto``), the cache's scale for a tensor cache, else the one asked."""
        if isinstance(self.reader, SampleReader):
            return self.reader.decode_scale if self.engine_name == "cpu" else "full"
        params = getattr(self.reader, "params", None)
        return getattr(params, "decode_scale", self.decode_scale)

    def __iter__(self) -> Iterator[dict]:
        yield from self.engine.batches(self)

    @property
    def stats(self) -> dict:
        """The engine's counters (GPU engines: batches, decoded, fallbacks, ...)."""
        return self.engine.stats

    def close(self) -> None:
        """Stop the engine's worker processes, pipelines and threads (a later epoch starts new ones)."""
        self.engine.close()

    def __enter__(self) -> DicomLoader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
