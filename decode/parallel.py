"""Run a function over many files in a process pool; a dying worker takes down only its file.

When a native decoder crashes its worker (SIGSEGV, abort), ``ProcessPoolExecutor``
breaks. The files that had not finished are then retried one at a time in fresh
single-worker pools, so the culprit is identified and reported and the rest complete.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator, List, Tuple

from .errors import CorruptDicomError, DicomError, as_dicom_error

log = logging.getLogger(__name__)


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _call(fn, item):
    try:
        return True, fn(item)
    except DicomError as exc:
        return False, exc
    except Exception as exc:
        return False, as_dicom_error(str(item), exc)


def map_files(fn: Callable, items: Iterable, *, workers: int = 0, path_of: Callable = str
              ) -> Iterator[Tuple[object, bool, object]]:
    """Yield ``(item, ok, result_or_DicomError)`` for every item, in completion order.

    Args:
        fn: a picklable top-level function ``item -> result``; a :class:`DicomError`
            (or any exception) it raises becomes that item's failure.
        workers: processes; 0 means all cores; 1 runs in this process.
        path_of: names the file an item is about (for crash reports).
    """
    items = list(items)
    workers = workers or default_workers()
    if workers <= 1 or len(items) <= 1:
        for it in items:
            ok, res = _call(fn, it)
            yield it, ok, res
        return
    pending = list(range(len(items)))
    done = set()
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
            futs = {pool.submit(_call, fn, items[i]): i for i in pending}
            for fut in as_completed(futs):
                i = futs[fut]
                ok, res = fut.result()
                done.add(i)
                yield items[i], ok, res
    except BrokenProcessPool:
        left = [i for i in pending if i not in done]
        log.warning("a worker process died; retrying %d unfinished file(s) one at a time", len(left))
        for i in left:
            yield (items[i],) + _isolated(fn, items[i], path_of)


def _isolated(fn, item, path_of) -> Tuple[bool, object]:
    try:
        with ProcessPoolExecutor(max_workers=1) as pool:
            return pool.submit(_call, fn, item).result()
    except BrokenProcessPool:
        return False, CorruptDicomError(path_of(item), "the decoder crashed its worker process")
