"""Manifest: Kaggle CSVs, path resolution and confinement, prediction ids, folds."""

import os

import numpy as np
import pandas as pd
import pytest

from training.manifest import UnsafePathError, assign_folds, breast_prior, load_manifest, resolve_image_path


def test_resolve_paths_inside_root(tmp_path):
    p = resolve_image_path(str(tmp_path), "train_images", "10006", "462822612")
    assert p == os.path.join(str(tmp_path), "train_images", "10006", "462822612.dcm")


@pytest.mark.parametrize(
    "pid,iid",
    [
        ("..", "1"),
        ("../..", "1"),
        ("1", "../../etc/passwd"),
        ("/etc", "1"),
        ("1", "/etc/passwd"),
        ("", "1"),
        ("1", "."),
        ("a\\..\\b", "1"),
        ("1", "x\x00y"),
    ],
)
def test_path_leaving_root_is_refused(tmp_path, pid, iid):
    with pytest.raises(UnsafePathError):
        resolve_image_path(str(tmp_path), "train_images", pid, iid)


def test_load_manifest_refuses_bad_rows_and_keeps_the_rest(tiny_dataset, tmp_path):
    df = pd.read_csv(os.path.join(tiny_dataset, "train.csv"), dtype=str)
    df.loc[0, "image_id"] = "../../../../etc/passwd"
    df.loc[1, "patient_id"] = ".."
    csv = tmp_path / "train_evil.csv"
    df.to_csv(csv, index=False)
    man = load_manifest(tiny_dataset, "train", csv=str(csv))
    assert len(man) == len(df)
    assert (man["path"].iloc[:2] == "").all() and (man["path_error"].iloc[:2] != "").all()
    ok = man.iloc[2:]
    assert (ok["path_error"] == "").all()
    root = os.path.abspath(tiny_dataset)
    assert all(p.startswith(root + os.sep) and os.path.exists(p) for p in ok["path"])
    assert (man["prediction_id"] == man["patient_id"] + "_" + man["laterality"]).all()
    assert man["cancer"].dtype == np.int64


def test_test_manifest_keeps_csv_prediction_ids(tiny_dataset):
    man = load_manifest(tiny_dataset, csv="test.csv")
    assert all(p.startswith(os.path.join(os.path.abspath(tiny_dataset), "test_images")) for p in man["path"])
    assert all(os.path.exists(p) for p in man["path"])
    raw = pd.read_csv(os.path.join(tiny_dataset, "test.csv"), dtype=str)
    assert man["prediction_id"].tolist() == raw["prediction_id"].tolist()
    with pytest.raises(ValueError, match="no such CSV"):
        load_manifest(tiny_dataset, csv="nope.csv")


def test_folds_grouped_by_patient_and_stratified():
    rng = np.random.default_rng(3)
    rows = []
    for p in range(40):
        cancer = int(p < 12)
        for side in "LR":
            for view in ("CC", "MLO"):
                rows.append(
                    dict(patient_id=str(1000 + p), laterality=side, view=view, cancer=cancer if side == "L" else 0)
                )
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=1).reset_index(drop=True)
    df["prediction_id"] = df["patient_id"] + "_" + df["laterality"]
    folds = assign_folds(df, folds=4, seed=int(rng.integers(100)))
    assert set(folds) == {0, 1, 2, 3}
    per_patient = pd.Series(folds).groupby(df["patient_id"]).nunique()
    assert (per_patient == 1).all()  # a patient never straddles folds
    pos_patients = df[df.cancer == 1].groupby(folds[df.cancer == 1])["patient_id"].nunique()
    assert sorted(pos_patients.tolist()) == [3, 3, 3, 3]
    sizes = pd.Series(df["patient_id"]).groupby(folds).nunique()
    assert sizes.min() == sizes.max() == 10
    assert (assign_folds(df, folds=4, seed=5) == assign_folds(df, folds=4, seed=5)).all()
    assert breast_prior(df) == pytest.approx(12 / 80)
    with pytest.raises(ValueError):
        assign_folds(df, folds=1)
