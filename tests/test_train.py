"""Training and inference end to end on tiny synthetic DICOMs (real codecs, real timm models).

Budget: tiny images (64×48 model input), timm's ``test_resnet`` (``resnet10t`` in the short
runs at 32×24 and the weights-file tests), a few dozen patients, in-process loaders (``workers=0``).
"""

import math
import os
import shutil
import socket
import time

import numpy as np
import pandas as pd
import pytest
import torch

from decode import __version__
from training.cli import main
from training.config import TrainConfig
from training.metrics import roc_auc
from training.train import train

TINY = dict(model="test_resnet", img_size=(64, 48), batch_size=8, workers=0, device="cpu", seed=7)


@pytest.fixture(scope="module")
def learn_data(tmp_path_factory):
    """40 train + 12 test patients at 128×96, half the breasts with a lesion."""
    from decode.testing.synth import make_dataset

    out = str(tmp_path_factory.mktemp("learn"))
    make_dataset(out, patients=40, test_patients=12, height=128, width=96, seed=11, cancer_rate=0.5, workers=1)
    return out


@pytest.fixture(scope="module")
def learned(learn_data, tmp_path_factory):
    """A run trained on ``learn_data`` (the checkpoint the predict tests use); its tests carry
    ``xdist_group("train_learned")``, so one worker trains it."""
    out = str(tmp_path_factory.mktemp("learn_run"))
    cfg = TrainConfig(data=learn_data, out=out, epochs=6, pos_ratio=0.5, lr=3e-3, warmup_epochs=0.5, **TINY)
    metrics = train(cfg)
    return out, metrics


@pytest.mark.xdist_group("train_learned")
def test_learns_lesion_signal(learned, learn_data, tmp_path):
    out, metrics = learned
    for name in ("best.pt", "last.pt", "metrics.json", "config.yaml"):
        assert os.path.exists(os.path.join(out, name)), name
    assert metrics["epochs_done"] == 6 and len(metrics["history"]) == 6
    for key in ("val_auc", "val_pf1", "val_bin_pf1", "threshold", "train_images_per_s"):
        assert metrics[key] is not None, key
    ck = torch.load(os.path.join(out, "best.pt"), map_location="cpu", weights_only=True)
    assert ck["model_name"] == "test_resnet" and ck["img_size"] == [64, 48]
    assert ck["version"] == __version__
    assert 0.0 < ck["prior"] < 1.0 and 0.0 <= ck["threshold"] <= 1.0 and ck["config"]["model"] == "test_resnet"
    # the decode scale (auto by default) is recorded where the outputs are
    assert ck["decode_scale"] == ck["config"]["decode_scale"] == metrics["decode_scale"] == "auto"
    assert __import__("json").load(open(os.path.join(out, "metrics.json")))["decode_scale"] == "auto"
    sub = tmp_path / "sub.csv"
    assert (
        main(
            [
                "predict",
                "--data",
                learn_data,
                "--ckpt",
                os.path.join(out, "best.pt"),
                "--out",
                str(sub),
                "--workers",
                "0",
                "--no-progress",
                "--tta",
            ]
        )
        == 0
    )
    pred = pd.read_csv(sub)
    truth = pd.read_csv(os.path.join(learn_data, "test_labels.csv"))
    both = truth.merge(pred, on="prediction_id", suffixes=("_true", ""))
    assert len(both) == len(truth) == len(pred)
    auc = roc_auc(both["cancer_true"], both["cancer"])
    assert auc >= 0.8, f"test breast-level AUC {auc:.3f} (history: {metrics['history']})"


def _tiny_cfg(data, out, **kw):
    return TrainConfig(
        data=data,
        out=out,
        epochs=2,
        steps_per_epoch=2,
        batch_size=4,
        model="resnet10t",
        img_size=(32, 24),
        workers=0,
        device="cpu",
        seed=3,
        ema_decay=0.9,
        **kw,
    )


def _assert_same_tensors(a, b, path=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), path
    else:
        assert a == b, path


def test_resume_equals_uninterrupted(tiny_dataset, tmp_path):
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    train(_tiny_cfg(tiny_dataset, full))
    m1 = train(_tiny_cfg(tiny_dataset, cut), stop_after=1)
    assert m1["epochs_done"] == 1
    m2 = train(_tiny_cfg(tiny_dataset, cut), resume=True)
    assert m2["epochs_done"] == 2
    a = torch.load(os.path.join(full, "last.pt"), weights_only=True)
    b = torch.load(os.path.join(cut, "last.pt"), weights_only=True)
    for key in ("model", "ema", "optimizer", "scheduler", "sampler", "global_step", "threshold", "epoch"):
        _assert_same_tensors(a[key], b[key], key)
    timing = ("train_seconds", "train_images_per_s", "val_images_per_s")
    strip = [{k: v for k, v in h.items() if k not in timing} for h in a["history"]]
    assert strip == [{k: v for k, v in h.items() if k not in timing} for h in b["history"]]


def test_cli_config_yaml_and_flags(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        f"data: {tiny_dataset}\nmodel: resnet10t\nimg_size: 32x24\nepochs: 3\nbatch-size: 4\n"
        "steps_per_epoch: 1\nworkers: 0\ndevice: cpu\naugment:\n  cutout: 0.5\n  hflip: 0.0\n"
    )
    assert main(["train", "--config", str(cfg_file), "--out", str(out), "--epochs", "1", "--no-progress"]) == 0
    saved = TrainConfig.from_dict(__import__("yaml").safe_load((out / "config.yaml").read_text()))
    assert saved.epochs == 1 and saved.img_size == (32, 24) and saved.augment.cutout == 0.5
    assert "hflip" not in (out / "config.yaml").read_text()  # an earlier version's `hflip: 0` is dropped
    cfg_file.write_text(cfg_file.read_text().replace("hflip: 0.0", "hflip: 0.5"))
    assert main(["train", "--config", str(cfg_file), "--out", str(out), "--epochs", "1", "--no-progress"]) == 2
    assert main(["train", "--config", str(cfg_file), "--out", str(out), "--model", "no_such_net"]) == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 3\n")
    assert main(["train", "--config", str(bad), "--data", tiny_dataset]) == 2


def _broken_copy(src, dst):
    """A copy of ``src`` with a missing image, a truncated one, a breast with no usable image,
    and a CSV row whose image id would leave the data root."""
    shutil.copytree(src, dst)
    df = pd.read_csv(os.path.join(dst, "test.csv"), dtype=str)
    path = lambda r: os.path.join(dst, "test_images", r.patient_id, f"{r.image_id}.dcm")  # noqa: E731
    rows = list(df.itertuples())
    os.remove(path(rows[0]))  # missing
    with open(path(rows[2]), "r+b") as f:  # truncated in the pixel data
        f.truncate(int(os.path.getsize(path(rows[2])) * 0.6))
    dead = rows[-1].prediction_id  # every image of this breast unusable
    for r in rows:
        if r.prediction_id == dead:
            with open(path(r), "wb") as f:
                f.write(b"not a dicom at all")
    evil = df.iloc[[4]].copy()
    evil["image_id"] = "../../../../etc/passwd"
    pd.concat([df, evil]).to_csv(os.path.join(dst, "test.csv"), index=False)
    return df, dead


@pytest.mark.xdist_group("train_learned")
def test_predict_complete_with_missing_and_broken_images(learned, tiny_dataset, tmp_path, capsys):
    out, _ = learned
    data = str(tmp_path / "data")
    df, dead = _broken_copy(tiny_dataset, data)
    sub = tmp_path / "pred" / "submission.csv"
    rc = main(
        [
            "predict",
            "--data",
            data,
            "--ckpt",
            os.path.join(out, "best.pt"),
            "--out",
            str(sub),
            "--workers",
            "0",
            "--no-progress",
            "--agg",
            "max",
        ]
    )
    assert rc == 0
    pred = pd.read_csv(sub, dtype={"prediction_id": str})
    assert list(pred.columns) == ["prediction_id", "cancer"]
    assert pred["prediction_id"].tolist() == list(dict.fromkeys(df["prediction_id"]))  # one row each
    assert pred["cancer"].between(0, 1).all()
    prior = torch.load(os.path.join(out, "best.pt"), weights_only=True)["prior"]
    assert pred.set_index("prediction_id").loc[dead, "cancer"] == pytest.approx(prior, abs=1e-6)
    err = pd.read_csv(tmp_path / "pred" / "errors.csv", dtype=str)
    assert list(err.columns) == ["image_id", "path", "reason"]
    n_dead = int((df["prediction_id"] == dead).sum())
    assert len(err) == 2 + n_dead + 1
    assert err["image_id"].iloc[0] == df["image_id"].iloc[0]
    assert err["reason"].str.contains("leave the data root").sum() == 1
    assert err["reason"].str.contains("training prior").sum() == n_dead
    assert dead in capsys.readouterr().out  # listed in the printed summary too
    # binarized at the checkpoint's threshold, and at a number
    sub2 = tmp_path / "bin.csv"
    assert (
        main(
            [
                "predict",
                "--data",
                data,
                "--ckpt",
                os.path.join(out, "best.pt"),
                "--out",
                str(sub2),
                "--workers",
                "0",
                "--no-progress",
                "--threshold",
                "best",
            ]
        )
        == 0
    )
    assert set(pd.read_csv(sub2)["cancer"]) <= {0, 1}
    assert (
        main(
            [
                "predict",
                "--data",
                data,
                "--ckpt",
                os.path.join(out, "best.pt"),
                "--out",
                str(sub2),
                "--threshold",
                "1.5",
            ]
        )
        == 2
    )


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, ports, argvs, results):
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
    from training.cli import main as cli_main

    for port, argv in zip(ports, argvs):  # one process group per command, as under torchrun
        os.environ["MASTER_PORT"] = str(port)
        rc = cli_main(argv)
        results.put((rank, argv[0], rc))


@pytest.mark.slow  # two rank processes that train and predict
def test_ddp_two_processes_gloo(tiny_dataset, tmp_path):
    import torch.multiprocessing as mp

    run, sub = str(tmp_path / "ddp"), str(tmp_path / "ddp_sub.csv")
    argvs = [
        [
            "train",
            "--data",
            tiny_dataset,
            "--out",
            run,
            "--model",
            "test_resnet",
            "--img-size",
            "32x24",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--steps-per-epoch",
            "2",
            "--workers",
            "0",
            "--device",
            "cpu",
            "--no-progress",
        ],
        [
            "predict",
            "--data",
            tiny_dataset,
            "--ckpt",
            os.path.join(run, "best.pt"),
            "--out",
            sub,
            "--workers",
            "0",
            "--device",
            "cpu",
            "--no-progress",
        ],
    ]
    # The ranks fork from a fresh server process that has imported torch, timm and the training
    # code once; spawned, each rank imported them itself (~8 s of CPU apiece on 2 cores).
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["tests.test_train", "training.train", "training.predict", "timm", "sklearn.model_selection"]
    )
    results = ctx.SimpleQueue()
    procs = mp.start_processes(
        _ddp_worker,
        args=(2, [_free_port(), _free_port()], argvs, results),
        nprocs=2,
        join=False,
        start_method="forkserver",
    )
    deadline = time.monotonic() + 240
    while not procs.join(timeout=2):
        if time.monotonic() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail("2-process DDP run did not finish in 240 s")
    got = sorted(results.get() for _ in range(4))
    assert got == [(0, "predict", 0), (0, "train", 0), (1, "predict", 0), (1, "train", 0)]
    metrics = __import__("json").load(open(os.path.join(run, "metrics.json")))
    assert metrics["world"] == 2
    h = metrics["history"][0]
    assert h["train_images"] == 2 * 2 * 4  # two ranks × two steps × batch 4
    assert h["val_breasts"] > 0
    # the gathered DDP predictions equal a single-process run of the same checkpoint
    ddp = pd.read_csv(sub)
    single = str(tmp_path / "single.csv")
    assert (
        main(
            [
                "predict",
                "--data",
                tiny_dataset,
                "--ckpt",
                os.path.join(run, "best.pt"),
                "--out",
                single,
                "--workers",
                "0",
                "--device",
                "cpu",
                "--no-progress",
            ]
        )
        == 0
    )
    one = pd.read_csv(single)
    assert ddp["prediction_id"].tolist() == one["prediction_id"].tolist()
    np.testing.assert_allclose(ddp["cancer"], one["cancer"], atol=1e-5)


def test_pretrained_weights_adapt_stem_to_one_channel(tmp_path):
    import timm

    from training.model import create_model

    src = timm.create_model("resnet10t", pretrained=False, in_chans=3, num_classes=1000)
    path = tmp_path / "rgb.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    model = create_model("resnet10t", pretrained=str(path))
    stem = src.state_dict()["conv1.0.weight"]
    assert torch.equal(model.state_dict()["conv1.0.weight"], stem.sum(1, keepdim=True))
    assert torch.equal(model.state_dict()["layer4.0.conv1.weight"], src.state_dict()["layer4.0.conv1.weight"])
    assert model.fc.weight.shape == (1, 512) and float(model.fc.weight.detach().abs().max()) < 0.1  # fresh head
    with pytest.raises(ValueError, match="not found"):
        create_model("resnet10t", pretrained=str(tmp_path / "missing.pth"))
