"""The worker pool: crash and hang containment, nothing lost, order-independent results."""

from __future__ import annotations

import os
import signal
import time

from decode.errors import DicomError
from decode.parallel import map_files


def square_or_die(x):
    if x == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if x == "hang":
        time.sleep(60)
    if x == "raise":
        raise ValueError("boom")
    return int(x) ** 2


def test_all_items_accounted_with_crash_hang_and_error():
    items = ["1", "2", "segv", "3", "hang", "raise", "4", "5"]
    t0 = time.monotonic()
    out = {it: (ok, res) for it, ok, res in map_files(square_or_die, items, workers=2, timeout=3)}
    assert time.monotonic() - t0 < 30
    assert set(out) == set(items)
    for good in ("1", "2", "3", "4", "5"):
        assert out[good] == (True, int(good) ** 2)
    for bad, word in (("segv", "crashed"), ("hang", "timed out"), ("raise", "boom")):
        ok, err = out[bad]
        assert not ok and isinstance(err, DicomError) and word in err.reason and err.path == bad


def test_in_process_path_same_results():
    out = sorted((it, ok, res) for it, ok, res in map_files(square_or_die, ["3", "1"], workers=1))
    assert out == [("1", True, 1), ("3", True, 9)]
