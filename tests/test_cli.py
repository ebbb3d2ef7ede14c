"""CLI in-process through main(argv): decode stages, synth, env, help."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pydicom
import pytest

from decode.testing.synth import TEST_COLUMNS, TRAIN_COLUMNS
from training.cli import COMMANDS, main


def _train_files(root):
    df = pd.read_csv(os.path.join(root, "train.csv"))
    return [os.path.join(root, "train_images", str(r.patient_id), f"{r.image_id}.dcm") for r in df.itertuples()]


def test_synth_layout_and_columns(tiny_dataset):
    train = pd.read_csv(os.path.join(tiny_dataset, "train.csv"))
    test = pd.read_csv(os.path.join(tiny_dataset, "test.csv"))
    assert list(train.columns) == TRAIN_COLUMNS and list(test.columns) == TEST_COLUMNS
    assert len(train) == 6 * 4 and len(test) == 2 * 4
    assert (test.prediction_id == test.patient_id.astype(str) + "_" + test.laterality).all()
    for _key, g in train.groupby(["patient_id", "laterality"]):
        assert sorted(g.view) == ["CC", "MLO"]
    for p in _train_files(tiny_dataset):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert ds.PatientID == p.split(os.sep)[-2] and ds.Rows == 96 and ds.Columns == 72
    assert train.cancer.sum() > 0


def test_synth_covers_both_codecs_and_photometrics(tmp_path):
    rc = main(
        [
            "synth",
            "--out",
            str(tmp_path / "d"),
            "--patients",
            "12",
            "--height",
            "64",
            "--width",
            "48",
            "--workers",
            "1",
            "--seed",
            "5",
        ]
    )
    assert rc == 0
    seen = set()
    for p in _train_files(str(tmp_path / "d")):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        seen.add((str(ds.file_meta.TransferSyntaxUID), ds.PhotometricInterpretation))
    codecs = {s for s, _ in seen}
    assert codecs == {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70"}
    assert {ph for _, ph in seen} == {"MONOCHROME1", "MONOCHROME2"}


def test_synth_is_deterministic(tmp_path):
    for name in ("a", "b"):
        assert (
            main(
                [
                    "synth",
                    "--out",
                    str(tmp_path / name),
                    "--patients",
                    "2",
                    "--height",
                    "32",
                    "--width",
                    "32",
                    "--workers",
                    "1",
                    "--seed",
                    "9",
                ]
            )
            == 0
        )
    a = pd.read_csv(tmp_path / "a" / "train.csv")
    b = pd.read_csv(tmp_path / "b" / "train.csv")
    pd.testing.assert_frame_equal(a, b)
    f = _train_files(str(tmp_path / "a"))[0]
    g = f.replace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert np.array_equal(pydicom.dcmread(f).pixel_array, pydicom.dcmread(g).pixel_array)


@pytest.mark.parametrize("stage,dtype", [("raw", None), ("voi", np.float32), ("crop", np.float32)])
def test_decode_stages(tiny_dataset, tmp_path, stage, dtype, capsys):
    files = _train_files(tiny_dataset)[:4]
    out = tmp_path / stage
    args = [
        "decode",
        *files,
        "--out",
        str(out),
        "--stage",
        stage,
        "--workers",
        "1",
        "--summary",
        str(tmp_path / "s.json"),
    ]
    if stage == "crop":
        args += ["--size", "64x48", "--png"]
    assert main(args) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["ok"] == 4 and summary["failed"] == 0 and summary["unaccounted"] == 0
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        arr = np.load(out / f"{stem}.npy")
        ref = pydicom.dcmread(f).pixel_array
        if stage == "raw":
            assert arr.dtype == ref.dtype and np.array_equal(arr, ref)
        else:
            assert arr.dtype == dtype and 0.0 <= arr.min() and arr.max() <= 1.0
        if stage == "voi":
            assert arr.shape == ref.shape
        if stage == "crop":
            assert arr.shape == (64, 48) and (out / f"{stem}.png").exists()
    assert "4 ok, 0 failed, 0 unaccounted" in capsys.readouterr().err


def test_decode_scale_on_the_crop_stage(tiny_dataset, tmp_path, capsys):
    from decode.sample import read_sample

    files = _train_files(tiny_dataset)
    summary = tmp_path / "s.json"
    args = ["decode", *files, "--out", str(tmp_path), "--stage", "crop", "--size", "32x24", "--workers", "1"]
    assert main([*args, "--decode-scale", "1/2", "--summary", str(summary)]) == 0
    doc = json.loads(summary.read_text())
    assert doc["decode_scale"] == "1/2" and doc["ok"] == len(files)
    scales = {}
    for row in doc["results"]:
        ts = pydicom.dcmread(row["path"], stop_before_pixels=True).file_meta.TransferSyntaxUID
        scales.setdefault(str(ts), set()).add(row["decode_scale"])
        want = read_sample(row["path"], size=(32, 24), decode_scale="1/2").pre
        assert np.array_equal(np.load(row["out"]), want.image) and row["box"] == list(want.box)
    assert scales == {"1.2.840.10008.1.2.4.90": {"1/2"}, "1.2.840.10008.1.2.4.70": {"full"}}
    # raw and VOI outputs are always full resolution
    assert main(["decode", files[0], "--out", str(tmp_path), "--stage", "voi", "--decode-scale", "auto"]) == 2
    assert "--decode-scale auto applies to --stage crop only" in capsys.readouterr().err


def test_decode_folder_and_backend_choice(tiny_dataset, tmp_path):
    folder = os.path.join(tiny_dataset, "test_images")
    assert main(["decode", folder, "--out", str(tmp_path), "--backend", "pydicom", "--workers", "2"]) == 0
    assert len(list(tmp_path.glob("*.npy"))) == 8


def test_decode_unknown_backend_is_usage_error(tiny_dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["decode", _train_files(tiny_dataset)[0], "--out", str(tmp_path), "--backend", "nope"])
    assert e.value.code == 2


def test_help_for_every_subcommand(capsys):
    for name in COMMANDS:
        if name in ("train", "predict", "bench", "prepare"):
            continue  # covered by their own tests
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert "usage: rsna-mammo" in capsys.readouterr().out


def test_env_lists_versions(capsys):
    assert main(["env", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    for key in (
        "python",
        "numpy",
        "pydicom",
        "imagecodecs",
        "dicomsdl",
        "torch",
        "timm",
        "nvidia-dali",
        "cupy",
        "nvimgcodec",
        "gpu",
    ):
        assert key in info
    assert info["pydicom"] and info["imagecodecs"]


def test_decode_path_does_not_import_torch(tiny_dataset, tmp_path):
    f = _train_files(tiny_dataset)[0]
    code = (
        "import sys; from training.cli import main; "
        f"rc = main(['decode', {f!r}, '--out', {str(tmp_path)!r}, '--stage', 'crop', '--workers', '1']); "
        "assert rc == 0, rc; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
