"""Per-row readers for the GPU engines' tests (importable by spawned worker processes)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from dali_pipelines.records import PrepareRow


@dataclass(frozen=True)
class HangingPrepareRow(PrepareRow):
    """The real reader, except that rows in ``hang_rows`` hang (a stuck network read, a decoder loop)."""

    hang_rows: frozenset = frozenset()

    def __call__(self, task):
        row, _syntaxes = task
        if row in self.hang_rows:
            time.sleep(3600)
        return super().__call__(task)


@dataclass(frozen=True)
class CrashingPrepareRow(PrepareRow):
    """The real reader, except that rows in ``crash_rows`` kill their process (a native decoder's SIGSEGV)."""

    crash_rows: frozenset = frozenset()

    def __call__(self, task):
        row, _syntaxes = task
        if row in self.crash_rows:
            os.kill(os.getpid(), 11)
        return super().__call__(task)
