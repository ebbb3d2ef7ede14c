"""The per-row work of ``rsna-mammo prepare`` (runs in worker processes) and its output sink.

:func:`run_task` transcodes one row (HTJ2K) or runs the loader's chain on it (tensor);
:class:`Sink` (in the parent) writes finished rows out in chunks — a tensor shard,
then the journal file that records its rows — so a row is recorded only once its
output is in place; :func:`clean_leftovers` removes what a killed run left behind.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass

import numpy as np

from decode.errors import DicomError, as_dicom_error

from . import state
from .config import PrepareConfig, Row

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One row's work, sent to a worker process."""

    row: Row
    out: str
    format: str
    size: tuple[int, int] | None
    flip: bool
    backend: str
    decode_scale: str = "full"
    laterality: str = "content"
    for_processing: str = "warn"

    def __str__(self) -> str:
        return self.row.src


class ChainError(DicomError):
    """The preprocessing chain failed on a decoded image."""

    kind = "preprocess"
    stage = "preprocess"


_PARENT_WATCH = False


def _die_with_parent() -> None:
    """In a worker process: be killed when the parent dies (Linux), so a kill -9 of ``prepare``
    leaves no orphan worker that would rename a file into place behind the next run's back."""
    global _PARENT_WATCH
    if _PARENT_WATCH:
        return
    _PARENT_WATCH = True
    import multiprocessing

    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl here
        return
    if os.getppid() != parent.pid:  # the parent died before the watch was set
        os._exit(1)


def base_record(row: Row) -> dict:
    """The journal record of a row before its output is known."""
    return {
        "image_id": row.image_id,
        "rel": row.rel,
        "split": row.split,
        "patient_id": row.patient_id,
        "status": "ok",
        "source": state.source_stat(row.src),
    }


def run_task(task: Task):
    """Do one row (runs in a worker). Returns the journal record (and, for tensors, the uint16 image)."""
    _die_with_parent()
    row = task.row
    rec = base_record(row)
    if task.format == "htj2k":
        from decode.transcode import transcode_file

        dst = os.path.join(task.out, row.rel)
        try:
            res = transcode_file(row.src, dst, backend=task.backend)
        except BaseException:
            # this row is being redone, so any file already there is unverified (stale or torn):
            # never leave it where a reader of the cache would take it for the image
            try:
                os.unlink(dst)
            except OSError:
                pass
            raise
        st = state.source_stat(res.dst)
        rec.update(
            file_size=st["size"],
            file_mtime_ns=st["mtime_ns"],
            pixel_checksum=res.pixel_checksum,
            shape=list(res.shape),
            dtype=res.dtype,
            source_syntax=res.source_syntax,
            bytes_in=res.bytes_in,
        )
        return rec, None
    from dali_pipelines.tensor_cache import to_stored
    from decode.sample import read_sample
    from decode.scale import effective_scale

    try:
        smp = read_sample(
            row.src,
            size=task.size,
            backend=task.backend,
            flip=task.flip,
            for_processing=task.for_processing,
            laterality=task.laterality,
            decode_scale=effective_scale(task.decode_scale),
        )
    except DicomError:
        raise
    except Exception as exc:
        raise ChainError(row.src, f"preprocessing failed: {type(exc).__name__}: {exc}") from None
    pre = smp.pre
    img = to_stored(pre.image)
    rec.update(
        shape=list(img.shape), box=[int(v) for v in pre.box], flipped=bool(pre.flipped), reduction=int(pre.reduction)
    )
    if smp.notes:
        rec["notes"] = smp.notes
    return rec, img


def run_gpu_tasks(cfg: PrepareConfig, tasks: list[Task], engine: str):
    """Tensor rows through a GPU engine (decode and chain on the device); yields ``(task, ok, result)``.

    ``result`` is ``(record, uint16 image)`` as :func:`run_task` returns, or the row's
    :class:`~decode.errors.DicomError`. The engine's worker processes read and route the
    files (CPU-routed ones decoded there, under the engine's per-file timeout).
    """
    from dali_pipelines.decode_files import decode_jobs
    from dali_pipelines.devices import resolve_device
    from dali_pipelines.tensor_cache import to_stored
    from decode.cli_decode import DecodeJob
    from decode.parallel import default_workers

    jobs = [
        DecodeJob(t.row.src, "", "crop", t.size, t.backend, t.flip, False, "full", t.for_processing, t.laterality)
        for t in tasks
    ]
    task_of = {id(j): t for j, t in zip(jobs, tasks)}  # jobs come back as the same objects

    def keep(job, img, info):
        task = task_of[id(job)]
        rec = base_record(task.row)
        stored = to_stored(img)
        rec.update(
            shape=list(stored.shape), box=[int(v) for v in info["box"]], flipped=bool(info["flipped"]), reduction=0
        )
        if info.get("notes"):
            rec["notes"] = info["notes"]
        return rec, stored

    results = decode_jobs(
        jobs,
        engine=engine,
        device=resolve_device("auto"),
        workers=cfg.workers or default_workers(),
        write=keep,
        timeout=300.0,
    )
    for job, ok, res in results:
        if not ok and not isinstance(res, DicomError):
            res = as_dicom_error(job.path, res)
        yield task_of[id(job)], ok, res


def error_record(row: Row, exc: BaseException) -> dict:
    err = as_dicom_error(row.src, exc)
    stage = getattr(err, "stage", None) or "decode"
    return {
        "image_id": row.image_id,
        "rel": row.rel,
        "status": "error",
        "t": time.time(),
        "path": row.src,
        "stage": stage,
        "reason": err.reason,
    }


class Sink:
    """Collects finished rows and writes them out in chunks (tensor shards + journal files)."""

    def __init__(self, cfg: PrepareConfig, tag: str):
        self.cfg, self.tag = cfg, tag
        self.pending: list[tuple[dict, np.ndarray | None]] = []
        self.errors: list[dict] = []
        self.ok = 0
        self.failed = 0
        self.chunk = cfg.rows_per_chunk()

    def add(self, rec: dict, img: np.ndarray | None) -> None:
        self.pending.append((rec, img))
        if len(self.pending) >= self.chunk:
            self.flush()

    def fail(self, rec: dict) -> None:
        self.errors.append(rec)
        self.failed += 1

    def flush(self) -> None:
        records = [r for r, _ in self.pending]
        if self.cfg.format == "tensor" and self.pending:
            from dali_pipelines.tensor_cache import write_shard

            name = f"{self.tag}-{uuid.uuid4().hex[:12]}"
            shard, size, placed = write_shard(self.cfg.out, name, [img for _, img in self.pending])
            for rec, (offset, checksum) in zip(records, placed):
                rec.update(shard=shard, shard_size=size, offset=offset, checksum=checksum)
        now = time.time()
        for rec in records:
            rec["t"] = now
        state.write_journal(self.cfg.out, self.tag, records + self.errors)
        self.ok += len(records)
        self.pending, self.errors = [], []


def clean_leftovers(cfg: PrepareConfig, tag: str, mine: list[Row], ok_records: dict[str, dict]) -> int:
    """Remove temporary files left by a killed run of this shard, and this shard's orphan tensor shards."""
    removed = 0
    rank, world = cfg.shard
    for folder, prefix in ((state.JOURNAL_DIR, f".{tag}-"), (state.DONE_DIR, f".{rank}of{world}.json.")):
        folder = os.path.join(cfg.out, folder)
        for n in os.listdir(folder) if os.path.isdir(folder) else []:
            if n.startswith(prefix) and n.endswith(".tmp"):
                os.unlink(os.path.join(folder, n))
                removed += 1
    if cfg.format == "tensor":
        from dali_pipelines.tensor_cache import SHARD_DIR, SHARD_SUFFIX

        folder = os.path.join(cfg.out, SHARD_DIR)
        used = {rec.get("shard") for rec in ok_records.values()}
        names = os.listdir(folder) if os.path.isdir(folder) else []
        for n in names:
            temp = n.startswith(f".{tag}-") and n.endswith(".tmp")
            orphan = n.startswith(f"{tag}-") and n.endswith(SHARD_SUFFIX) and f"{SHARD_DIR}/{n}" not in used
            if temp or orphan:
                os.unlink(os.path.join(folder, n))
                removed += 1
        return removed
    by_dir: dict[str, set] = {}
    for row in mine:
        by_dir.setdefault(os.path.dirname(os.path.join(cfg.out, row.rel)), set()).add(os.path.basename(row.rel))
    for folder, bases in by_dir.items():
        if not os.path.isdir(folder):
            continue
        for n in os.listdir(folder):
            if n.startswith(".") and n.endswith(".tmp") and n[1:].rsplit(".", 2)[0] in bases:
                os.unlink(os.path.join(folder, n))
                removed += 1
    return removed
