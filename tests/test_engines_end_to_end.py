"""``train``, ``predict`` and ``prepare`` with a GPU engine (its CPU variant here) equal the CPU engine.

The nvImageCodec engine runs on nvImageCodec's CPU_ONLY decoder and numpy here; the same
commands on a GPU machine run it on CUDA. Tiny images, ``resnet10t``, one epoch.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from training.cli import main

pytest.importorskip("nvidia.nvimgcodec")


@pytest.fixture(scope="module")
def run(tiny_dataset, tmp_path_factory):
    """One epoch trained with ``--engine nvimgcodec`` (the checkpoint the predict test uses); its
    tests carry ``xdist_group("engines_nv_run")``, so one worker trains it."""
    out = str(tmp_path_factory.mktemp("nv_run"))
    args = [
        "train",
        "--data",
        tiny_dataset,
        "--out",
        out,
        "--model",
        "resnet10t",
        "--img-size",
        "64x48",
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--device",
        "cpu",
        "--engine",
        "nvimgcodec",
        "--workers",
        "1",
        "--no-progress",
        "--folds",
        "2",
    ]
    assert main(args) == 0
    return out


@pytest.mark.xdist_group("engines_nv_run")
def test_train_records_the_engine(run):
    with open(os.path.join(run, "metrics.json")) as f:
        metrics = json.load(f)
    assert metrics["engine"] == "nvimgcodec" and metrics["epochs_done"] == 1
    h = metrics["history"][-1]
    assert h["train_unaccounted"] == 0 and h["val_unaccounted"] == 0 and h["train_ok"] > 0


@pytest.mark.xdist_group("engines_nv_run")
def test_predict_with_the_nvimgcodec_engine_equals_the_cpu_engine(run, tiny_dataset, tmp_path, capsys):
    subs = {}
    for engine in ("nvimgcodec", "cpu"):
        out = tmp_path / engine / "sub.csv"
        args = [
            "predict",
            "--data",
            tiny_dataset,
            "--ckpt",
            os.path.join(run, "best.pt"),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--engine",
            engine,
            "--workers",
            "1",
            "--no-progress",
        ]
        assert main(args) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["engine"] == engine and summary["unaccounted_images"] == 0
        subs[engine] = pd.read_csv(out)
    a, b = subs["nvimgcodec"], subs["cpu"]
    assert list(a["prediction_id"]) == list(b["prediction_id"]) and len(a) == 4  # 2 test patients x 2 breasts
    np.testing.assert_allclose(a["cancer"], b["cancer"], atol=1e-5, rtol=0)


def test_prepare_tensor_cache_with_the_nvimgcodec_engine_equals_the_cpu_engine(tiny_dataset, tmp_path):
    from dali_pipelines.tensor_cache import TensorCacheReader

    caches = {}
    for engine in ("nvimgcodec", "cpu"):
        out = str(tmp_path / engine)
        args = [
            "prepare",
            "--data",
            tiny_dataset,
            "--out",
            out,
            "--format",
            "tensor",
            "--size",
            "64x48",
            "--engine",
            engine,
            "--workers",
            "1",
            "--decode-scale",
            "full",  # what a GPU engine decodes at
        ]
        assert main(args) == 0
        caches[engine] = out
    man = pd.read_csv(os.path.join(tiny_dataset, "train.csv"))
    paths = [
        os.path.join(tiny_dataset, "train_images", str(p), f"{i}.dcm")
        for p, i in zip(man["patient_id"], man["image_id"])
    ]
    readers = {e: TensorCacheReader.open(c, paths, (64, 48), decode_scale="full") for e, c in caches.items()}
    for i in range(len(paths)):
        a, b = readers["nvimgcodec"](i), readers["cpu"](i)
        assert a.shape == b.shape == (64, 48)
        assert np.abs(a - b).max() <= 1.0 / 65535 + 1e-7  # at most one uint16 step (a rounding tie)


def test_prepare_htj2k_refuses_a_gpu_engine(tiny_dataset, tmp_path, capsys):
    args = [
        "prepare",
        "--data",
        tiny_dataset,
        "--out",
        str(tmp_path / "h"),
        "--format",
        "htj2k",
        "--engine",
        "nvimgcodec",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--engine nvimgcodec applies to --format tensor only" in err and len(err.strip().splitlines()) == 1


def test_prepare_picks_the_cpu_engine_while_a_reduced_scale_applies(tiny_dataset, tmp_path, monkeypatch):
    """Only the CPU engine decodes JPEG 2000 at reduced resolution; a GPU engine's cache records ``full``."""
    from dali_pipelines import engines
    from training.prepare import PrepareConfig

    monkeypatch.setattr(engines, "resolve_engine", lambda e, d: ("nvimgcodec", "pretend a GPU is here"))
    monkeypatch.setattr("decode.scale.effective_scale", lambda s: s)  # pretend OpenJPEG reduces here
    base = dict(data=tiny_dataset, out=str(tmp_path / "c"), format="tensor", size=(64, 48))
    auto = PrepareConfig(**base, engine="auto", decode_scale="auto")
    assert auto.resolved_engine() == "cpu" and auto.params()["decode_scale"] == "auto"
    full = PrepareConfig(**base, engine="auto", decode_scale="full")
    assert full.resolved_engine() == "nvimgcodec" and full.params()["decode_scale"] == "full"
    forced = PrepareConfig(**base, engine="nvimgcodec", decode_scale="auto")
    assert forced.resolved_engine() == "nvimgcodec" and forced.params()["decode_scale"] == "full"
    assert PrepareConfig(**{**base, "format": "htj2k", "size": None}).resolved_engine() == "cpu"
