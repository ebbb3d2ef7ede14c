"""``benchmarks/gpu_check.sh`` and ``gpu_check.py``, run here in their CPU mode on tiny files.

The GPU run itself needs a GPU; these tests make sure both tiers' phases, checks and JSON
documents work — the quick tier with DALI made unimportable — and that the shell script's
time limit never turns checks already saved as true into a failure.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
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
    "--model",
    "test_resnet",
    "--e2e-compile",
    "none",  # compiling takes a minute on 2 cores; the GPU run measures it
]
CHECKS = {"j2k_exact", "jll_exact", "voi_match", "zero_copy", "fallback"}

BLOCK_DALI = '''
import os, sys

class _BlockDali:
    """Makes nvidia.dali (or the packages named in $BLOCKED, comma-separated) unimportable and
    logs every attempt (this process and its children)."""

    blocked = tuple(os.environ.get("BLOCKED", "nvidia.dali").split(","))

    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in self.blocked):
            with open(os.environ["DALI_ATTEMPTS"], "a") as f:
                f.write(f"{os.getpid()} {name}\\n")
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, _BlockDali())
'''


def _rows(doc):
    return {(r["stage"], r["backend"]) for r in doc["results"]}


@pytest.mark.slow  # the whole quick tier in a subprocess
def test_quick_tier_runs_on_the_cpu_with_dali_unimportable(tmp_path):
    pytest.importorskip("nvidia.nvimgcodec")
    from benchmarks.schema import load

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_DALI)
    attempts = tmp_path / "dali-attempts.txt"
    attempts.write_text("")
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{ROOT}", DALI_ATTEMPTS=str(attempts))
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.gpu_check",
        "--tier",
        "quick",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--data",
        str(tmp_path / "data"),
        *TINY,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    files = glob.glob(str(out / "gpu-cpu-*-quick.json"))
    assert len(files) == 1, proc.stderr[-3000:]
    assert attempts.read_text() == "", "the quick tier tried to import DALI"
    doc = load(files[0])  # validates against benchmarks.schema
    summary = doc["summary"]
    assert summary["tier"] == "quick" and summary["engines"] == ["nvimgcodec"]
    assert summary["phases_done"] == ["data", "checks", "gpu_figures", "cpu_baselines"]
    assert not summary["errors"], summary["errors"]
    # on the CPU nvImageCodec decodes JPEG 2000; lossless JPEG takes the CPU route, so jll_exact is false
    assert summary["checks"] == {
        "j2k_exact": True,
        "jll_exact": False,
        "voi_match": True,
        "zero_copy": True,
        "fallback": True,
    }
    assert proc.returncode == 1
    fb = summary["fallback"]["nvimgcodec"]
    assert fb["routes"]["1"] == "cpu" and list(fb["failed"]) == ["2"] and fb["stats"]["cpu_fallback"] == 1
    rows = _rows(doc)
    assert {
        ("decode", "nvimgcodec"),
        ("loader", "nvimgcodec"),
        ("baseline", "pydicom"),
        ("decode", "auto"),
        ("infer", "memory"),
        ("e2e", "eager"),
    } <= rows
    assert summary["e2e"]["eager"]["engine"] == "nvimgcodec" and summary["e2e"]["eager"]["images_per_s"] > 0
    assert "compiled" not in summary["e2e"]  # --e2e-compile none
    assert not any(b == "dali" for _s, b in rows)
    batches = sorted(
        r["batch_size"]
        for r in doc["results"]
        if r["stage"] == "decode" and r["backend"] == "nvimgcodec" and r["transfer_syntax"] == "1.2.840.10008.1.2.4.90"
    )
    assert batches == [1, 1, 8, 8, 32, 32]  # 12- and 14-bit, each at batch 1, 8 and 32
    loader_rows = [r for r in doc["results"] if r["stage"] == "loader"]
    assert loader_rows and all(r["exact"] and r["images_per_s"] > 0 for r in loader_rows)
    assert len(summary["row_bits"]) == len(doc["results"])


@pytest.mark.slow  # the whole full tier
def test_full_tier_cpu_mode_checks_both_engines(tmp_path):
    pytest.importorskip("nvidia.dali")
    from benchmarks import gpu_check
    from benchmarks.schema import load

    out = tmp_path / "out"
    rc = gpu_check.main(
        ["--tier", "full", "--device", "cpu", "--out", str(out), "--data", str(tmp_path / "data"), *TINY]
    )
    files = glob.glob(str(out / "gpu-cpu-*.json"))
    assert len(files) == 1 and not files[0].endswith("-quick.json")
    doc = load(files[0])
    summary = doc["summary"]
    assert summary["tier"] == "full" and set(summary["fallback"]) == {"nvimgcodec", "dali"}
    assert summary["checks"] == {
        "j2k_exact": True,
        "jll_exact": False,
        "voi_match": True,
        "zero_copy": True,
        "fallback": True,
    }
    assert rc == 1
    assert {("decode", "dali"), ("loader", "dali"), ("decode", "nvimgcodec"), ("loader", "nvimgcodec")} <= _rows(doc)
    assert summary["dali"]["zero_copy"]["ok"] and summary["fallback"]["dali"]["stats"]["rebuilds"] == 0


def _write_result(folder, checks, name="gpu-h200-2026-12-01-quick.json"):
    from benchmarks.machine import machine_record
    from benchmarks.schema import dump, make_document

    doc = make_document(machine_record(), {"command": "test"}, [], {"tier": "quick", "checks": checks})
    return dump(doc, os.path.join(folder, name))


def test_verdict_is_the_saved_checks(tmp_path, capsys):
    from benchmarks.gpu_check import verdict

    assert verdict(str(tmp_path), "quick") == 1  # nothing saved
    _write_result(str(tmp_path), dict.fromkeys(CHECKS, True))
    assert verdict(str(tmp_path), "quick") == 0
    assert verdict(str(tmp_path), "full") == 1  # a quick result says nothing about the full tier
    _write_result(str(tmp_path), {**dict.fromkeys(CHECKS, True), "fallback": False})
    assert verdict(str(tmp_path), "quick") == 1
    _write_result(str(tmp_path), {k: True for k in CHECKS if k != "zero_copy"})  # a check missing
    assert verdict(str(tmp_path), "quick") == 1
    assert '"all_true": false' in capsys.readouterr().out


def test_shell_script_time_limit_keeps_saved_true_checks(tmp_path):
    """``$PYTHON`` is honoured; a run stopped by the limit is judged by the checks saved before it."""
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, PYTHON=sys.executable, GPU_CHECK_LIMIT="1")
    cmd = ["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--tier", "quick", str(out), "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "stopped at the 1 s limit" in proc.stderr  # killed, nothing saved
    _write_result(str(out), dict.fromkeys(CHECKS, True))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["all_true"] is True
    bad = subprocess.run(
        ["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--tier", "nope", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "quick or full" in bad.stderr
    missing = subprocess.run(
        cmd, env=dict(env, PYTHON="/nonexistent/python3"), capture_output=True, text=True, timeout=60
    )
    assert missing.returncode != 0


def test_a_package_the_tier_needs_that_does_not_import_stops_the_run_with_status_3(tmp_path, monkeypatch, capsys):
    from benchmarks import gpu_check

    assert gpu_check.REQUIRED["full"] == (*gpu_check.REQUIRED["quick"], "nvidia.dali")
    monkeypatch.setitem(gpu_check.REQUIRED, "quick", ("numpy", "rsna_no_such_module", "json", "rsna_nor_this"))
    out = tmp_path / "out"
    assert gpu_check.main(["--tier", "quick", "--device", "cpu", "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip()
    assert err == (
        "gpu_check: cannot import: rsna_no_such_module (ModuleNotFoundError: No module named 'rsna_no_such_module'); "
        "rsna_nor_this (ModuleNotFoundError: No module named 'rsna_nor_this')"
    )
    assert not out.exists()  # checked before anything is written
    monkeypatch.setitem(gpu_check.REQUIRED, "quick", ("numpy",))
    assert gpu_check.missing_modules("quick") == []


def test_shell_script_exits_3_naming_each_package_the_tier_cannot_import(tmp_path):
    from benchmarks.gpu_check import REQUIRED

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK_DALI)
    attempts = tmp_path / "attempts.txt"
    blocked = ("torch", "imagecodecs")
    env = dict(
        os.environ,
        PYTHON=sys.executable,
        PYTHONPATH=f"{site}{os.pathsep}{ROOT}",
        BLOCKED=",".join(blocked),
        DALI_ATTEMPTS=str(attempts),
    )
    out = tmp_path / "out"
    cmd = ["bash", os.path.join(ROOT, "benchmarks", "gpu_check.sh"), "--tier", "quick", str(out), "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("gpu_check: cannot import: ")]
    assert len(line) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    named = [part.split(" ")[0] for part in line[0].removeprefix("gpu_check: cannot import: ").split("; ")]
    assert named == [m for m in REQUIRED["quick"] if m in blocked]
    assert os.listdir(out) == []  # the script made the folder; nothing was written into it


def test_card_names():
    from benchmarks.gpu_check import card_name

    assert card_name("NVIDIA H100 80GB HBM3") == "h100"
    assert card_name("NVIDIA H200") == "h200"
    assert card_name(None) == "nogpu"
