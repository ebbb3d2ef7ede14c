"""Atomic writes: a failed verification or writer leaves the old file and no temporary file."""

from __future__ import annotations

import os

import pytest

from decode.atomic import atomic_write, remove_stale_temps


def test_verify_failure_keeps_old_file(tmp_path):
    p = str(tmp_path / "out.bin")
    atomic_write(p, b"old")

    def bad(tmp):
        assert open(tmp, "rb").read() == b"new"  # verify sees the complete new data
        raise OSError("read back differs")

    with pytest.raises(OSError, match="read back differs"):
        atomic_write(p, b"new", verify=bad)
    assert open(p, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]
    atomic_write(p, b"new", verify=lambda tmp: None)
    assert open(p, "rb").read() == b"new"


def test_writer_failure_and_stale_temp_cleanup(tmp_path):
    p = str(tmp_path / "ck.pt")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(p, boom)
    assert not os.path.exists(p) and os.listdir(tmp_path) == []
    stale = tmp_path / ".ck.pt.a1b2c3d4.tmp"  # what a kill -9 mid-write leaves
    stale.write_bytes(b"x")
    (tmp_path / "keep.tmp").write_bytes(b"y")
    assert remove_stale_temps(str(tmp_path)) == [str(stale)]
    assert sorted(os.listdir(tmp_path)) == ["keep.tmp"]
