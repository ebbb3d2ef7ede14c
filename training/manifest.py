"""The manifest: Kaggle ``train.csv`` / ``test.csv`` → one row per image with its DICOM path.

Paths are ``<data>/{split}_images/<patient_id>/<image_id>.dcm``. Ids come from a CSV, so
they are data, not trusted: an id that is empty, absolute, contains a path separator or
is ``.``/``..`` — anything that would make the path leave the data root — is refused
for that row (``path == ""`` and ``path_error`` says why); the rest of the manifest loads.
The check is lexical (symlinks under the data root are followed as the user set them up).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from decode.errors import UsageError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SPLITS = ("train", "test")


class UnsafePathError(ValueError):
    """A CSV id would make an image path leave the data root."""


def resolve_image_path(root: str, split_dir: str, patient_id: str, image_id: str) -> str:
    """``root/split_dir/<patient_id>/<image_id>.dcm``, refusing anything that leaves ``root``.

    Raises:
        UnsafePathError: an id is empty, absolute, has a separator, is ``.``/``..``, or the
            normalised path is not inside ``root``.
    """
    for what, value in (("patient_id", patient_id), ("image_id", image_id)):
        v = str(value)
        # "/" and "\\" cover os.sep and os.altsep on every platform (altsep is None or "/")
        if not v or v in (".", "..") or "/" in v or "\\" in v or "\x00" in v or os.path.isabs(v):
            raise UnsafePathError(f"{what} {v!r} would leave the data root")
    root_n = os.path.normpath(os.path.abspath(root))
    path = os.path.normpath(os.path.join(root_n, split_dir, str(patient_id), f"{image_id}.dcm"))
    if os.path.commonpath([root_n, path]) != root_n:
        raise UnsafePathError(f"{path} is outside the data root {root_n}")
    return path


def split_of_csv(csv: str) -> str:
    """``train*.csv`` → ``"train"``, anything else → ``"test"``."""
    return "train" if os.path.basename(csv).lower().startswith("train") else "test"


def load_manifest(
    data: str, split: str | None = None, *, csv: str | None = None, images: str | None = None
) -> pd.DataFrame:
    """Read a Kaggle CSV and resolve every image path.

    Args:
        data: the dataset root (holds ``train.csv``, ``test.csv``, ``*_images/``).
        split: ``"train"`` or ``"test"`` (default: from the CSV name).
        csv: CSV file (default ``<data>/<split>.csv``); a relative name is looked up in ``data``.
        images: image folder under ``data`` (default ``<split>_images``).

    Returns:
        DataFrame with the CSV columns (``patient_id``, ``image_id`` as str) plus
        ``prediction_id`` (``{patient_id}_{laterality}`` unless the CSV has it),
        ``path`` (absolute; ``""`` when refused) and ``path_error`` (``""`` when fine).
    """
    import pandas as pd

    if split is None:
        split = split_of_csv(csv) if csv else "train"
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    csv = csv or f"{split}.csv"
    if not os.path.isabs(csv) and not os.path.exists(csv):
        csv = os.path.join(data, csv)
    if not os.path.exists(csv):
        raise UsageError(f"{csv}: no such CSV file")
    # index_col=False: a row ending in a delimiter (one field more than the header) must not make
    # pandas take the first column as the index and shift every column by one
    df = pd.read_csv(
        csv,
        dtype={"patient_id": str, "image_id": str, "laterality": str, "prediction_id": str},
        keep_default_na=False,
        index_col=False,
    )
    missing = [c for c in ("patient_id", "image_id", "laterality") if c not in df.columns]
    if missing:
        raise UsageError(f"{csv}: missing column(s) {', '.join(missing)}")
    built = df["patient_id"].astype(str) + "_" + df["laterality"].astype(str)
    if "prediction_id" in df.columns:  # the CSV's own, where it has one
        df["prediction_id"] = df["prediction_id"].where(df["prediction_id"] != "", built)
    else:
        df["prediction_id"] = built
    if "cancer" in df.columns:
        df["cancer"] = pd.to_numeric(df["cancer"], errors="coerce").fillna(0).astype(np.int64)
    folder = images or f"{split}_images"
    paths, errors = [], []
    for pid, iid in zip(df["patient_id"], df["image_id"]):
        try:
            paths.append(resolve_image_path(data, folder, pid, iid))
            errors.append("")
        except UnsafePathError as exc:
            paths.append("")
            errors.append(str(exc))
    df["path"], df["path_error"] = paths, errors
    bad = int((df["path_error"] != "").sum())
    if bad:
        log.warning("%s: %d row(s) refused (path would leave the data root)", csv, bad)
    return df


def assign_folds(df: pd.DataFrame, *, folds: int = 4, seed: int = 42) -> np.ndarray:
    """Fold number per row: grouped by patient, stratified by cancer.

    scikit-learn's ``StratifiedGroupKFold`` (``shuffle=True, random_state=seed``) over the
    rows, with ``patient_id`` as the group and ``cancer > 0`` as the class: a patient's
    images are never split across folds, and positives are spread as evenly as whole
    patients allow. The result does not depend on the row order.

    Args:
        df: manifest rows with ``patient_id`` and, for stratification, ``cancer``.
        folds: K >= 2, at most the number of patients.
        seed: shuffles patients of equal class mix between folds.

    Returns:
        int64 array [len(df)] with values in ``0..folds-1``.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    if folds < 2:
        raise UsageError(f"folds must be >= 2 (got {folds})")
    groups = df["patient_id"].astype(str).to_numpy()
    patients = len(set(groups))
    if patients < folds:
        raise UsageError(f"{patients} patient(s) cannot fill {folds} folds")
    label = df["cancer"] if "cancer" in df.columns else np.zeros(len(df), dtype=np.int64)
    y = (np.asarray(label) > 0).astype(np.int64)
    positive_patients = len(set(groups[y == 1]))
    if 0 < positive_patients < folds:
        log.warning("%d positive patient(s), %d folds: a fold may validate with no positive", positive_patients, folds)
    out = np.empty(len(df), dtype=np.int64)  # every row is in exactly one validation fold
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # its per-row class-count warning; the per-patient one is above
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for k, (_, rows) in enumerate(splitter.split(np.zeros(len(df)), y, groups)):
            out[rows] = k
    return out


def breast_prior(df: pd.DataFrame) -> float:
    """Fraction of breasts (prediction_ids) with cancer; 0 when the frame has no labels."""
    if "cancer" not in df.columns or len(df) == 0:
        return 0.0
    return float((df.groupby("prediction_id")["cancer"].max() > 0).mean())
