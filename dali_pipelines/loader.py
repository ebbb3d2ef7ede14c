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

``device="cpu"`` decodes and preprocesses in worker processes with the CPU backends;
``"cuda"`` / ``"auto"`` use the GPU pipeline when CUDA, DALI and CuPy are present
(see :mod:`dali_pipelines.gpu_loader`), else the CPU path moved to the device.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from decode.errors import DicomError, as_dicom_error
from decode.intent import check_for_processing
from decode.laterality import check_laterality_source
from decode.sample import read_sample

log = logging.getLogger(__name__)

TENSOR_INDEX = "tensor_index.json"  # marks a tensor cache root (see dali_pipelines.tensor_cache)

Device = Literal["auto", "cpu", "cuda"]
DEVICES = ("auto", "cpu", "cuda")


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
        )
        return np.ascontiguousarray(smp.pre.image, dtype=np.float32), tuple(smp.notes)

    def __call__(self, i: int) -> np.ndarray:
        return self.read(i)[0]


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; validates the name."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; allowed: {', '.join(DEVICES)}")
    if device == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU")
    return "cpu"


@dataclass(frozen=True)
class _ReadRow:
    """Worker task: ``(key, row)`` → image, via the loader's reader."""

    reader: Callable[[int], np.ndarray]
    paths: tuple[str, ...]

    def __call__(self, task):
        read = getattr(self.reader, "read", None)  # readers with notes return (image, notes)
        return read(task[1]) if read is not None else self.reader(task[1])

    def path_of(self, task) -> str:
        return self.paths[task[1]]


class DicomLoader:
    """Batches of preprocessed images from DICOM files (see the module docstring).

    Args:
        paths: DICOM files, one per row.
        labels: optional per-row targets (float).
        batch_size: rows per batch (a batch may come out smaller when rows fail).
        size: ``(H, W)`` output size (aspect kept, padded).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        workers: decode processes (0: in this process). A worker that crashes or hangs
            on a file is replaced and only that row fails.
        shard: ``(rank, world)``: this process takes every ``world``-th row from ``rank``.
        sampler: an iterable of row indices, re-iterated each epoch (default 0..N−1);
            ``set_epoch`` is forwarded to it when it has one.
        reader: replaces the DICOM reader (e.g. a tensor-cache reader).
        backend: CPU decode backend name.
        flip: mirror every breast to face the same side.
        prefetch: batches prepared ahead per worker.
        drop_last: drop a final short batch.
        timeout: seconds one file may take in a worker before it is killed and the row
            reported as failed (a hung decoder never stalls training).
        for_processing: FOR PROCESSING images: ``"warn"`` (use them, note them),
            ``"skip"`` (leave them out, stage ``"skipped"``) or ``"error"`` (fail them).
        laterality: which side decides the flip when the header's laterality and the
            image disagree (``"content"`` or ``"header"``); a disagreement is noted.
        data_root: the dataset folder the paths come from; when it holds a tensor cache
            (``tensor_index.json``, made by ``rsna-mammo prepare --format tensor``) the
            loader reads the cache instead of decoding (refused if made for another size
            or chain version).
    """

    def __init__(
        self,
        paths: Sequence[str],
        labels: Sequence[float] | None = None,
        *,
        batch_size: int = 8,
        size: tuple[int, int] = (512, 256),
        device: Device = "auto",
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
        for_processing: str = "warn",
        laterality: str = "content",
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        rank, world = shard
        if not (world >= 1 and 0 <= rank < world):
            raise ValueError(f"shard {shard} is not (rank, world) with 0 <= rank < world")
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(labels)} labels for {len(paths)} paths")
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
        self.for_processing = check_for_processing(for_processing)
        self.laterality = check_laterality_source(laterality)
        if reader is None and data_root and os.path.exists(os.path.join(data_root, TENSOR_INDEX)):
            from .tensor_cache import TensorCacheReader

            reader = TensorCacheReader.open(
                data_root, self.paths, self.size, flip=flip, laterality=laterality, for_processing=for_processing
            )
        self.reader = reader or SampleReader(tuple(self.paths), self.size, backend, flip, for_processing, laterality)
        self.prefetch = prefetch
        self.drop_last = drop_last
        self.timeout = timeout
        self.failures: list[dict] = []
        self.notes: list[dict] = []
        self.epoch = 0

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

    def uses_gpu_pipeline(self) -> bool:
        """True when batches come from the DALI GPU pipeline (CUDA, DALI and CuPy present)."""
        if self.device != "cuda" or isinstance(self.reader, SampleReader) is False:
            return False
        import importlib.util

        if importlib.util.find_spec("dali_pipelines.gpu_loader") is None:
            return False
        from .gpu_loader import gpu_pipeline_available

        return gpu_pipeline_available()

    def __iter__(self) -> Iterator[dict]:
        if self.uses_gpu_pipeline():
            from .gpu_loader import iterate_gpu

            if (self.for_processing, self.laterality) != ("warn", "content"):
                log.warning("the GPU pipeline does not apply for_processing / laterality options yet")

            yield from iterate_gpu(self)
            return
        yield from self._iterate_cpu()

    def _iterate_cpu(self) -> Iterator[dict]:
        """Decode in worker processes (crash/hang contained), batches in sampler order."""
        batches = self._batches()
        task = _ReadRow(self.reader, tuple(self.paths))
        if self.workers == 0:
            for rows in batches:
                samples = []
                for i in rows:
                    ok, res = _read_one(task, i)
                    samples.append((i, res if ok else None, None if ok else res))
                yield self._make_batch(samples)
            return
        from decode.parallel import WorkerPool

        window = max(1, self.prefetch * self.workers)
        with WorkerPool(task, self.workers, timeout=self.timeout, path_of=task.path_of) as pool:
            done: dict = {}
            for b in range(min(window, len(batches))):
                for pos, i in enumerate(batches[b]):
                    pool.submit((b, pos), (b, i))
            for b, rows in enumerate(batches):
                while any((b, pos) not in done for pos in range(len(rows))):
                    key, ok, res = pool.next_result()
                    done[key] = (ok, res)
                ahead = b + window
                if ahead < len(batches):
                    for pos, i in enumerate(batches[ahead]):
                        pool.submit((ahead, pos), (ahead, i))
                samples = []
                for pos, i in enumerate(rows):
                    ok, res = done.pop((b, pos))
                    samples.append((i, res if ok else None, None if ok else res))
                yield self._make_batch(samples)

    def _make_batch(self, samples) -> dict:
        import torch

        failed = [
            {
                "index": i,
                "path": self.paths[i],
                "stage": "skipped" if getattr(err, "kind", "") == "skipped" else "decode",
                "reason": getattr(err, "reason", str(err)),
            }
            for i, _img, err in samples
            if err is not None
        ]
        self.failures.extend(failed)
        good = [(i, *(img if isinstance(img, tuple) else (img, ()))) for i, img, err in samples if err is None]
        notes = [{"index": i, "path": self.paths[i], "note": n} for i, _img, ns in good for n in ns]
        self.notes.extend(notes)
        good = [(i, img) for i, img, _ns in good]
        idx = torch.tensor([i for i, _ in good], dtype=torch.long)
        if not good:
            return {"image": None, "label": None, "index": idx, "failed": failed, "notes": notes}
        images = torch.from_numpy(np.stack([img for _, img in good])[:, None])
        if self.device == "cuda":
            images = images.pin_memory().to("cuda", non_blocking=True)
        label = None
        if self.labels is not None:
            label = torch.from_numpy(self.labels[idx.numpy()]).to(images.device)
        return {"image": images, "label": label, "index": idx.to(images.device), "failed": failed, "notes": notes}


def _read_one(task: _ReadRow, i: int):
    try:
        return True, task((0, i))
    except DicomError as exc:
        return False, exc
    except Exception as exc:
        return False, as_dicom_error(task.paths[i], exc)
