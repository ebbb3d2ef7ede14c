"""Pictures: training curves, ROC / pF1-vs-threshold, and the PNGs ``train`` and ``predict`` write.

The figures' drawn data are compared with the metrics they show (matplotlib line data
against ``metrics.json`` values, scikit-learn's ROC and the pF1 functions); the PNG files
are decoded and checked for size and content.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import sys

import numpy as np
import pandas as pd
import pytest

from tests.pictures import check_png
from training import plots
from training.metrics import best_threshold, binarized_pf1, pfbeta


def _metrics(aucs=(0.5, None, 0.75)) -> dict:
    hist = []
    for e, auc in enumerate(aucs, 1):
        hist.append(
            {
                "epoch": e,
                "train_loss": 0.7 / e,
                "val_auc": auc,
                "val_pf1": 0.1 * e,
                "val_bin_pf1": 0.2 * e,
                "threshold": 0.05 * e,
            }
        )
    return {"history": hist, "best_epoch": 3, "epochs": 4, "model": "resnet10t", "img_size": [64, 48], "device": "cpu"}


def test_curves_figure_draws_every_history_value_and_marks_the_best_epoch():
    m = _metrics()
    fig = plots.curves_figure(m)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == [p[0] for p in plots.CURVE_PANELS]
    loss, auc, pf1, thr = axes
    np.testing.assert_array_equal(loss.lines[0].get_xdata(), [1, 2, 3])
    np.testing.assert_array_equal(loss.lines[0].get_ydata(), [0.7, 0.35, 0.7 / 3])
    # a null AUC (one class in validation) is a gap, not a zero
    y = auc.lines[0].get_ydata()
    assert y[0] == 0.5 and math.isnan(y[1]) and y[2] == 0.75
    np.testing.assert_allclose(pf1.lines[0].get_ydata(), [0.1, 0.2, 0.3])
    np.testing.assert_allclose(pf1.lines[1].get_ydata(), [0.2, 0.4, 0.6])
    np.testing.assert_allclose(thr.lines[0].get_ydata(), [0.05, 0.1, 0.15])
    for ax in axes:  # the best epoch's dashed line, on every panel
        assert list(ax.lines[-1].get_xdata()) == [3.0, 3.0]
    assert "3 of 4 epochs; best epoch 3" in fig._suptitle.get_text()


def test_curves_figure_of_one_epoch_and_of_none():
    fig = plots.curves_figure(_metrics(aucs=(0.6,)))
    assert list(fig.axes[1].lines[0].get_ydata()) == [0.6]
    with pytest.raises(ValueError, match="empty history"):
        plots.curves_figure({"history": []})


def test_write_curves_never_fails_a_run(tmp_path, caplog, monkeypatch):
    src = tmp_path / "metrics.json"
    src.write_text(json.dumps({"history": []}))
    assert plots.write_curves(src, tmp_path / "a.png") is None and not (tmp_path / "a.png").exists()
    src.write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="training.plots"):
        assert plots.write_curves(src, tmp_path / "b.png") is None
    assert "b.png not drawn: JSONDecodeError" in caplog.text
    src.write_text(json.dumps(_metrics()))
    # matplotlib missing: one line, no PNG, no exception
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level(logging.WARNING, logger="training.plots"):
        assert plots.write_curves(src, tmp_path / "c.png") is None
    assert "c.png not drawn: matplotlib is not installed" in caplog.text
    monkeypatch.undo()
    assert plots.write_curves(src, tmp_path / "d.png") == str(tmp_path / "d.png")
    assert check_png(tmp_path / "d.png") == (1000, 650)


def test_roc_figure_draws_sklearns_curve_and_the_binarized_pf1_per_threshold():
    from sklearn.metrics import roc_curve

    y = np.array([0, 0, 1, 1, 0, 1, 0, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.9, 0.05, 0.6])  # a tie across classes at 0.4
    fig = plots.roc_figure(y, s, threshold=0.5)
    ax_roc, ax_thr = fig.axes
    fpr, tpr, _ = roc_curve(y, s)
    np.testing.assert_array_equal(ax_roc.lines[0].get_xdata(), fpr)
    np.testing.assert_array_equal(ax_roc.lines[0].get_ydata(), tpr)
    assert ax_roc.lines[0].get_label() == "model (AUC 0.800)"
    t, f1 = ax_thr.lines[0].get_xdata(), ax_thr.lines[0].get_ydata()
    assert {0.0, 0.35, 0.4, 1.0} <= set(t.tolist()) and np.all(np.diff(t) > 0)
    np.testing.assert_array_equal(f1, [binarized_pf1(y, s, v) for v in t])
    assert ax_thr.lines[1].get_ydata()[0] == pytest.approx(pfbeta(y, s))  # probabilistic pF1
    best_f1, best_t = best_threshold(y, s)
    assert list(ax_thr.lines[2].get_xdata()) == [best_t] and list(ax_thr.lines[2].get_ydata()) == [best_f1]
    assert list(ax_thr.lines[3].get_xdata()) == [0.5, 0.5]
    with pytest.raises(ValueError, match="both classes"):
        plots.roc_figure([1, 1], [0.2, 0.3])


def test_find_labels_csv_column_first_then_labels_file_beside_the_csv(tmp_path, caplog):
    man = pd.DataFrame({"prediction_id": ["1_L", "1_L", "1_R"], "cancer": [0, 1, 0]})
    assert plots.find_labels(man, str(tmp_path), "train.csv") == {"1_L": 1.0, "1_R": 0.0}
    man = man.drop(columns="cancer")
    assert plots.find_labels(man, str(tmp_path), "test.csv") is None
    (tmp_path / "test_labels.csv").write_text("prediction_id,cancer\n0001_L,1\n0001_R,0\n")
    assert plots.labels_file(str(tmp_path), "test.csv") == str(tmp_path / "test_labels.csv")
    assert plots.find_labels(man, str(tmp_path), "test.csv") == {"0001_L": 1.0, "0001_R": 0.0}  # ids stay strings
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "hold_labels.csv").write_text("prediction_id,label\n1_L,1\n")
    assert plots.labels_file("/nowhere", str(other / "hold.csv")) == str(other / "hold_labels.csv")
    with caplog.at_level(logging.WARNING, logger="training.plots"):
        assert plots.find_labels(man, "/nowhere", str(other / "hold.csv")) is None
    assert "hold_labels.csv: no cancer column" in caplog.text


def test_prediction_roc_data_uses_the_submissions_scores():
    man = pd.DataFrame({"prediction_id": ["a_L", "a_L", "a_R", "b_L", "b_R", "c_L"]})
    ok_rows = np.array([0, 1, 2, 4, 5])  # row 3 (b_L's only image) refused by the manifest
    idx = np.array([4, 0, 1, 3])  # loader order; loader row 2 (a_R) failed
    probs = np.array([0.9, 0.2, 0.6, 0.3])
    truth = {"a_L": 1.0, "a_R": 0.0, "b_L": 1.0, "b_R": 0.0}  # c_L has no answer
    pids, y, s = plots.prediction_roc_data(man, ok_rows, idx, probs, truth=truth, agg="mean", prior=0.05)
    assert pids == ["a_L", "a_R", "b_L", "b_R"]
    np.testing.assert_array_equal(y, [1, 0, 1, 0])
    np.testing.assert_allclose(s, [0.4, 0.05, 0.05, 0.3])  # a_L mean(0.2, 0.6); failed breasts get the prior
    _, _, s = plots.prediction_roc_data(man, ok_rows, idx, probs, truth=truth, agg="max", prior=0.05)
    np.testing.assert_allclose(s, [0.6, 0.05, 0.05, 0.3])


# Its tests carry xdist_group("plots_tiny_run"): one worker trains it.
@pytest.fixture(scope="module")
def tiny_run(tiny_dataset, tmp_path_factory):
    from training.config import TrainConfig
    from training.train import train

    out = str(tmp_path_factory.mktemp("plots_run"))
    cfg = TrainConfig(
        data=tiny_dataset,
        out=out,
        epochs=2,
        steps_per_epoch=2,
        batch_size=4,
        model="resnet10t",
        img_size=(32, 24),
        workers=0,
        device="cpu",
        seed=3,
    )
    return out, train(cfg)


@pytest.mark.xdist_group("plots_tiny_run")
def test_train_writes_curves_png_beside_metrics(tiny_run):
    out, metrics = tiny_run
    assert metrics["epochs_done"] == 2
    assert check_png(os.path.join(out, "curves.png")) == (1000, 650)


@pytest.mark.xdist_group("plots_tiny_run")
def test_predict_writes_roc_png_only_when_labels_are_known(tiny_run, tiny_dataset, tmp_path):
    from training.cli import main

    out, _ = tiny_run
    test = pd.read_csv(os.path.join(tiny_dataset, "test.csv"), dtype={"prediction_id": str})
    breasts = sorted(set(test["prediction_id"]))
    shutil.copy(os.path.join(tiny_dataset, "test.csv"), tmp_path / "held.csv")
    # answers beside the CSV, both classes (test.csv's rows, read from test_images)
    pd.DataFrame({"prediction_id": breasts, "cancer": [i % 2 for i in range(len(breasts))]}).to_csv(
        tmp_path / "held_labels.csv", index=False
    )
    shutil.copy(os.path.join(tiny_dataset, "test.csv"), tmp_path / "plain.csv")
    for name, wanted in (("held", True), ("plain", False)):
        sub = tmp_path / name / "submission.csv"
        sub.parent.mkdir()
        args = ["predict", "--data", tiny_dataset, "--csv", str(tmp_path / f"{name}.csv")]
        args += ["--ckpt", os.path.join(out, "best.pt"), "--out", str(sub), "--workers", "0", "--no-progress"]
        assert main(args) == 0
        assert (sub.parent / "roc.png").exists() is wanted, name
        assert len(pd.read_csv(sub)) == len(breasts)
    assert check_png(tmp_path / "held" / "roc.png") == (1000, 440)
