"""Manifest: Kaggle CSVs, path resolution and confinement, prediction ids, folds."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest

from training.manifest import (
    UnsafePathError,
    assign_folds,
    breast_prior,
    load_manifest,
    resolve_image_path,
    split_of_csv,
)


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


# --- edges of path confinement, CSV lookup and columns (small CSVs; the images need not exist) ------


@pytest.mark.parametrize(
    "pid,iid,message",
    [
        ("..", "1", "patient_id '..' would leave the data root"),
        (".", "1", "patient_id '.' would leave the data root"),
        ("", "1", "patient_id '' would leave the data root"),
        ("a/b", "1", "patient_id 'a/b' would leave the data root"),
        ("a\\b", "1", "patient_id 'a\\\\b' would leave the data root"),
        ("1", "..", "image_id '..' would leave the data root"),
        ("1", "x\x00y", "image_id 'x\\x00y' would leave the data root"),
        ("1", "/abs", "image_id '/abs' would leave the data root"),
    ],
)
def test_resolve_image_path_names_the_refused_id(tmp_path, pid, iid, message):
    with pytest.raises(UnsafePathError) as err:
        resolve_image_path(str(tmp_path), "train_images", pid, iid)
    assert str(err.value) == message


def test_resolve_image_path_refuses_a_folder_that_leaves_the_root(tmp_path):
    root = tmp_path / "data"
    with pytest.raises(UnsafePathError) as err:
        resolve_image_path(str(root), "../other", "1", "2")
    assert str(err.value) == f"{tmp_path}/other/1/2.dcm is outside the data root {root}"


def test_resolve_image_path_accepts_dots_inside_an_id_and_normalises_the_root(tmp_path):
    got = resolve_image_path(str(tmp_path / "a" / ".." / "data") + "/", "train_images", "..7", "1.2..")
    assert got == os.path.join(str(tmp_path), "data", "train_images", "..7", "1.2...dcm")


@pytest.mark.parametrize(
    "name,split",
    [
        ("train.csv", "train"),
        ("Train.csv", "train"),
        ("TRAIN_v2.csv", "train"),
        ("test.csv", "test"),
        ("mytrain.csv", "test"),
    ],
)
def test_split_of_csv_reads_the_file_name_case_blind(name, split):
    assert split_of_csv(os.path.join("/data", "train", name)) == split


def _csv(path, rows, header="patient_id,image_id,laterality,cancer"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return str(path)


def test_capitalised_train_csv_is_the_train_split(tmp_path):
    _csv(tmp_path / "Train.csv", ["5,6,L,1"])
    man = load_manifest(str(tmp_path), csv=str(tmp_path / "Train.csv"))
    assert man["path"].tolist() == [os.path.join(str(tmp_path), "train_images", "5", "6.dcm")]


def test_default_csv_is_the_train_split_and_the_split_names_the_folder(tmp_path):
    _csv(tmp_path / "train.csv", ["5,6,L,1"])
    _csv(tmp_path / "test.csv", ["7,8,R,0"])
    assert load_manifest(str(tmp_path))["path"].tolist() == [os.path.join(str(tmp_path), "train_images", "5", "6.dcm")]
    assert load_manifest(str(tmp_path), "test")["path"].tolist() == [
        os.path.join(str(tmp_path), "test_images", "7", "8.dcm")
    ]
    assert load_manifest(str(tmp_path), images="scans")["path"].tolist() == [
        os.path.join(str(tmp_path), "scans", "5", "6.dcm")
    ]
    with pytest.raises(ValueError, match=r"^unknown split 'val'; allowed: train, test$"):
        load_manifest(str(tmp_path), "val")


def test_relative_csv_path_is_looked_up_in_the_data_root_unless_it_exists_here(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    _csv(data / "sub.csv", ["1,2,L,0"])
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    assert load_manifest(str(data), "train", csv="sub.csv")["image_id"].tolist() == ["2"]  # found in data
    _csv(here / "sub.csv", ["3,4,R,1"])
    assert load_manifest(str(data), "train", csv="sub.csv")["image_id"].tolist() == ["4"]  # found here first
    missing = os.path.join(str(data), "none.csv")
    with pytest.raises(ValueError) as err:
        load_manifest(str(data), "train", csv="none.csv")
    assert str(err.value) == f"{missing}: no such CSV file"


def test_missing_columns_are_named(tmp_path):
    csv = _csv(tmp_path / "train.csv", ["1"], header="patient_id")
    with pytest.raises(ValueError) as err:
        load_manifest(str(tmp_path), csv=csv)
    assert str(err.value) == f"{csv}: missing column(s) image_id, laterality"


def test_only_the_empty_prediction_ids_are_built(tmp_path):
    csv = _csv(
        tmp_path / "test.csv",
        ["1,10,L,1_L", "1,11,R,", "2,12,L,custom"],
        header="patient_id,image_id,laterality,prediction_id",
    )
    man = load_manifest(str(tmp_path), csv=csv)
    assert man["prediction_id"].tolist() == ["1_L", "1_R", "custom"]
    assert man["path_error"].tolist() == ["", "", ""]


def test_ids_and_labels_are_data_not_numbers_or_nan(tmp_path, caplog):
    csv = _csv(tmp_path / "train.csv", ["NA,007,L,1", "nan,8,R,", "3,9,L,x", "4,..,R,2"])
    with caplog.at_level("WARNING", logger="training.manifest"):
        man = load_manifest(str(tmp_path), csv=csv)
    assert man["patient_id"].tolist() == ["NA", "nan", "3", "4"]  # kept as written: not NaN, no leading zeros lost
    assert man["image_id"].tolist()[:1] == ["007"]
    assert man["prediction_id"].tolist() == ["NA_L", "nan_R", "3_L", "4_R"]
    assert man["cancer"].tolist() == [1, 0, 0, 2] and man["cancer"].dtype == np.int64  # empty / not a number -> 0
    assert man["path"].tolist()[3] == "" and man["path_error"].tolist()[3] == "image_id '..' would leave the data root"
    assert man.index.tolist() == [0, 1, 2, 3]
    assert "1 row(s) refused" in caplog.text


def test_folds_as_many_as_patients_and_the_positive_patient_warning_boundary(caplog):
    df = _patients(4, 4)
    with caplog.at_level("WARNING", logger="training.manifest"):
        folds = assign_folds(df, folds=4, seed=0)
        assert caplog.text == ""  # 4 positive patients fill 4 folds
        assign_folds(_patients(8, 0), folds=4, seed=0)
        assert caplog.text == ""  # no positives at all: nothing to warn about
        assign_folds(_patients(8, 3), folds=4, seed=0)
        assert "3 positive patient(s), 4 folds" in caplog.text
    assert sorted(pd.Series(folds).groupby(df["patient_id"]).first().tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"^folds must be >= 2 \(got 0\)$"):
        assign_folds(df, folds=0)
    with pytest.raises(ValueError, match=r"^4 patient\(s\) cannot fill 5 folds$"):
        assign_folds(df, folds=5)


def test_folds_count_any_cancer_value_above_zero_as_positive():
    df = _patients(8, 4)
    a = assign_folds(df, folds=4, seed=2)
    df2 = df.assign(cancer=df["cancer"] * 3)
    assert (assign_folds(df2, folds=4, seed=2) == a).all()
    _, pos = _fold_counts(df2.assign(cancer=(df2["cancer"] > 0).astype(int)), a, 4)
    assert pos == [1, 1, 1, 1]


def test_breast_prior_without_labels_or_rows():
    df = _patients(4, 1)
    assert breast_prior(df) == pytest.approx(1 / 8)
    assert breast_prior(df.drop(columns="cancer")) == 0.0
    assert breast_prior(df.iloc[:0]) == 0.0


def test_numeric_looking_ids_and_laterality_are_kept_as_written(tmp_path):
    csv = _csv(tmp_path / "train.csv", ["0012,0034,01,1", "0012,0035,02,0"])
    man = load_manifest(str(tmp_path), csv=csv)
    assert man["patient_id"].tolist() == ["0012", "0012"] and man["image_id"].tolist() == ["0034", "0035"]
    assert man["laterality"].tolist() == ["01", "02"]  # text, not the integers 1 and 2
    assert man["prediction_id"].tolist() == ["0012_01", "0012_02"]
    assert man["path"].tolist()[0] == os.path.join(str(tmp_path), "train_images", "0012", "0034.dcm")


def test_numeric_looking_prediction_ids_from_the_csv_are_kept_as_written(tmp_path):
    csv = _csv(tmp_path / "test.csv", ["1,10,L,007", "1,11,R,8"], header="patient_id,image_id,laterality,prediction_id")
    assert load_manifest(str(tmp_path), csv=csv)["prediction_id"].tolist() == ["007", "8"]


def test_manifest_columns_are_the_csvs_plus_prediction_id_path_and_error(tmp_path):
    csv = _csv(tmp_path / "train.csv", ["5,6,L,1", "7,8,R,0"], header="patient_id,image_id,laterality,cancer,site_id")
    man = load_manifest(str(tmp_path), csv=csv)
    cols = ["patient_id", "image_id", "laterality", "cancer", "site_id", "prediction_id", "path", "path_error"]
    assert man.columns.tolist() == cols
    assert man.index.tolist() == [0, 1]


@pytest.mark.filterwarnings("ignore::pandas.errors.ParserWarning")
def test_rows_ending_in_a_comma_keep_their_columns(tmp_path):
    # one field more than the header: pandas would otherwise take patient_id as the index and shift every
    # column left (image_id as patient_id, laterality as image_id, and the label lost)
    csv = _csv(tmp_path / "train.csv", ["5,6,L,1,", "7,8,R,0,"])
    man = load_manifest(str(tmp_path), csv=csv)
    assert man["patient_id"].tolist() == ["5", "7"] and man["image_id"].tolist() == ["6", "8"]
    assert man["laterality"].tolist() == ["L", "R"] and man["cancer"].tolist() == [1, 0]
    assert man["prediction_id"].tolist() == ["5_L", "7_R"] and man.index.tolist() == [0, 1]


def test_folds_default_to_four_seeded_42_like_scikit_learns_splitter():
    from sklearn.model_selection import StratifiedGroupKFold

    df = _patients(24, 6)
    want = np.empty(len(df), dtype=np.int64)
    split = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=42)
    for k, (_, rows) in enumerate(split.split(np.zeros(len(df)), df["cancer"].to_numpy(), df["patient_id"])):
        want[rows] = k
    assert np.array_equal(assign_folds(df), want)
    assert not np.array_equal(assign_folds(df, seed=43), want)  # the seed matters for this frame


def test_one_positive_image_warns_once_by_patient_not_by_row(caplog):
    # one positive patient with one positive image, 4 folds: the per-patient log line, and not
    # scikit-learn's per-row "least populated class" UserWarning
    df = _patients(8, 0)
    df.loc[0, "cancer"] = 1
    with caplog.at_level("WARNING", logger="training.manifest"), warnings.catch_warnings():
        warnings.simplefilter("error")
        folds = assign_folds(df, folds=4, seed=0)
    assert "1 positive patient(s), 4 folds" in caplog.text
    assert set(folds.tolist()) == {0, 1, 2, 3}
