"""No library traceback reaches the user: the real stderr of ``rsna-mammo`` in a subprocess.

In-process tests cannot see this (pydicom's records go to whatever handlers the process
has, pytest captures them), so the CLI runs as users run it. Inputs: the malformed
corpus (:mod:`decode.testing.corpus`), a fuzz corpus (:mod:`decode.testing.fuzz`) and every DICOM file
bundled with pydicom and ``pydicom-data``. A failed file is named by exactly one line,
its ``error:`` line; no line is a library's own log record.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
import shutil
import subprocess
import sys

import pandas as pd
import pydicom
import pytest

from decode.testing.corpus import build_corpus
from decode.testing.fuzz import HEADER_EDITS, Mutation, fuzz_sources, mutate, random_mutation

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OWN_LOGGERS = ("decode", "dali_pipelines", "training", "benchmarks")


def real_files() -> list[str]:
    """Every .dcm bundled with pydicom and, when installed, pydicom-data (the ``test`` extra)."""
    files = glob.glob(os.path.join(os.path.dirname(pydicom.data.__file__), "test_files", "**", "*.dcm"), recursive=True)
    try:
        import data_store  # pydicom-data

        files += glob.glob(os.path.join(os.path.dirname(data_store.__file__), "data", "*.dcm"))
    except ImportError:
        pass
    return sorted(files)


# Real files whose decode printed a library traceback or log lines before this was fixed.
NAMED_REAL = {
    "JPEG-lossy.dcm": "pydicom could not decode",  # every plugin fails: two tracebacks from pydicom's logger
    "JPEG2000-embedded-sequence-delimiter.dcm": "codestream is 1024x3722445056",  # two tracebacks
    "badVR.dcm": "Number of Frames '1A' is not an integer",  # pydicom's warning, logged and warned
    "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated file",  # pydicom's WARNING line
}


def _cli(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "training.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


_LINE = re.compile(
    r"^(error|warning|skipped): (?P<path>.+?): \S"  # one line per file, from the CLI
    r"|^\d+ ok, \d+ failed, 0 unaccounted"  # the run's last line
    r"|^(DEBUG|INFO|WARNING|ERROR|CRITICAL) (?P<logger>[\w.]+): "  # a log record (must be ours)
)


def check_stderr(err: str, inputs: list[str], failed: list[str]) -> None:
    """No traceback; every line one of the allowed forms; no file named twice; each failed file
    named by its ``error:`` line."""
    assert "Traceback" not in err, err[:3000]
    lines = err.splitlines()
    for i, ln in enumerate(lines):
        m = _LINE.match(ln)
        assert m, f"unexpected stderr line: {ln!r} after {lines[i - 1] if i else None!r}"
        if m.group("logger"):
            assert m.group("logger").split(".")[0] in OWN_LOGGERS, f"a library's record reached stderr: {ln!r}"
    for p in inputs:
        named = [ln for ln in lines if f"{p}: " in ln]
        assert len(named) <= 1, (p, named)
    by_path = {p: [ln for ln in lines if f"{p}: " in ln] for p in failed}
    for p, named in by_path.items():
        assert len(named) == 1 and named[0].startswith(f"error: {p}: "), (p, named)
    assert sum(ln.startswith("error: ") for ln in lines) == len(failed)
    assert set(failed) <= set(inputs)


@pytest.fixture(scope="module")
def decode_run(tmp_path_factory):
    """``rsna-mammo decode --stage crop`` over the malformed corpus, a fuzz corpus and the real files
    (its tests carry ``xdist_group("quiet_decode_run")``: one worker runs it)."""
    root = tmp_path_factory.mktemp("quiet")
    good, bad, _ = build_corpus(str(root / "corpus"))
    corpus = list(good.values()) + [p for n, (p, _) in bad.items() if n != "directory"]
    sources = fuzz_sources(str(root))
    rng = random.Random(14)
    muts = [random_mutation(rng) for _ in range(40)]
    muts += [Mutation("header", key=k, value=v) for k, vs in sorted(HEADER_EDITS.items()) for v in vs]
    os.makedirs(root / "fuzz")
    fuzz = []
    for k, m in enumerate(muts):
        p = str(root / "fuzz" / f"fuzz_{k:03d}.dcm")
        with open(p, "wb") as f:
            f.write(mutate(sources[k % len(sources)], m, seed=k))
        fuzz.append(p)
    real = real_files()
    inputs = corpus + fuzz + real
    summary = str(root / "summary.json")
    out = str(root / "out")
    res = _cli(["decode", *inputs, "--out", out, "--workers", "2", "--stage", "crop", "--summary", summary])
    with open(summary) as f:
        doc = json.load(f)
    return {"res": res, "inputs": inputs, "doc": doc, "real": real, "corpus": corpus, "fuzz": fuzz}


@pytest.mark.xdist_group("quiet_decode_run")
def test_decode_stderr_has_no_library_traceback(decode_run):
    res, doc = decode_run["res"], decode_run["doc"]
    assert res.returncode == 1  # the corpus holds files that must fail
    failed = [e["path"] for e in doc["errors"]]
    check_stderr(res.stderr, decode_run["inputs"], failed)
    assert doc["ok"] + doc["failed"] + doc["skipped"] == len(decode_run["inputs"]) and doc["unaccounted"] == 0
    assert len(decode_run["real"]) >= 100 and len(decode_run["fuzz"]) >= 70


@pytest.mark.xdist_group("quiet_decode_run")
@pytest.mark.parametrize("name", list(NAMED_REAL))
def test_real_file_that_printed_library_logs_gets_one_line(name, decode_run):
    path = next((p for p in decode_run["real"] if os.path.basename(p) == name), None)
    if path is None:
        pytest.skip(f"{name} is not installed here (pydicom-data)")
    named = [ln for ln in decode_run["res"].stderr.splitlines() if name in ln]
    assert len(named) == 1 and named[0].startswith(f"error: {path}: ") and NAMED_REAL[name] in named[0], named


@pytest.mark.xdist_group("quiet_decode_run")
def test_odd_but_valid_corpus_files_decode_with_at_most_a_warning_line(decode_run):
    ok = {r["path"] for r in decode_run["doc"]["results"]}
    odd = [p for p in decode_run["corpus"] if os.path.basename(p).startswith("odd_")]
    assert len(odd) >= 6 and set(odd) <= ok
    lines = decode_run["res"].stderr.splitlines()
    assert [ln for ln in lines if "odd_for_processing.dcm" in ln][0].startswith("warning: ")
    assert "FOR PROCESSING" in [ln for ln in lines if "odd_for_processing.dcm" in ln][0]
    assert not [ln for ln in lines if "odd_empty_type2.dcm" in ln]  # empty is absent: nothing to say


def _no_library_lines(err: str) -> None:
    assert "Traceback" not in err, err[-3000:]
    for ln in err.splitlines():
        m = re.match(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): ", ln)
        assert not m or m.group(2).split(".")[0] in OWN_LOGGERS, f"a library's record reached stderr: {ln!r}"


def _break_codestream(path: str) -> None:
    """Keep the header, replace the codestream with garbage after its first marker."""
    from pydicom.encaps import encapsulate

    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(range(256)) * 2])
    ds.save_as(path)


@pytest.mark.slow  # three CLI runs in subprocesses (torch and timm start in each): ~25 s on 2 cores
def test_train_predict_prepare_stderr_has_no_library_traceback(tiny_dataset, tmp_path):
    data = str(tmp_path / "data")
    shutil.copytree(tiny_dataset, data)
    broken = []
    for split in ("train", "test"):
        df = pd.read_csv(os.path.join(data, f"{split}.csv"), dtype=str)
        for r in list(df.itertuples())[:2]:
            p = os.path.join(data, f"{split}_images", r.patient_id, f"{r.image_id}.dcm")
            ds = pydicom.dcmread(p)
            if "2.4.90" in str(ds.file_meta.TransferSyntaxUID) or "2.4.70" in str(ds.file_meta.TransferSyntaxUID):
                _break_codestream(p)
                broken.append(p)
    assert len(broken) >= 2
    df = pd.read_csv(os.path.join(data, "test.csv"), dtype=str)
    r = df.iloc[-1]
    processing = os.path.join(data, "test_images", r.patient_id, f"{r.image_id}.dcm")
    ds = pydicom.dcmread(processing)
    ds.PresentationIntentType = "FOR PROCESSING"
    ds.save_as(processing)
    run = str(tmp_path / "run")
    common = ["--device", "cpu", "--workers", "2"]
    res = _cli(
        ["train", "--data", data, "--out", run, "--model", "resnet10t", "--img-size", "64x48", "--epochs", "1"]
        + ["--batch-size", "4", "--steps-per-epoch", "2", "--no-progress", "--ema-decay", "0", *common]
    )
    assert res.returncode == 0, res.stderr[-3000:]
    _no_library_lines(res.stderr)
    sub = str(tmp_path / "sub.csv")
    ckpt = os.path.join(run, "best.pt")
    res = _cli(["predict", "--data", data, "--ckpt", ckpt, "--out", sub, "--no-progress", *common])
    assert res.returncode == 0, res.stderr[-3000:]
    _no_library_lines(res.stderr)
    errors = pd.read_csv(os.path.join(tmp_path, "errors.csv"), dtype=str)
    assert {os.path.abspath(p) for p in errors["path"]} >= {p for p in broken if "test_images" in p}
    notes = pd.read_csv(os.path.join(tmp_path, "notes.csv"), dtype=str)
    assert list(notes.columns) == ["image_id", "path", "note"]
    assert [n for p, n in zip(notes["path"], notes["note"]) if os.path.abspath(p) == processing][0].startswith(
        "FOR PROCESSING image"
    )
    assert os.path.exists(os.path.join(run, "notes.csv"))
    res = _cli(["prepare", "--data", data, "--out", str(tmp_path / "cache"), "--format", "tensor", "--size", "32x24"])
    assert res.returncode == 1  # the broken rows fail
    _no_library_lines(res.stderr)
    for p in broken:
        assert sum(os.path.relpath(p, data) in ln or p in ln for ln in res.stderr.splitlines()) == 1, p
