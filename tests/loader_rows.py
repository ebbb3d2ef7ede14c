"""Readers for the loader's tests, run in its worker processes.

Kept apart from ``test_loader.py`` (which imports torch): a worker process that is spawned
(once CuPy, DALI or nvImageCodec is imported in the test process) imports the module that
defines its reader, and here that costs numpy only, not torch's seconds of start-up.
"""

from __future__ import annotations

import os
import signal

import numpy as np

from decode.errors import SkippedDicomError

SIZE = (4, 3)


class Rows:
    """Row ``i`` → a ``SIZE`` float32 image filled with ``i``; some rows fail, crash or carry notes."""

    def __init__(self, bad=(), skip=(), crash=()):
        self.bad, self.skip, self.crash = set(bad), set(skip), set(crash)

    def image(self, i):
        if i in self.crash:
            os.kill(os.getpid(), signal.SIGSEGV)
        if i in self.bad:
            raise ValueError(f"row {i} is broken")
        if i in self.skip:
            raise SkippedDicomError(f"p{i}.dcm", "FOR PROCESSING image left out")
        return np.full(SIZE, float(i), np.float32)

    def __call__(self, i):
        return self.image(i)


class NotedRows(Rows):
    def read(self, i):
        return self.image(i), (f"note {i}",) if i % 2 else ()
