"""Training survives a kill -9 (atomic checkpoints, exact resume) and accounts for every row."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from training.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS = 8  # timm's test_resnet at 96×72 on 24 images: ~0.2 s an epoch, so the kill lands well before the end


def _args(epochs: int = EPOCHS) -> list[str]:
    return [
        "--model",
        "test_resnet",
        "--img-size",
        "96x72",
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--seed",
        "5",
        "--ema-decay",
        "0.9",
        "--no-progress",
    ]


ARGS = _args()


def _assert_close(a, b, where):
    if isinstance(a, torch.Tensor):
        assert torch.allclose(a.float(), b.float(), atol=1e-5, rtol=1e-4), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _assert_close(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.slow  # three training runs, one in a subprocess
def test_kill_9_mid_training_then_resume_matches_uninterrupted(tiny_dataset, tmp_path):
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    assert main(["train", "--data", tiny_dataset, "--out", full, *ARGS]) == 0
    proc = subprocess.Popen(
        [sys.executable, "-m", "training.cli", "train", "--data", tiny_dataset, "--out", cut, *ARGS],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = os.path.join(cut, "last.pt")
    deadline = time.monotonic() + 240
    while not os.path.exists(last) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "training finished before it could be killed"
    time.sleep(0.1)  # into epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ck = torch.load(last, weights_only=True)  # the file a kill left behind is complete
    assert 1 <= ck["epoch"] < EPOCHS
    assert main(["train", "--data", tiny_dataset, "--out", cut, "--resume", *ARGS]) == 0
    a = torch.load(os.path.join(full, "last.pt"), weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["epoch"] == b["epoch"] == EPOCHS
    for part in ("model", "ema", "optimizer"):
        _assert_close(a[part], b[part], part)
    assert not [n for n in os.listdir(cut) if n.endswith(".tmp")]


def test_train_reports_every_failed_row(tiny_dataset, tmp_path, capsys):
    data = str(tmp_path / "data")
    shutil.copytree(tiny_dataset, data)
    df = pd.read_csv(os.path.join(data, "train.csv"), dtype=str)
    victims = []
    for r in list(df[df["cancer"] == "0"].itertuples())[:3]:  # negatives: every one is visited each epoch
        p = os.path.join(data, "train_images", r.patient_id, f"{r.image_id}.dcm")
        with open(p, "r+b") as f:
            f.truncate(200)
        victims.append(p)
    out = str(tmp_path / "run")
    assert main(["train", "--data", data, "--out", out, *_args(epochs=1)]) == 0
    err = capsys.readouterr().err
    assert "0 unaccounted" in err and "failed" in err
    errors = pd.read_csv(os.path.join(out, "errors.csv"), dtype=str)
    assert list(errors.columns) == ["image_id", "path", "stage", "reason"]
    listed = set(errors["path"])
    for p in victims:  # each broken image is listed, whether it fell in training or validation
        assert os.path.abspath(p) in {os.path.abspath(x) for x in listed}, p
    h = pd.read_json(os.path.join(out, "metrics.json"), typ="series")["history"][-1]
    assert h["train_unaccounted"] == 0 and h["val_unaccounted"] == 0
