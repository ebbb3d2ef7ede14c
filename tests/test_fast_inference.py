"""Fast batch inference: ensembles in one pass, fixed-shape batches, pipelining, compile, ONNX / torch.export.

Checkpoints here are real timm models (``test_resnet``) with random weights whose head is
widened so that images get clearly different scores; data is the tiny synthetic dataset.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from training.cli import main

SIZE = (64, 48)


def make_checkpoint(path, seed: int, *, img_size=SIZE, threshold: float = 0.4, prior: float = 0.1, **extra) -> str:
    """A checkpoint as ``rsna-mammo train`` writes it, around a random-weight ``test_resnet``."""
    from decode.chain import CHAIN_VERSION
    from training.checkpoint import CKPT_FORMAT
    from training.model import create_model

    torch.manual_seed(seed)
    model = create_model("test_resnet")
    head = model.get_classifier()
    torch.nn.init.normal_(head.weight, std=2.0)  # spread the scores: a test that compares them must see them differ
    ck = {
        "format": CKPT_FORMAT,
        "model_name": "test_resnet",
        "img_size": list(img_size),
        "config": {"batch_size": 2, "amp": "off", "channels_last": True, "agg": "mean"},
        "chain_version": CHAIN_VERSION,
        "decode_scale": "full",
        "prior": prior,
        "agg": "mean",
        "threshold": threshold,
        "model": model.state_dict(),
        **extra,
    }
    torch.save(ck, path)
    return str(path)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    return [make_checkpoint(folder / f"fold{k}.pt", seed=k, threshold=0.3 + 0.2 * k) for k in range(2)]


def _predict(data, ckpt, out, *extra, capsys=None):
    args = [
        "predict",
        "--data",
        data,
        "--ckpt",
        *ckpt,
        "--out",
        str(out),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--no-progress",
        *extra,
    ]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1]) if capsys else None
    return pd.read_csv(out), summary


def test_two_checkpoints_in_one_pass_equal_the_mean_of_two_runs(tiny_dataset, ckpts, tmp_path, capsys):
    a, _ = _predict(tiny_dataset, ckpts[:1], tmp_path / "a.csv", capsys=capsys)
    b, _ = _predict(tiny_dataset, ckpts[1:], tmp_path / "b.csv", capsys=capsys)
    both, summary = _predict(tiny_dataset, ckpts, tmp_path / "ab.csv", capsys=capsys)
    assert list(both["prediction_id"]) == list(a["prediction_id"]) == list(b["prediction_id"])
    assert np.abs(a["cancer"] - b["cancer"]).max() > 0.01  # the members really differ
    np.testing.assert_allclose(both["cancer"], (a["cancer"] + b["cancer"]) / 2, atol=2e-6, rtol=0)
    assert [m["path"] for m in summary["models"]] == ckpts and summary["ensemble"] == "mean"
    assert summary["threshold"] is None and summary["unaccounted_images"] == 0
    binary, summary = _predict(tiny_dataset, ckpts, tmp_path / "bin.csv", "--threshold", "best", capsys=capsys)
    assert summary["threshold"] == pytest.approx(0.4)  # the members' mean (0.3 and 0.5)
    assert set(binary["cancer"]) <= {0, 1}
    logit, _ = _predict(tiny_dataset, ckpts, tmp_path / "lm.csv", "--ensemble", "logit-mean", capsys=capsys)
    assert not np.allclose(logit["cancer"], both["cancer"], atol=1e-4)  # a different average


def test_ensemble_averages_probabilities_or_logits():
    from training.inference_models import combine

    a, b = torch.tensor([0.0, 4.0, -2.0]), torch.tensor([2.0, -4.0, -2.0])
    mean = combine([a, b], "mean")
    assert mean.dtype == torch.float64
    np.testing.assert_allclose(mean.numpy(), ((torch.sigmoid(a) + torch.sigmoid(b)) / 2).numpy(), atol=1e-7)
    np.testing.assert_allclose(combine([a, b], "logit-mean").numpy(), torch.sigmoid((a + b) / 2).numpy(), atol=1e-7)
    assert combine([a, b], "logit-mean")[1] == 0.5 and combine([a], "mean")[0] == 0.5
    with pytest.raises(ValueError, match="allowed: mean, logit-mean"):
        combine([a], "median")


def test_a_mismatched_ensemble_is_refused(tiny_dataset, ckpts, tmp_path, capsys):
    other = make_checkpoint(tmp_path / "big.pt", seed=5, img_size=(96, 64))
    args = [
        "predict",
        "--data",
        tiny_dataset,
        "--ckpt",
        ckpts[0],
        other,
        "--out",
        str(tmp_path / "x.csv"),
        "--device",
        "cpu",
        "--workers",
        "0",
        "--no-progress",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "ensemble members disagree on img_size" in err and "[64, 48]" in err and "[96, 64]" in err
    assert len(err.splitlines()) == 1 and not os.path.exists(tmp_path / "x.csv")
    flipped = make_checkpoint(tmp_path / "lat.pt", seed=6, config={"laterality": "header", "batch_size": 2})
    with pytest.raises(ValueError, match="disagree on laterality"):
        from training.inference_models import check_compatible, load_predictor

        check_compatible([load_predictor(ckpts[0], "cpu"), load_predictor(flipped, "cpu")])


def test_fixed_shape_batches_give_the_same_scores(tiny_dataset, ckpts):
    """Short batches padded to the batch size (pad rows dropped) score as unpadded ones."""
    from dali_pipelines.loader import DicomLoader
    from training.inference_models import load_predictor
    from training.manifest import load_manifest
    from training.predict import infer_predictors

    man = load_manifest(tiny_dataset, csv="test.csv")
    predictor = load_predictor(ckpts[0], "cpu")
    shapes = []

    def spy(x):
        shapes.append(tuple(x.shape))
        return predictor(x)

    loader = DicomLoader(list(man["path"]), batch_size=3, size=SIZE, device="cpu", workers=0, decode_scale="full")
    idx, fixed, _ = infer_predictors([spy], loader, pad_to=3)
    assert len(man) % 3 and set(shapes) == {(3, 1, *SIZE)}  # 8 rows: the last batch of 2 padded to 3
    idx2, free, _ = infer_predictors([predictor], loader)
    assert idx.tolist() == idx2.tolist() == list(range(len(man)))
    np.testing.assert_allclose(fixed, free, atol=1e-6, rtol=0)


def test_pipelined_engine_predicts_as_the_synchronous_path(tiny_dataset, ckpts, tmp_path, capsys):
    """The nvImageCodec engine (decode of batch k+1 in a thread while batch k is scored) vs in-process decoding."""
    pytest.importorskip("nvidia.nvimgcodec")
    sync, s1 = _predict(tiny_dataset, ckpts[:1], tmp_path / "sync.csv", "--engine", "cpu", capsys=capsys)
    args = [
        "predict",
        "--data",
        tiny_dataset,
        "--ckpt",
        ckpts[0],
        "--out",
        str(tmp_path / "pipe.csv"),
        "--device",
        "cpu",
        "--workers",
        "2",
        "--no-progress",
        "--engine",
        "nvimgcodec",
        "--batch-size",
        "3",
    ]
    assert main(args) == 0
    s2 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    pipe = pd.read_csv(tmp_path / "pipe.csv")
    assert s1["engine"] == "cpu" and s2["engine"] == "nvimgcodec"
    assert list(pipe["prediction_id"]) == list(sync["prediction_id"])
    np.testing.assert_allclose(pipe["cancer"], sync["cancer"], atol=1e-5, rtol=0)


def test_broken_and_missing_images_still_give_a_complete_submission(tiny_dataset, ckpts, tmp_path, capsys):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    man = pd.read_csv(data / "test.csv")
    first, second = man.iloc[0], man.iloc[1]
    os.unlink(data / "test_images" / str(first.patient_id) / f"{first.image_id}.dcm")
    broken = data / "test_images" / str(second.patient_id) / f"{second.image_id}.dcm"
    broken.write_bytes(broken.read_bytes()[:300])
    sub, summary = _predict(str(data), ckpts, tmp_path / "sub.csv", "--tta", capsys=capsys)
    assert list(sub["prediction_id"]) == list(dict.fromkeys(man["prediction_id"]))
    assert summary["failed_images"] == 2 and summary["unaccounted_images"] == 0
    errors = pd.read_csv(tmp_path / "errors.csv")
    assert set(errors["image_id"]) == {first.image_id, second.image_id}


@pytest.mark.slow
def test_compiled_model_matches_eager(ckpts):
    from training.inference_models import load_predictor

    eager = load_predictor(ckpts[0], "cpu")
    compiled = load_predictor(ckpts[0], "cpu", compile_mode="default")
    x = torch.rand(3, 1, *SIZE, generator=torch.Generator().manual_seed(1))
    want = eager(x)
    got = compiled(x)
    assert got.shape == want.shape == (3,) and got.dtype == torch.float32
    assert float((got - want).abs().max()) <= 1e-3
    with pytest.raises(ValueError, match="allowed: default, reduce-overhead, max-autotune"):
        load_predictor(ckpts[0], "cpu", compile_mode="fast")


@pytest.mark.parametrize("fmt", ["onnx", "exported"])
def test_exported_model_predicts_as_the_checkpoint(tiny_dataset, ckpts, tmp_path, capsys, fmt):
    pytest.importorskip("onnxruntime")
    out = tmp_path / ("m.onnx" if fmt == "onnx" else "m.pt2")
    assert main(["export", "--ckpt", ckpts[1], "--format", fmt, "--out", str(out)]) == 0
    meta = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert meta["img_size"] == list(SIZE) and meta["threshold"] == pytest.approx(0.5) and meta["chain_version"] >= 2
    ref, _ = _predict(tiny_dataset, ckpts[1:], tmp_path / "ref.csv", capsys=capsys)
    got, summary = _predict(tiny_dataset, [str(out)], tmp_path / "got.csv", "--threshold", "best", capsys=capsys)
    assert summary["models"][0]["kind"] == fmt and summary["threshold"] == pytest.approx(0.5)
    probs, _ = _predict(tiny_dataset, [str(out)], tmp_path / "probs.csv", capsys=capsys)
    np.testing.assert_allclose(probs["cancer"], ref["cancer"], atol=1e-3, rtol=0)
    assert set(got["cancer"]) <= {0, 1}


def test_export_refuses_what_it_cannot_do(ckpts, tmp_path, capsys):
    assert main(["export", "--ckpt", ckpts[0], "--format", "onnx", "--out", str(tmp_path / "m.pt2")]) == 2
    assert "*.onnx" in capsys.readouterr().err
    plain = tmp_path / "plain.onnx"
    plain.write_bytes(b"not a model")
    from training.inference_models import load_predictor

    with pytest.raises(ValueError, match="not an ONNX model"):
        load_predictor(str(plain), "cpu")
    with pytest.raises(ValueError, match="--compile applies to checkpoints"):
        load_predictor(str(plain), "cpu", compile_mode="default")


def test_bench_infer_e2e_small_run(tiny_dataset, tmp_path):
    pytest.importorskip("onnxruntime")
    from benchmarks import schema

    out = tmp_path / "e2e.json"
    args = [
        "bench",
        "infer",
        "--e2e",
        "--data",
        os.path.join(tiny_dataset, "test_images"),
        "--model",
        "test_resnet",
        "--size",
        "64x48",
        "--batch-size",
        "2",
        "--repeats",
        "1",
        "--device",
        "cpu",
        "--workers",
        "1",
        "--variants",
        "eager,onnx",
        "--engine",
        "cpu",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    doc = schema.load(str(out))
    rows = {(r["stage"], r["backend"], r["transfer_syntax"]) for r in doc["results"]}
    codecs = set(doc["summary"]["e2e"])
    assert codecs and codecs <= {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70"}  # one per codec found
    for ts in codecs:
        assert {("e2e", "eager", ts), ("e2e", "onnx", ts), ("loader", "auto", ts), ("read", "auto", ts)} <= rows
        assert any(stage == "decode" and t == ts for stage, _b, t in rows)
        for variant in ("eager", "onnx"):
            s = doc["summary"]["e2e"][ts][variant]
            slowest = min(s["loader_images_per_s"], s["model_images_per_s"])
            assert s["images_per_s"] > 0 and s["overlap_efficiency"] == pytest.approx(
                s["images_per_s"] / slowest, rel=1e-2
            )
            assert s["slowest_stage"] in ("loader", "model") and s["engine"] == "cpu"
    assert {("infer", "memory-eager", None), ("infer", "memory-onnx", None)} <= rows
    # bench report draws the end-to-end chart and the stage chart of this real run
    assert main(["bench", "report", str(out), "--out", str(tmp_path / "report")]) == 0
    from tests.pictures import check_png

    check_png(tmp_path / "report" / "e2e.png", min_size=(500, 300))
    check_png(tmp_path / "report" / "pipeline.png", min_size=(600, 300))
    assert main(["bench", "infer", "--e2e", "--variants", "eager,fast", "--data", str(tmp_path)]) == 2


def test_inference_from_last_pt_uses_the_ema_weights_validation_scored(tmp_path):
    from training.checkpoint import load_checkpoint, model_from_checkpoint
    from training.model import create_model

    torch.manual_seed(5)
    ema = create_model("test_resnet").state_dict()
    live = make_checkpoint(tmp_path / "live.pt", seed=3)
    live_sd = torch.load(live, weights_only=True)["model"]
    last = make_checkpoint(tmp_path / "last.pt", seed=3, kind="last", ema={"model": ema, "decay": 0.99})
    best = make_checkpoint(tmp_path / "best.pt", seed=3, kind="best")
    no_ema = make_checkpoint(tmp_path / "last_no_ema.pt", seed=3, kind="last", ema=None)
    key = next(k for k, v in ema.items() if v.is_floating_point() and not torch.equal(v, live_sd[k]))

    def weights(path):
        return model_from_checkpoint(load_checkpoint(path), "cpu").state_dict()[key]

    assert torch.equal(weights(last), ema[key])  # last.pt: its EMA weights
    assert torch.equal(weights(best), live_sd[key])  # best.pt: "model" (already the EMA's when a run used EMA)
    assert torch.equal(weights(no_ema), live_sd[key])  # a run without EMA: the live weights
