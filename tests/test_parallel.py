"""The worker pool: crash and hang containment, nothing lost, order-independent results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types

import pytest

from decode.errors import CorruptDicomError, DicomError
from decode.parallel import WorkerPool, map_files
from tests.pool_tasks import RowTask, SlowToStart, fail_as_dicom, pid_of, square_or_die, stalled_worker_main


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


def test_workers_default_to_the_usable_cores():
    from decode.parallel import default_workers

    assert default_workers() == len(os.sched_getaffinity(0))


def test_in_process_only_for_one_worker_without_timeout():
    here = os.getpid()
    assert [res for _, _, res in map_files(pid_of, ["a"], workers=1)] == [here]
    assert [res for _, _, res in map_files(pid_of, ["a", "b"], workers=1, timeout=30)] != [here, here]
    assert [res for _, _, res in map_files(pid_of, ["a"], workers=4)] == [here]  # never more workers than items
    assert list(map_files(pid_of, [], workers=4, timeout=5)) == []


def test_failures_keep_their_own_error_or_name_the_item():
    out = {it: (ok, res) for it, ok, res in map_files(fail_as_dicom, ["x"], workers=1)}
    ok, err = out["x"]
    assert not ok and type(err) is CorruptDicomError and err.path == "/data/x.dcm" and err.reason == "bad tile"
    ok, err = next(iter(map_files(square_or_die, ["raise"], workers=1)))[1:]
    assert not ok and isinstance(err, DicomError) and err.path == "raise" and "boom" in err.reason


def test_crash_and_timeout_reports_name_the_items_path_and_the_pool_goes_on():
    with WorkerPool(square_or_die, 1, timeout=1.0, path_of=lambda it: f"/data/{it}.dcm") as pool:
        for k, it in enumerate(["segv", "hang", "6"]):
            pool.submit(k, it)
        assert pool.pending == 3
        got = {k: (ok, res) for k, ok, res in pool.results()}
        assert pool.pending == 0
    ok, err = got[0]
    assert not ok and type(err) is CorruptDicomError
    assert (err.path, err.reason) == ("/data/segv.dcm", "the decoder crashed its worker process")
    ok, err = got[1]
    assert not ok and (err.path, err.reason) == ("/data/hang.dcm", "timed out after 1 s (worker killed)")
    assert got[2] == (True, 36)  # the replaced worker took the next item


def test_next_result_waits_at_most_its_timeout_and_refuses_an_empty_pool():
    with WorkerPool(square_or_die, 1) as pool:
        with pytest.raises(LookupError, match=r"^no item is pending$"):
            pool.next_result()
        pool.submit("k", "hang")
        t0 = time.monotonic()
        assert pool.next_result(timeout=0.3) is None
        assert 0.25 <= time.monotonic() - t0 < 5
        pool.submit("q", "3")
        assert pool.pending == 2
        procs = [w.proc for w in pool._workers]
    assert not any(p.is_alive() for p in procs)  # close() killed the busy worker
    assert pool.pending == 0


def test_queue_beyond_the_workers_and_keys_come_back():
    with WorkerPool(square_or_die, 2) as pool:
        assert len(pool._workers) == 2
        for k in range(5):
            pool.submit(("row", k), str(k))
        assert pool.pending == 5
        got = sorted(pool.results())
    assert got == [(("row", k), True, k * k) for k in range(5)]


def _no_cuda_in_process(monkeypatch):
    """This process as if nothing holding CUDA were imported (other tests import CuPy, DALI)."""
    from decode import parallel

    for name in parallel.CUDA_MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    cuda_down = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", cuda_down)


@pytest.mark.parametrize("name", ["cupy", "nvidia.dali", "nvidia.nvimgcodec"])
def test_spawn_once_a_cuda_library_is_imported(monkeypatch, name):
    from decode.parallel import _context

    _no_cuda_in_process(monkeypatch)
    assert _context().get_start_method() == "fork"
    monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    assert _context().get_start_method() == "spawn"


def test_spawn_once_torch_has_initialised_cuda(monkeypatch):
    from decode.parallel import _context

    _no_cuda_in_process(monkeypatch)
    assert _context().get_start_method() == "fork"
    cuda_up = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", cuda_up)
    assert _context().get_start_method() == "spawn"
    old_torch = types.SimpleNamespace(cuda=types.SimpleNamespace())  # no is_initialized: CUDA counts as down
    monkeypatch.setitem(sys.modules, "torch", old_torch)
    assert _context().get_start_method() == "fork"


def test_default_workers_counts_this_process_cores_or_all_cores(monkeypatch):
    from decode.parallel import default_workers

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3} if pid == 0 else set(range(8)))
    assert default_workers() == 1
    monkeypatch.delattr(os, "sched_getaffinity")  # no affinity API (macOS): the machine's cores
    monkeypatch.setattr(os, "cpu_count", lambda: 3)
    assert default_workers() == 3
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert default_workers() == 1


def test_closing_an_idle_pool_stops_its_workers_gracefully():
    pool = WorkerPool(square_or_die, 2)
    pool.submit(0, "2")
    assert list(pool.results()) == [(0, True, 4)]
    procs = [w.proc for w in pool._workers]
    t0 = time.monotonic()
    pool.close()
    assert time.monotonic() - t0 < 4  # asked to stop, not waited out and killed
    assert [p.exitcode for p in procs] == [0, 0]


def test_results_finished_but_not_yet_taken_still_count_as_pending():
    with WorkerPool(square_or_die, 2) as pool:
        pool.submit("a", "2")
        pool.submit("b", "3")
        while len(pool._done) < 2:  # both finished and read, neither handed out yet
            pool._poll(1.0)
        assert pool.pending == 2
        first = pool.next_result()
        assert pool.pending == 1
        assert sorted([first, pool.next_result()]) == [("a", True, 4), ("b", True, 9)]
        assert pool.pending == 0
        with pytest.raises(LookupError, match=r"^no item is pending$"):
            pool.next_result()


def test_workers_zero_or_left_out_means_all_cores(monkeypatch):
    from decode import parallel

    monkeypatch.setattr(parallel, "default_workers", lambda: 2)
    with WorkerPool(square_or_die) as pool:
        assert len(pool._workers) == 2
    here = os.getpid()
    pids = [res for _, _, res in map_files(pid_of, ["a", "b"])]  # two cores, no timeout: two worker processes
    assert len(pids) == 2 and here not in pids


def test_a_given_path_of_names_the_file_before_the_tasks_own():
    from decode.parallel import call_item

    ok, err = call_item(square_or_die, "raise", lambda it: f"/data/{it}.dcm")
    assert not ok and err.path == "/data/raise.dcm" and err.reason == "ValueError: boom"
    ok, err = call_item(RowTask(), 1, lambda row: f"/other/{row}.dcm")
    assert not ok and err.path == "/other/1.dcm"


def test_a_timed_out_worker_is_killed_not_left_to_finish_its_item():
    with WorkerPool(square_or_die, 1, timeout=0.3) as pool:
        old = pool._workers[0].proc
        pool.submit("k", "nap")
        key, ok, err = pool.next_result()
        assert (key, ok, err.reason) == ("k", False, "timed out after 0.3 s (worker killed)")
        assert old.exitcode == -signal.SIGKILL  # killed at once, not asked to stop after its nap


def test_a_worker_that_does_not_start_in_time_fails_only_its_item(monkeypatch):
    from decode import parallel

    assert parallel.STARTUP_LIMIT == 120.0  # the default: spawn and imports on a loaded machine
    real_main = parallel._worker_main
    monkeypatch.setattr(parallel, "STARTUP_LIMIT", 0.3)
    monkeypatch.setattr(parallel, "_worker_main", stalled_worker_main)
    with WorkerPool(square_or_die, 1, path_of=lambda it: f"/data/{it}.dcm") as pool:
        stalled = pool._workers[0].proc
        monkeypatch.setattr(parallel, "_worker_main", real_main)  # its replacement starts normally
        pool.submit("a", "2")
        pool.submit("b", "3")
        key, ok, err = pool.next_result()
        assert (key, ok, type(err)) == ("a", False, CorruptDicomError)
        assert (err.path, err.reason) == ("/data/2.dcm", "its worker process did not start within 0.3 s")
        assert stalled.exitcode == -signal.SIGKILL
        monkeypatch.setattr(parallel, "STARTUP_LIMIT", 120.0)  # the replacement's start is not timed here
        assert pool.next_result() == ("b", True, 9)


def test_an_idle_worker_that_does_not_stop_when_asked_is_killed_after_the_grace(monkeypatch):
    from decode import parallel

    assert parallel.STOP_GRACE == 5.0  # the default
    monkeypatch.setattr(parallel, "STOP_GRACE", 0.2)
    monkeypatch.setattr(parallel, "_worker_main", stalled_worker_main)
    pool = WorkerPool(square_or_die, 1)
    proc = pool._workers[0].proc
    pool.close()  # idle: asked to stop; it never reads the request
    assert proc.exitcode == -signal.SIGKILL


_EXIT_WITHOUT_CLOSE = """
from decode.parallel import WorkerPool

pool = WorkerPool(abs, 1)  # never closed
print(pool._workers[0].proc.pid, flush=True)
"""


def test_a_pool_left_open_does_not_keep_the_interpreter_from_exiting():
    import multiprocessing as mp

    with WorkerPool(abs, 1) as pool:  # daemonic: multiprocessing ends them at exit instead of waiting
        assert [p.daemon for p in mp.active_children() if p is pool._workers[0].proc] == [True]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _EXIT_WITHOUT_CLOSE], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    with pytest.raises(ProcessLookupError):  # its worker went (and was reaped) with it
        os.kill(int(out.stdout.split()[-1]), 0)


def test_a_running_item_is_waited_for_not_polled_in_a_busy_loop():
    with WorkerPool(square_or_die, 1, timeout=30) as pool:
        pool.submit("k", "hang")
        polls = []
        poll = pool._poll
        pool._poll = lambda limit: (polls.append(limit), poll(limit))[1]  # counts, then polls
        assert pool.next_result(timeout=0.5) is None
        assert 1 <= len(polls) <= 5  # its READY, then one wait to the deadline (a busy loop makes thousands)


def test_an_idle_first_worker_does_not_hide_a_busy_second_one():
    with WorkerPool(square_or_die, 2, timeout=0.3) as pool:
        pool.submit("a", "2")  # the first worker: done at once, then idle
        pool.submit("b", "hang")  # the second: timed out later
        got = {k: (ok, res) for k, ok, res in pool.results()}
    assert got["a"] == (True, 4)
    assert not got["b"][0] and got["b"][1].reason == "timed out after 0.3 s (worker killed)"
