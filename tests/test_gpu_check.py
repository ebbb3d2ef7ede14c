"""``benchmarks/gpu_check.py`` plumbing, run here in its CPU mode (DALI CPU, CPU_ONLY, numpy) on tiny files.

The GPU run itself (``benchmarks/gpu_check.sh OUTDIR``) needs a GPU; this test makes sure
the script's phases, checks and JSON document work before a GPU machine is spent on it.
"""

from __future__ import annotations

import glob
import json
import os

import pytest

pytest.importorskip("nvidia.dali")


def test_gpu_check_cpu_mode_writes_a_valid_document(tmp_path):
    from benchmarks import gpu_check
    from benchmarks.schema import load

    out = tmp_path / "out"
    rc = gpu_check.main(
        [
            "--out",
            str(out),
            "--device",
            "cpu",
            "--size",
            "96x80",
            "--chain-size",
            "48x32",
            "--files",
            "2",
            "--repeat-files",
            "1",
            "--repeats",
            "1",
            "--batch",
            "3",
            "--workers",
            "1",
            "--no-pytest",
            "--data",
            str(tmp_path / "data"),
        ]
    )
    files = glob.glob(str(out / "gpu-cpu-*.json"))
    assert len(files) == 1
    doc = load(files[0])  # validates against benchmarks.schema
    checks = doc["summary"]["checks"]
    assert set(checks) == {"j2k_exact", "jll_exact", "voi_match", "zero_copy", "fallback"}
    # on the CPU lossless JPEG is routed to the CPU branch, so jll_exact (decoded by the decoder) is false
    assert checks == {"j2k_exact": True, "jll_exact": False, "voi_match": True, "zero_copy": True, "fallback": True}
    assert rc == 1
    stages = {(r["stage"], r["backend"]) for r in doc["results"]}
    assert {
        ("decode", "dali"),
        ("decode", "nvimgcodec"),
        ("loader", "dali"),
        ("loader", "nvimgcodec"),
        ("baseline", "pydicom"),
        ("decode", "auto"),
    } <= stages
    assert len(doc["summary"]["row_bits"]) == len(doc["results"])
    assert doc["summary"]["fallback"]["stats"]["rebuilds"] == 0
    assert os.path.isdir(tmp_path / "data")
    json.dumps(doc)


def test_card_names_and_goals():
    from benchmarks.gpu_check import card_name

    assert card_name("NVIDIA H100 80GB HBM3") == "h100"
    assert card_name(None) == "nogpu"
