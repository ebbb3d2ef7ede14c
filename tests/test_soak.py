"""Bounded resources: the loader over a couple of thousand small files keeps memory flat
and leaves no worker process behind; every row is accounted for."""

from __future__ import annotations

import pytest

from benchmarks.reliability import run_soak


@pytest.mark.slow
def test_loader_soak_memory_flat_no_leaks(tmp_path):
    res = run_soak(str(tmp_path), files=2000, epochs=3)
    assert res["unaccounted"] == 0 and res["failed"] == 0 and res["images"] == 6000
    assert res["leaked_workers"] == 0
    assert res["rss_growth_mb"] < 25, res["rss_mb_per_epoch"]
