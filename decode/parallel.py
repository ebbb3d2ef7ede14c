"""Worker processes with crash and hang containment, for files that may be hostile.

Each worker is a process with its own pipe. A task that makes its worker die (a native
decoder's SIGSEGV or abort) or run past ``timeout`` seconds is reported as that item's
failure (a :class:`~decode.errors.CorruptDicomError`); the worker is killed if needed and
replaced, and every other item completes. Used by ``rsna-mammo decode``, the
`DicomLoader`'s engines (the CPU workers, the nvImageCodec engine's readers, the DALI
source's per-file child), ``prepare`` and the benchmarks.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from multiprocessing.connection import wait

from .errors import CorruptDicomError, DicomError, as_dicom_error

log = logging.getLogger(__name__)


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def call_item(fn: Callable, item, path_of: Callable | None = None) -> tuple[bool, object]:
    """``(True, fn(item))``, or ``(False, DicomError)`` naming the item's file.

    The file is ``path_of(item)``, else ``fn.path_of(item)`` when ``fn`` has one (a task
    whose items are row numbers), else ``str(item)`` (items that are paths).
    """
    try:
        return True, fn(item)
    except DicomError as exc:
        return False, exc
    except Exception as exc:
        name = path_of or getattr(fn, "path_of", None) or str
        return False, as_dicom_error(name(item), exc)


#: What a worker sends once it has started (a 1-tuple; results are 3-tuples).
READY = ("ready",)
#: Seconds a worker may take to start (spawn + imports) before its item is failed.
STARTUP_LIMIT = 120.0
#: Seconds a worker asked to stop has to exit before it is killed (and a killed one to be reaped).
STOP_GRACE = 5.0


def _worker_main(conn, fn) -> None:
    from .liblog import install

    install()  # a spawned worker starts without the parent's log routing
    try:
        conn.send(READY)  # the per-item clock starts now, not while this process was starting
        while True:
            msg = conn.recv()
            if msg is None:
                break
            key, item = msg
            conn.send((key,) + call_item(fn, item))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        conn.close()


#: Modules that may hold a CUDA context (or CUDA-using threads) while torch does not.
CUDA_MODULES = ("cupy", "nvidia.dali", "nvidia.nvimgcodec")


def _context():
    """``fork`` where it is safe, else ``spawn``.

    Safe means Linux and nothing in this process that may hold CUDA: torch with CUDA
    initialised, or CuPy, DALI or nvImageCodec imported at all (each can create a CUDA
    context or threads on its own, and a forked child of such a process can hang or fail).
    """
    torch = sys.modules.get("torch")
    cuda_on = bool(torch is not None and getattr(torch.cuda, "is_initialized", lambda: False)())
    cuda_on = cuda_on or any(name in sys.modules for name in CUDA_MODULES)
    if sys.platform.startswith("linux") and not cuda_on:
        return mp.get_context("fork")
    return mp.get_context("spawn")


class _Worker:
    def __init__(self, ctx, fn):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, fn), daemon=True)
        self.proc.start()
        child.close()
        self.key: Hashable | None = None
        self.item = None
        self.born = time.monotonic()
        self.ready = False  # set when its READY message is read: only then does an item's clock run
        self.started: float | None = None

    def due(self, timeout: float | None) -> float | None:
        """When this busy worker's item times out (or its start-up does); None: never."""
        if not self.ready:
            return self.born + STARTUP_LIMIT
        return None if timeout is None else self.started + timeout

    def stop(self, *, kill: bool) -> None:
        """Kill the process, or ask it to exit and kill it after :data:`STOP_GRACE` seconds."""
        try:
            if kill:
                self.proc.kill()
            else:
                self.conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(timeout=STOP_GRACE)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=STOP_GRACE)
        self.conn.close()


class WorkerPool:
    """A fixed set of worker processes running ``fn(item)``; results come back by key.

    Args:
        fn: a picklable top-level callable; exceptions become the item's failure.
        workers: number of processes (0: all cores).
        timeout: seconds one item may run before its worker is killed (None: no limit).
        path_of: names the file an item is about, for crash and timeout reports.

    Use as a context manager; :meth:`close` stops every worker (none is leaked).
    """

    def __init__(self, fn: Callable, workers: int = 0, *, timeout: float | None = None, path_of: Callable = str):
        self.fn = fn
        self.timeout = timeout
        self.path_of = path_of
        self._ctx = _context()
        self._queue: deque = deque()
        self._done: deque = deque()
        self._workers: list[_Worker] = [_Worker(self._ctx, fn) for _ in range(workers or default_workers())]

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Items submitted and not yet returned (queued, running, or finished and not yet taken)."""
        return len(self._queue) + sum(w.key is not None for w in self._workers) + len(self._done)

    def submit(self, key: Hashable, item) -> None:
        """Queue ``item``; its result comes back from :meth:`results` under ``key``."""
        self._queue.append((key, item))
        self._feed_idle()

    def _feed(self, w: _Worker) -> None:
        if self._queue:
            w.key, w.item = self._queue.popleft()
            w.started = time.monotonic() if w.ready else None
            w.conn.send((w.key, w.item))
        else:
            w.key = w.item = None

    def _feed_idle(self) -> None:
        for w in self._workers:
            if w.key is None and self._queue:
                self._feed(w)

    def next_result(self, timeout: float | None = None) -> tuple[Hashable, bool, object] | None:
        """Block until one item finishes; return ``(key, ok, result_or_DicomError)``.

        Args:
            timeout: give up after this many seconds and return None (None: wait as long as
                it takes; a hung item still ends at the pool's per-item timeout).

        Raises:
            LookupError: nothing is pending.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.pending:
            raise LookupError("no item is pending")
        while not self._done:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            self._poll(left)
        return self._done.popleft()

    def results(self) -> Iterator[tuple[Hashable, bool, object]]:
        """Yield ``(key, ok, result_or_DicomError)`` as items finish, until none is pending."""
        while self.pending:
            yield self.next_result()

    def _poll(self, limit: float | None = None) -> None:
        busy = [w for w in self._workers if w.key is not None]
        wait_for = limit
        dues = [d for d in (w.due(self.timeout) for w in busy) if d is not None]
        if dues:
            due = min(dues) - time.monotonic()  # past due: wait() takes a negative timeout as zero
            wait_for = due if wait_for is None else min(wait_for, due)
        ready = wait([w.conn for w in busy], timeout=wait_for)
        now = time.monotonic()
        for i, w in enumerate(list(self._workers)):
            if w.key is None:
                continue
            failure = None
            if w.conn in ready:
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    failure = "the decoder crashed its worker process"
                else:
                    if msg == READY:
                        w.ready, w.started = True, now
                    else:
                        key, ok, res = msg
                        self._feed(w)
                        self._done.append((key, ok, res))
            else:
                due = w.due(self.timeout)
                if due is not None and now >= due:
                    failure = (
                        f"timed out after {self.timeout:g} s (worker killed)"
                        if w.ready
                        else f"its worker process did not start within {STARTUP_LIMIT:g} s"
                    )
            if failure:
                key, item = w.key, w.item
                w.stop(kill=True)
                # the item's failure carries the reason; the caller reports it (one line per file)
                log.info("%s: %s", self.path_of(item), failure)
                self._workers[i] = _Worker(_context(), self.fn)  # CUDA may be up by now
                self._feed(self._workers[i])
                self._done.append((key, False, CorruptDicomError(self.path_of(item), failure)))

    def close(self) -> None:
        """Stop every worker (killing busy ones)."""
        self._queue.clear()
        self._done.clear()
        for w in self._workers:
            w.stop(kill=w.key is not None)
        self._workers = []


def map_files(
    fn: Callable, items: Iterable, *, workers: int = 0, timeout: float | None = None, path_of: Callable = str
) -> Iterator[tuple[object, bool, object]]:
    """Yield ``(item, ok, result_or_DicomError)`` for every item, in completion order.

    Args:
        fn: a picklable top-level function ``item -> result``.
        workers: processes; 0 means all cores; 1 without ``timeout`` runs in this process.
        timeout: seconds one item may take before its worker is killed and it is reported.
        path_of: names the file an item is about (for crash and timeout reports).
    """
    items = list(items)
    workers = min(workers or default_workers(), max(1, len(items)))
    if (workers <= 1 and timeout is None) or not items:
        for it in items:
            ok, res = call_item(fn, it, path_of)
            yield it, ok, res
        return
    with WorkerPool(fn, workers, timeout=timeout, path_of=path_of) as pool:
        for i, it in enumerate(items):
            pool.submit(i, it)
        for i, ok, res in pool.results():
            yield items[i], ok, res
