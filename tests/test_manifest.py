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


def _patients(n: int, positives: int, *, shuffle_seed: int = 1) -> pd.DataFrame:
    """``n`` patients × 4 images (L/R × CC/MLO); the first ``positives`` have cancer in the left breast."""
    rows = []
    for p in range(n):
        for side in "LR":
            for view in ("CC", "MLO"):
                cancer = int(p < positives and side == "L")
                rows.append(dict(patient_id=str(1000 + p), laterality=side, view=view, cancer=cancer))
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=shuffle_seed).reset_index(drop=True)
    df["prediction_id"] = df["patient_id"] + "_" + df["laterality"]
    return df


def _fold_counts(df, folds, k):
    per_fold = pd.Series(df["patient_id"]).groupby(folds).nunique().reindex(range(k), fill_value=0)
    pos = df[df.cancer == 1]
    pos_fold = pos.groupby(folds[df.cancer == 1])["patient_id"].nunique().reindex(range(k), fill_value=0)
    return per_fold.tolist(), pos_fold.tolist()


@pytest.mark.parametrize(
    "patients,positives,k",
    [(40, 12, 4), (41, 12, 4), (43, 13, 4), (10, 3, 4), (9, 5, 2), (101, 25, 5), (4, 4, 4)],
)
def test_folds_every_patient_in_exactly_one_fold_sizes_and_positives_balanced(patients, positives, k):
    df = _patients(patients, positives)
    folds = assign_folds(df, folds=k, seed=7)
    assert folds.dtype == np.int64 and folds.shape == (len(df),)
    assert set(folds.tolist()) == set(range(k))  # no empty fold
    assert (pd.Series(folds).groupby(df["patient_id"]).nunique() == 1).all()  # a patient never straddles folds
    sizes, pos = _fold_counts(df, folds, k)
    assert sum(sizes) == patients and max(sizes) - min(sizes) <= 1, sizes  # also when K does not divide P
    assert sum(pos) == positives and max(pos) - min(pos) <= 1, pos  # cancer stratified


def test_folds_exact_split_when_divisible():
    df = _patients(40, 12)
    sizes, pos = _fold_counts(df, assign_folds(df, folds=4, seed=3), 4)
    assert sizes == [10, 10, 10, 10] and pos == [3, 3, 3, 3]
    assert breast_prior(df) == pytest.approx(12 / 80)


def test_folds_seeded_and_independent_of_row_order():
    df = _patients(40, 12)
    a = assign_folds(df, folds=4, seed=5)
    assert (a == assign_folds(df, folds=4, seed=5)).all()
    assert (a != assign_folds(df, folds=4, seed=6)).any()  # the seed shuffles patients between folds
    shuffled = df.sample(frac=1.0, random_state=99)
    b = pd.Series(assign_folds(shuffled.reset_index(drop=True), folds=4, seed=5), index=shuffled.index)
    assert (b.sort_index().to_numpy() == a).all()


def test_folds_without_labels_or_positives_and_bad_k(caplog):
    df = _patients(9, 0).drop(columns="cancer")
    sizes = pd.Series(df["patient_id"]).groupby(assign_folds(df, folds=4, seed=0)).nunique()
    assert sorted(sizes.tolist()) == [2, 2, 2, 3]
    few = _patients(8, 2)
    with caplog.at_level("WARNING", logger="training.manifest"):
        assign_folds(few, folds=4, seed=0)
    assert "2 positive patient(s), 4 folds" in caplog.text
    with pytest.raises(ValueError, match="folds must be >= 2"):
        assign_folds(df, folds=1)
    with pytest.raises(ValueError, match="3 patient\\(s\\) cannot fill 4 folds"):
        assign_folds(_patients(3, 1), folds=4)
