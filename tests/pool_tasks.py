"""Tasks the worker-pool tests run in the pool's worker processes.

Kept apart from ``test_parallel.py`` (which imports pytest): a worker process that is spawned
(once CuPy, DALI or nvImageCodec is imported in the test process) imports the module that
defines its task, and here that costs the standard library only.
"""

from __future__ import annotations

import os
import signal
import time

from decode.errors import CorruptDicomError


def square_or_die(x):
    if x == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == "hang":
        time.sleep(60)
    if x == "nap":  # finishes, but well after the tests' item timeouts
        time.sleep(3)
    if x == "raise":
        raise ValueError("boom")
    return int(x) ** 2


class SlowToStart:
    """A task whose unpickling in a spawned worker takes ``delay`` seconds (heavy imports under load)."""

    def __init__(self, delay: float):
        self.delay = delay

    def __getstate__(self):
        return {"delay": self.delay}

    def __setstate__(self, state):
        time.sleep(state["delay"])
        self.delay = state["delay"]

    def __call__(self, x):
        return int(x) + 1


class RowTask:
    """A task over row numbers that names each row's file itself (``path_of``), as the loader's are."""

    paths = ("a.dcm", "b.dcm")

    def __call__(self, row):
        raise OSError(f"cannot read row {row}")

    def path_of(self, row) -> str:
        return self.paths[row]


def pid_of(_item):
    return os.getpid()


def fail_as_dicom(item):
    raise CorruptDicomError(f"/data/{item}.dcm", "bad tile")


def stalled_worker_main(conn, fn):
    """A worker process that never gets as far as saying it is ready."""
    time.sleep(60)
