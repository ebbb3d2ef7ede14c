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


def test_the_per_item_clock_starts_when_the_worker_is_ready_not_while_it_starts(monkeypatch):
    import multiprocessing as mp

    from decode import parallel

    monkeypatch.setattr(parallel, "_context", lambda: mp.get_context("spawn"))
    out = {it: (ok, res) for it, ok, res in map_files(SlowToStart(2.5), ["1", "2"], workers=1, timeout=1.5)}
    assert out == {"1": (True, 2), "2": (True, 3)}


def test_a_failure_names_the_rows_file_not_the_row_number():
    out = {it: (ok, res) for it, ok, res in map_files(RowTask(), [0, 1], workers=1, path_of=RowTask().path_of)}
    ok, err = out[1]
    assert not ok and err.path == "b.dcm" and "cannot read row 1" in err.reason
    from decode.parallel import call_item

    ok, err = call_item(RowTask(), 0)  # no path_of given: the task's own
    assert not ok and err.path == "a.dcm"
