"""The DICOM source of the DALI pipelines: a picklable callback for a parallel external source.

DALI's worker processes (started with ``spawn``; they never touch CUDA) call
:class:`DicomSource` once per sample. It turns the row into a
:class:`~dali_pipelines.records.SampleRecord` (read, parse, route, CPU decode where the
GPU must not decode; see :mod:`dali_pipelines.records`) and returns its seven outputs.
With a per-file ``timeout`` (the loader's default is 300 s) the record is made in a child
process of the DALI worker (:class:`~dali_pipelines.records.ContainedPreparer`): a read or
decoder that hangs or crashes costs its row only, never the pipeline; with ``timeout=None``
it is made in the DALI worker itself. The callback never raises (an exception would fail
the whole batch), except ``StopIteration`` at the end of the epoch.

The row order of each epoch is read from an :class:`EpochPlan` file that the main
process writes before the epoch starts (the sampler lives there, the workers cannot
see it). Plans are padded to a whole number of batches with ``-1`` rows, which become
``pad`` samples (DALI drops a final partial batch of a ``batch=False`` source).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import numpy as np

from decode.atomic import atomic_write

from .records import ContainedPreparer, PrepareRow, SampleRecord, pad_record


class EpochPlan:
    """Row order of each epoch, shared with the workers through small files.

    ``plan-<epoch>.npz`` holds ``rows`` (int64, ``-1`` = padding) and ``syntaxes`` (the
    transfer syntaxes the decoder takes in that epoch). Written atomically by the main
    process before the epoch's first batch is scheduled.
    """

    def __init__(self, folder: str):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)

    def path(self, epoch: int) -> str:
        return os.path.join(self.folder, f"plan-{epoch}.npz")

    def write(self, epoch: int, rows: Sequence[int], *, batch_size: int, syntaxes: Iterable[str]) -> np.ndarray:
        """Write epoch ``epoch``'s plan; returns the padded rows."""
        rows = np.asarray(list(rows), np.int64)
        pad = (-len(rows)) % batch_size
        padded = np.concatenate([rows, np.full(pad, -1, np.int64)])
        syn = np.array(sorted(syntaxes) or [""], dtype=str)

        def writer(f):
            np.savez(f, rows=padded, syntaxes=syn)

        atomic_write(self.path(epoch), writer)
        # drop plans two epochs old (workers may still be on the previous one)
        old = self.path(epoch - 2)
        if epoch >= 2 and os.path.exists(old):
            os.unlink(old)
        return padded

    def load(self, epoch: int) -> tuple[np.ndarray, frozenset]:
        with np.load(self.path(epoch), allow_pickle=False) as z:
            return z["rows"], frozenset(s for s in z["syntaxes"].tolist() if s)


class DicomSource:
    """Per-sample callback for ``fn.external_source(parallel=True, batch=False)``.

    Picklable (sent to spawned workers). Sample ``k`` of epoch ``e`` is row
    ``plan(e).rows[k]``; past the end of the plan it raises ``StopIteration``.

    Args:
        paths: DICOM files, one per row.
        plan_dir: folder of the :class:`EpochPlan`.
        backend: CPU backend for samples routed to the CPU.
        fail_indices: test hook: rows whose codestream is broken on purpose (see
            :func:`~dali_pipelines.records.prepare_sample`), to exercise the per-batch fallback.
        timeout: seconds one file may take (read + CPU decode) before its child process is
            killed and the row reported as failed; None: no limit, prepared in the worker itself.
        task: the per-row reader (default :class:`~dali_pipelines.records.PrepareRow` over
            ``paths``); any picklable ``(row, gpu_syntaxes) -> SampleRecord`` with ``path_of``.
        for_processing: the FOR PROCESSING policy of the default reader.
    """

    def __init__(
        self,
        paths: Sequence[str],
        plan_dir: str,
        *,
        backend: str = "auto",
        fail_indices: Iterable[int] = (),
        timeout: float | None = None,
        task: PrepareRow | None = None,
        for_processing: str = "warn",
    ):
        self.paths = tuple(os.fspath(p) for p in paths)
        self.plan = EpochPlan(plan_dir)
        self.backend = backend
        self.fail_indices = frozenset(int(i) for i in fail_indices)
        self.timeout = timeout
        task = task or PrepareRow(self.paths, backend, self.fail_indices, for_processing)
        self._prepare = ContainedPreparer(task, timeout)
        self._epoch = None
        self._rows = None
        self._syntaxes = frozenset()

    def __getstate__(self):
        state = dict(self.__dict__)
        state.update(_epoch=None, _rows=None)
        return state

    def close(self) -> None:
        """Stop the child process of this copy of the source (the main process's, for fallbacks)."""
        self._prepare.close()

    def _load(self, epoch: int) -> None:
        if self._epoch != epoch:
            self._rows, self._syntaxes = self.plan.load(epoch)
            self._epoch = epoch

    def record(self, row: int, syntaxes: Iterable[str]) -> SampleRecord:
        """The record of row ``row`` (``-1``: padding), as a worker makes it."""
        if row < 0:
            return pad_record()
        return self._prepare(row, syntaxes)

    def __call__(self, sample_info) -> tuple[np.ndarray, ...]:
        self._load(sample_info.epoch_idx)
        k = sample_info.idx_in_epoch
        if k >= len(self._rows):
            raise StopIteration
        return self.record(int(self._rows[k]), self._syntaxes).outputs()
