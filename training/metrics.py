"""Screening metrics: ROC AUC, probabilistic F1, binarized pF1 with a threshold search,
and breast-level aggregation.

ROC AUC is scikit-learn's. The probabilistic F1 of the RSNA competition and the search for
the threshold that maximises its binarized form are written here: no kept library has them.

All functions take plain numpy arrays (or anything ``np.asarray`` accepts) on the host:
``labels`` are 0/1 (any value > 0.5 counts as positive), ``scores`` are probabilities in
[0, 1] (pF1 clips them to [0, 1], like the Kaggle scorer).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np

log = logging.getLogger(__name__)

Agg = Literal["mean", "max"]
AGGS = ("mean", "max")


def _as_binary(labels) -> np.ndarray:
    return np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``; tied scores count one half).

    Returns:
        AUC in [0, 1]; ``nan`` when only one class is present (or no rows), and ``nan`` with
        a warning when a score is not finite (a diverged model), so validation goes on.
    """
    from sklearn.metrics import roc_auc_score

    y = _as_binary(labels)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels for {s.size} scores")
    if y.all() or not y.any():
        return float("nan")
    if not np.isfinite(s).all():
        log.warning("AUC undefined: %d of %d scores are not finite", int((~np.isfinite(s)).sum()), s.size)
        return float("nan")
    return float(roc_auc_score(y, s))


def pfbeta(labels, scores, beta: float = 1.0) -> float:
    """Probabilistic F-beta (the RSNA competition metric).

    pTP = Σ p over positives, pFP = Σ p over negatives, precision = pTP / (pTP + pFP),
    recall = pTP / #positives. Returns 0 when precision or recall is 0 (or no positives).
    """
    y = _as_binary(labels)
    p = np.clip(np.asarray(scores, dtype=np.float64).reshape(-1), 0.0, 1.0)
    if y.shape != p.shape:
        raise ValueError(f"{y.size} labels for {p.size} scores")
    ctp, cfp = float(p[y].sum()), float(p[~y].sum())
    if ctp == 0:  # no positive label, or none scored above 0: precision and recall are both 0
        return 0.0
    precision, recall = ctp / (ctp + cfp), ctp / int(y.sum())
    b2 = beta * beta
    return float((1 + b2) * precision * recall / (b2 * precision + recall))


def binarized_pf1(labels, scores, threshold: float) -> float:
    """pF1 of the hard predictions ``scores >= threshold``."""
    p = (np.asarray(scores, dtype=np.float64).reshape(-1) >= threshold).astype(np.float64)
    return pfbeta(labels, p)


def best_threshold(labels, scores) -> tuple[float, float]:
    """Search the threshold that maximises binarized pF1.

    Candidates are the distinct scores (each one the lowest score called positive);
    among equally good thresholds the highest is kept (fewest positives called). The
    comparison is exact: binarized pF1 is ``2·TP / (TP + FP + #positives)``, compared as a
    fraction of counts, so a better threshold wins however small its gain (a float
    tolerance would call two thresholds tied once they differ by less than it, which
    happens from about a million rows) and a tie is a true tie.

    Returns:
        ``(best binarized pF1, threshold)``; ``(0.0, 0.5)`` when there is no positive label,
        or when every positive's score is NaN (no threshold then gives a pF1 above 0).
        All-zero scores with a positive label give threshold 0.0.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = _as_binary(labels)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels for {s.size} scores")
    n_pos = int(y.sum())
    if n_pos == 0:
        return 0.0, 0.5
    best, thr = Fraction(0), 0.5
    for t in np.unique(s)[::-1]:  # high to low: ties keep the higher threshold
        called = s >= t  # a NaN score is never called
        f = Fraction(int((called & y).sum()), int(called.sum()) + n_pos)  # half the binarized pF1
        if f > best:
            best, thr = f, float(t)
    return binarized_pf1(y, s, thr), thr


@dataclass(frozen=True)
class BreastScores:
    """Per-breast scores after aggregation (arrays aligned with ``ids``)."""

    ids: tuple[str, ...]
    scores: np.ndarray  # float64 [N] in [0, 1]
    labels: np.ndarray  # float64 [N] 0/1 (max over the breast's images), or empty when unknown


def aggregate_breasts(prediction_ids: Sequence[str], scores, labels=None, *, agg: Agg = "mean") -> BreastScores:
    """Reduce image scores to one score per ``prediction_id`` (``mean`` or ``max``).

    Breast labels are the max of the image labels. Order: first appearance of each id.
    """
    if agg not in AGGS:
        raise ValueError(f"unknown aggregation {agg!r}; allowed: {', '.join(AGGS)}")
    import pandas as pd

    df = pd.DataFrame({"pid": list(prediction_ids), "s": np.asarray(scores, dtype=np.float64).reshape(-1)})
    if labels is not None:
        df["y"] = np.asarray(labels, dtype=np.float64).reshape(-1)
    g = df.groupby("pid", sort=False)
    s = g["s"].mean() if agg == "mean" else g["s"].max()
    y = g["y"].max().to_numpy() if labels is not None else np.empty(0)
    return BreastScores(tuple(str(i) for i in s.index), s.to_numpy(dtype=np.float64), y)


def breast_metrics(prediction_ids: Sequence[str], scores, labels, *, agg: Agg = "mean") -> dict:
    """AUC, pF1, best binarized pF1 and its threshold at breast level.

    Returns:
        ``{"auc", "pf1", "bin_pf1", "threshold", "breasts", "positives"}``.
    """
    b = aggregate_breasts(prediction_ids, scores, labels, agg=agg)
    bin_f1, thr = best_threshold(b.labels, b.scores)
    return {
        "auc": roc_auc(b.labels, b.scores),
        "pf1": pfbeta(b.labels, b.scores),
        "bin_pf1": bin_f1,
        "threshold": thr,
        "breasts": len(b.ids),
        "positives": int(b.labels.sum()),
    }
