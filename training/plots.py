"""Pictures of a run and of its predictions: training curves, ROC, score histograms, image grids.

Every figure is a :class:`matplotlib.figure.Figure` drawn by the Agg canvas (headless: no
display, no GUI toolkit). pyplot is never imported, so the process-wide backend is left
alone: a notebook's inline display keeps working, and figures are not kept alive by
pyplot's figure manager. matplotlib is imported inside the functions: ``train`` and
``predict`` run without it, and their hooks (:func:`write_curves`,
:func:`write_prediction_roc`) log one line and return None instead of failing a run.

Written by ``rsna-mammo train`` (``RUN/curves.png`` beside ``metrics.json`` at the end of
a run), ``rsna-mammo predict`` (``roc.png`` beside the submission when labels are
known) and used by the notebooks under ``notebooks/``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

from decode.atomic import atomic_write

log = logging.getLogger(__name__)

DPI = 100

#: Per-epoch panels of ``curves.png``: (title, metrics.json history keys, y label).
CURVE_PANELS = (
    ("training loss", ("train_loss",), "BCE (soft labels)"),
    ("validation AUC (breast level)", ("val_auc",), "AUC"),
    ("validation pF1 (breast level)", ("val_pf1", "val_bin_pf1"), "pF1"),
    ("binarization threshold", ("threshold",), "threshold searched on validation"),
)
CURVE_LABELS = {
    "train_loss": "training loss",
    "val_auc": "AUC",
    "val_pf1": "probabilistic",
    "val_bin_pf1": "binarized at the threshold",
    "threshold": "threshold",
}


def new_figure(width: float, height: float):
    """A headless figure (Agg canvas, constrained layout), ``width`` × ``height`` inches at :data:`DPI`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: str | os.PathLike) -> str:
    """Write ``fig`` as a PNG at ``path`` atomically (folders made as needed); returns the path."""
    return atomic_write(os.fspath(path), lambda f: fig.savefig(f, format="png", dpi=DPI))


def _values(history: Sequence[Mapping], key: str) -> np.ndarray:
    """float64 per epoch; a missing, null or non-finite value is NaN (a gap in the line)."""
    out = []
    for h in history:
        v = h.get(key)
        out.append(float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan)
    return np.asarray(out, dtype=np.float64)


def curves_figure(metrics: Mapping):
    """Loss, validation AUC, pF1 (probabilistic and binarized) and threshold per epoch.

    Args:
        metrics: the dict ``train`` returns and writes to ``RUN/metrics.json`` (its
            ``history`` holds one record per epoch; ``best_epoch`` is marked).

    Raises:
        ValueError: ``metrics`` has no epoch to plot.
    """
    history = list(metrics.get("history") or [])
    if not history:
        raise ValueError("metrics has no epoch to plot (empty history)")
    epochs = _values(history, "epoch")
    best = metrics.get("best_epoch")
    fig = new_figure(10.0, 6.5)
    axes = fig.subplots(2, 2).ravel()
    for ax, (title, keys, ylabel) in zip(axes, CURVE_PANELS):
        for key in keys:
            ax.plot(epochs, _values(history, key), "o-", ms=4, label=CURVE_LABELS.get(key, key))
        if best is not None:
            ax.axvline(float(best), color="grey", ls="--", lw=1, label=f"best epoch ({best})")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if keys[0] != "train_loss":
            ax.set_ylim(-0.02, 1.02)
        if len(keys) > 1 or best is not None:
            ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    size = metrics.get("img_size") or ["?", "?"]
    fig.suptitle(
        f"{metrics.get('model', 'model')} at {size[0]}×{size[1]} on {metrics.get('device', '?')}: "
        f"{len(history)} of {metrics.get('epochs', len(history))} epochs; best epoch {best} "
        f"(AUC {_num(metrics.get('val_auc'))}, binarized pF1 {_num(metrics.get('val_bin_pf1'))})"
    )
    return fig


def _num(v) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{float(v):.3f}"


def write_curves(metrics_json: str | os.PathLike, png: str | os.PathLike) -> str | None:
    """Draw :func:`curves_figure` of ``metrics_json`` into ``png``.

    Returns:
        ``png``, or None (with one log line) when there is nothing to draw, matplotlib is
        missing or drawing fails: a picture never fails a training run.
    """
    try:
        with open(metrics_json, encoding="utf-8") as f:
            metrics = json.load(f)
        if not metrics.get("history"):
            return None
        return save_figure(curves_figure(metrics), png)
    except ImportError as exc:
        log.warning("%s not drawn: matplotlib is not installed (%s)", png, exc)
    except Exception as exc:
        log.warning("%s not drawn: %s: %s", png, type(exc).__name__, exc)
    return None


def threshold_curve(labels, scores, thresholds=None) -> tuple[np.ndarray, np.ndarray]:
    """Binarized pF1 at each threshold (default: 0..1 in steps of 0.01 and every distinct score).

    Returns:
        ``(thresholds float64 [T] ascending, binarized pF1 float64 [T])``.
    """
    from .metrics import binarized_pf1

    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if thresholds is None:
        thresholds = np.union1d(np.linspace(0.0, 1.0, 101), s[np.isfinite(s)])
    t = np.asarray(thresholds, dtype=np.float64)
    return t, np.array([binarized_pf1(labels, s, float(v)) for v in t], dtype=np.float64)


def roc_figure(labels, scores, *, threshold: float | None = None, title: str | None = None):
    """ROC curve and binarized pF1 against the threshold, side by side.

    Args:
        labels: 0/1 per breast (or image); both classes must be present.
        scores: probabilities in [0, 1], aligned with ``labels``.
        threshold: a threshold to mark (e.g. the checkpoint's validation threshold).
        title: figure title (default: counts and AUC).

    Raises:
        ValueError: only one class in ``labels`` (the ROC is undefined).
    """
    from sklearn.metrics import roc_curve

    from .metrics import best_threshold, pfbeta, roc_auc

    y = np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.all() or not y.any():
        raise ValueError(f"ROC needs both classes; the labels have {int(y.sum())} positive(s) of {y.size}")
    fpr, tpr, _ = roc_curve(y, s)
    auc = roc_auc(y, s)
    fig = new_figure(10.0, 4.4)
    ax_roc, ax_thr = fig.subplots(1, 2)
    ax_roc.plot(fpr, tpr, lw=2, label=f"model (AUC {auc:.3f})")
    ax_roc.plot([0, 1], [0, 1], color="grey", ls=":", lw=1, label="chance")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    ax_roc.set_title("ROC")
    ax_roc.legend(loc="lower right", fontsize=8)
    ax_roc.grid(alpha=0.3)
    t, f1 = threshold_curve(y, s)
    best_f1, best_t = best_threshold(y, s)
    ax_thr.plot(t, f1, lw=1.5, label="binarized pF1")
    ax_thr.axhline(pfbeta(y, s), color="tab:green", ls="--", lw=1, label=f"probabilistic pF1 {pfbeta(y, s):.3f}")
    ax_thr.plot([best_t], [best_f1], "o", color="tab:red", label=f"best {best_f1:.3f} at {best_t:.3f}")
    if threshold is not None:
        ax_thr.axvline(float(threshold), color="grey", ls=":", lw=1, label=f"given threshold {float(threshold):.3f}")
    ax_thr.set(xlabel="threshold", ylabel="pF1", xlim=(0, 1), ylim=(-0.02, 1.02))
    ax_thr.set_title("pF1 against the threshold")
    ax_thr.legend(fontsize=8)
    ax_thr.grid(alpha=0.3)
    fig.suptitle(title or f"{y.size} rows, {int(y.sum())} positive: AUC {auc:.3f}")
    return fig


def labels_file(data: str, csv: str) -> str:
    """Where the answers to ``csv`` are looked for: ``<csv without .csv>_labels.csv`` beside it
    (``test.csv`` → ``test_labels.csv``, as ``rsna-mammo synth`` writes them)."""
    path = csv if os.path.isabs(csv) or os.path.exists(csv) else os.path.join(data, csv)
    return os.path.splitext(path)[0] + "_labels.csv"


def find_labels(man, data: str, csv: str) -> dict[str, float] | None:
    """Per-breast answers for a prediction run, or None when there are none.

    The manifest's own ``cancer`` column (max per ``prediction_id``; e.g. ``--csv train.csv``)
    wins; else :func:`labels_file` (columns ``prediction_id``, ``cancer``).
    """
    import pandas as pd

    if "cancer" in man.columns:
        return {str(k): float(v) for k, v in man.groupby("prediction_id", sort=False)["cancer"].max().items()}
    path = labels_file(data, csv)
    if not os.path.isfile(path):
        return None
    df = pd.read_csv(path, dtype={"prediction_id": str})
    missing = [c for c in ("prediction_id", "cancer") if c not in df.columns]
    if missing:
        log.warning("%s: no %s column; no ROC drawn", path, " / ".join(missing))
        return None
    return {str(k): float(v) for k, v in df.groupby("prediction_id", sort=False)["cancer"].max().items()}


def prediction_roc_data(
    man, ok_rows, idx, probs, *, truth: Mapping[str, float], agg: str, prior: float
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The submission's breasts that have an answer, their answers and their scores.

    Scores are the submission's: image probabilities (``probs`` for loader rows ``idx``,
    which index ``ok_rows``, which index ``man``) aggregated per ``prediction_id`` with
    ``agg``; a breast whose images all failed scores ``prior``. CSV order.

    Returns:
        ``(prediction ids, answers float64 0/1, scores float64 in [0, 1])``.
    """
    from .metrics import aggregate_breasts

    rows = np.asarray(ok_rows, dtype=np.int64)[np.asarray(idx, dtype=np.int64)] if len(idx) else np.zeros(0, np.int64)
    scored = aggregate_breasts(man["prediction_id"].iloc[rows].tolist(), probs, agg=agg)
    score_of = dict(zip(scored.ids, scored.scores))
    pids = [str(p) for p in dict.fromkeys(man["prediction_id"].tolist()) if str(p) in truth]
    y = np.array([truth[p] for p in pids], dtype=np.float64)
    s = np.array([score_of.get(p, prior) for p in pids], dtype=np.float64)
    return pids, y, s


def write_prediction_roc(
    out: str, man, ok_rows, idx, probs, *, data: str, csv: str, agg: str, prior: float, threshold: float | None
) -> str | None:
    """``roc.png`` beside the submission ``out`` when the breasts' answers are known (:func:`find_labels`).

    Breasts without an answer are left out (:func:`prediction_roc_data`); ``threshold`` (the
    model's validation threshold) is marked.

    Returns:
        The PNG's path, or None (no labels, one class only, matplotlib missing: one log line).
    """
    try:
        truth = find_labels(man, data, csv)
        if truth is None:
            return None
        pids, y, s = prediction_roc_data(man, ok_rows, idx, probs, truth=truth, agg=agg, prior=prior)
        if len(set((y > 0.5).tolist())) < 2:
            log.info("no roc.png: the known answers hold one class only (%d breasts)", len(pids))
            return None
        title = f"{len(pids)} breasts ({int((y > 0.5).sum())} with cancer), {agg} of image scores"
        png = os.path.join(os.path.dirname(os.path.abspath(out)), "roc.png")
        return save_figure(roc_figure(y, s, threshold=threshold, title=title), png)
    except ImportError as exc:
        log.warning("roc.png not drawn: matplotlib is not installed (%s)", exc)
    except Exception as exc:
        log.warning("roc.png not drawn: %s: %s", type(exc).__name__, exc)
    return None


def score_histogram_figure(scores, labels=None, *, threshold: float | None = None, bins: int = 20):
    """Distribution of scores, one histogram per class when ``labels`` are given.

    The bins span the scores' own range (a barely trained model's scores sit in a narrow
    band, which bins over [0, 1] would draw as one bar).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    lo, hi = (float(s.min()), float(s.max())) if s.size else (0.0, 1.0)
    if threshold is not None:
        lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
    pad = max(1e-3, 0.02 * (hi - lo))
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    fig = new_figure(6.0, 3.6)
    ax = fig.subplots()
    if labels is None:
        ax.hist(s, bins=edges, color="tab:blue", alpha=0.8, label=f"all ({s.size})")
    else:
        y = np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5
        ax.hist(s[~y], bins=edges, color="tab:blue", alpha=0.6, label=f"no cancer ({int((~y).sum())})")
        ax.hist(s[y], bins=edges, color="tab:red", alpha=0.6, label=f"cancer ({int(y.sum())})")
    if threshold is not None:
        ax.axvline(float(threshold), color="black", ls="--", lw=1, label=f"threshold {float(threshold):.3f}")
    ax.set(xlabel="predicted probability of cancer", ylabel="count")
    ax.set_title("score distribution per class" if labels is not None else "score distribution")
    ax.legend(fontsize=8)
    return fig


def _show(ax, img, title: str | None = None, *, box=None, vrange: tuple[float, float] | None = None) -> None:
    a = np.asarray(img, dtype=np.float32)
    lo, hi = vrange if vrange is not None else (float(np.nanmin(a)), float(np.nanmax(a)))
    ax.imshow(a, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    if box is not None:
        from matplotlib.patches import Rectangle

        y0, y1, x0, x1 = (int(v) for v in box)
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="tab:red", lw=1.5))
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid_figure(
    images: Sequence,
    titles: Sequence[str] | None = None,
    *,
    cols: int = 8,
    cell: float = 1.6,
    vrange: tuple[float, float] | None = (0.0, 1.0),
):
    """Images side by side in grey, ``cols`` per row.

    Args:
        images: ``(H, W)`` arrays (numpy, or anything ``np.asarray`` takes).
        titles: one short line per image.
        vrange: the values shown black and white (default 0 and 1, as the chain's output);
            None scales each image to its own min–max.
    """
    n = len(images)
    if n == 0:
        raise ValueError("no image to show")
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    h, w = np.asarray(images[0]).shape[:2]
    fig = new_figure(cell * cols, cell * rows * h / max(w, 1) + 0.3 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for i, ax in enumerate(axes):
        if i < n:
            _show(ax, images[i], titles[i] if titles is not None else None, vrange=vrange)
        else:
            ax.axis("off")
    return fig


def chain_figure(cases: Sequence[Mapping]):
    """One row per case: stored values with the breast box, the VOI output, the breast crop.

    Args:
        cases: mappings with ``title`` (the row's caption), ``raw`` (stored values, shown
            min–max), ``voi`` (float [0, 1]), ``crop`` (float [0, 1], flipped to face left)
            and ``box`` (``(y0, y1, x0, x1)`` in frame pixels, drawn on the stored values).
    """
    if not cases:
        raise ValueError("no case to show")
    fig = new_figure(7.5, 2.5 * len(cases) + 0.3)
    columns = ("stored values, breast box", "VOI → [0, 1]", "breast crop, chest wall left")
    for k, (sub, case) in enumerate(zip(np.atleast_1d(fig.subfigures(len(cases), 1)), cases)):
        raw = np.asarray(case["raw"])
        sub.suptitle(f"{case['title']} (stored {int(raw.min())}–{int(raw.max())})", fontsize=9)
        axes = sub.subplots(1, 3)
        titles = columns if k == 0 else (None, None, None)
        _show(axes[0], raw, titles[0], box=case["box"])
        _show(axes[1], case["voi"], titles[1], vrange=(0.0, 1.0))
        _show(axes[2], case["crop"], titles[2], vrange=(0.0, 1.0))
    return fig
