"""Screening metrics against hand-computed values and the Kaggle reference scorer."""

import dataclasses
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

from training.metrics import aggregate_breasts, best_threshold, binarized_pf1, breast_metrics, pfbeta, roc_auc

LABELS = [1, 0, 1, 0]
SCORES = [0.8, 0.4, 0.6, 0.2]


def kaggle_pfbeta(labels, predictions, beta=1):
    """The competition's scorer, verbatim in logic."""
    y_true_count = ctp = cfp = 0
    for idx in range(len(labels)):
        prediction = min(max(predictions[idx], 0), 1)
        if labels[idx]:
            y_true_count += 1
            ctp += prediction
        else:
            cfp += prediction
    beta_squared = beta * beta
    c_precision = ctp / (ctp + cfp)
    c_recall = ctp / y_true_count
    if c_precision > 0 and c_recall > 0:
        return (1 + beta_squared) * (c_precision * c_recall) / (beta_squared * c_precision + c_recall)
    return 0


def test_pf1_hand_computed():
    # pTP = 1.4, pFP = 0.6: precision 0.7, recall 0.7
    assert pfbeta(LABELS, SCORES) == pytest.approx(0.7)
    # beta only matters when precision and recall differ: here P = 0.7 = R, so every beta gives 0.7
    assert pfbeta(LABELS, SCORES, beta=2) == pytest.approx(0.7)
    assert pfbeta([0, 0], [0.3, 0.2]) == 0.0  # no positives
    assert pfbeta([1, 0], [0.0, 0.0]) == 0.0
    assert pfbeta([1, 0], [1.7, -0.3]) == 1.0  # clipped to [0, 1]


def test_pf1_matches_kaggle_scorer():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = (rng.random(50) < 0.3).astype(int)
        y[0] = 1
        p = rng.random(50)
        assert pfbeta(y, p) == pytest.approx(kaggle_pfbeta(y, p))


def test_binarized_pf1_and_threshold_search():
    assert binarized_pf1(LABELS, SCORES, 0.5) == 1.0
    assert binarized_pf1(LABELS, SCORES, 0.3) == pytest.approx(0.8)  # P=2/3, R=1
    assert binarized_pf1(LABELS, SCORES, 0.7) == pytest.approx(2 / 3)  # P=1, R=1/2
    f, t = best_threshold(LABELS, SCORES)
    assert (f, t) == (pytest.approx(1.0), 0.6)  # the highest threshold with the best score
    f, t = best_threshold([1, 0, 0, 1, 0], [0.9, 0.7, 0.1, 0.3, 0.2])
    # t=0.9: P1 R.5 → .667; t=0.7: P.5 R.5 → .5; t=0.3: P2/3 R1 → .8; t=0.2: P.5 R1 → .667
    assert (f, t) == (pytest.approx(0.8), 0.3)
    assert best_threshold([0, 0], [0.0, 0.0]) == (0.0, 0.5)


def _pairwise_auc(y, s):
    """AUC by counting every positive/negative pair (a tie counts one half)."""
    pos = [b for a, b in zip(y, s) if a]
    neg = [b for a, b in zip(y, s) if not a]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_hand_computed_with_ties():
    assert roc_auc(LABELS, SCORES) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([1, 0], [0.5, 0.5]) == 0.5
    assert roc_auc([1, 0, 0], [0.5, 0.5, 0.2]) == pytest.approx(0.75)
    assert roc_auc([1, 1, 0, 0], [0.3, 0.3, 0.3, 0.3]) == 0.5  # every score tied
    assert roc_auc([0, 1], [0.9, 0.1]) == 0.0  # perfectly wrong
    assert roc_auc([0.9, 0.2, 0.6], [0.7, 0.1, 0.3]) == 1.0  # labels above 0.5 count as positive


def test_auc_matches_pair_counting_on_heavily_tied_scores():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(2, 40))
        y = rng.integers(0, 2, n)
        y[0], y[1] = 0, 1  # both classes present
        s = rng.integers(0, 4, n) / 4.0  # four distinct values: many ties
        assert roc_auc(y, s) == pytest.approx(_pairwise_auc(y, s), abs=1e-12)


def test_auc_nan_on_one_class_empty_or_non_finite_scores(caplog):
    assert math.isnan(roc_auc([1, 1], [0.1, 0.2]))
    assert math.isnan(roc_auc([0, 0, 0], [0.1, 0.2, 0.3]))
    assert math.isnan(roc_auc([], []))
    with caplog.at_level("WARNING", logger="training.metrics"):
        assert math.isnan(roc_auc([1, 0, 1], [0.2, float("nan"), 0.9]))
    assert "1 of 3 scores are not finite" in caplog.text
    with pytest.raises(ValueError, match="2 labels for 3 scores"):
        roc_auc([1, 0], [0.1, 0.2, 0.3])


def test_breast_aggregation_mean_and_max():
    ids = ["a", "a", "b", "b", "c"]
    s = [0.2, 0.6, 0.1, 0.3, 0.9]
    y = [0, 1, 0, 0, 1]
    mean = aggregate_breasts(ids, s, y, agg="mean")
    assert mean.ids == ("a", "b", "c")
    np.testing.assert_allclose(mean.scores, [0.4, 0.2, 0.9])
    np.testing.assert_array_equal(mean.labels, [1, 0, 1])
    mx = aggregate_breasts(ids, s, y, agg="max")
    np.testing.assert_allclose(mx.scores, [0.6, 0.3, 0.9])
    with pytest.raises(ValueError, match="mean, max"):
        aggregate_breasts(ids, s, agg="median")
    m = breast_metrics(ids, s, y, agg="mean")
    assert m["auc"] == 1.0 and m["breasts"] == 3 and m["positives"] == 2
    assert m["pf1"] == pytest.approx(pfbeta([1, 0, 1], [0.4, 0.2, 0.9]))
    assert m["bin_pf1"] == 1.0 and m["threshold"] == 0.4


def test_pfbeta_weights_recall_by_beta_when_precision_and_recall_differ():
    # pTP = 0.5, pFP = 0.5: precision 0.5; 2 positives: recall 0.25
    y, p = [1, 1, 0], [0.5, 0.0, 0.5]
    assert pfbeta(y, p) == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert pfbeta(y, p, beta=2) == pytest.approx(5 * 0.5 * 0.25 / (4 * 0.5 + 0.25))
    assert pfbeta(y, p, beta=0.5) == pytest.approx(1.25 * 0.5 * 0.25 / (0.25 * 0.5 + 0.25))


def test_pfbeta_equal_true_and_false_mass_is_not_zero():
    # pTP == pFP > 0 (their difference is 0, their sum is not): precision 0.5, recall 0.5
    assert pfbeta([1, 0], [0.5, 0.5]) == pytest.approx(0.5)


def test_pfbeta_is_zero_when_only_negatives_score():
    assert pfbeta([1, 0], [0.0, 0.7]) == 0.0
    assert pfbeta([1, 0, 1], [0.0, 1.0, 0.0]) == 0.0


def test_label_of_exactly_one_half_is_negative():
    # labels are positive strictly above 0.5
    assert pfbeta([0.5, 1], [1.0, 1.0]) == pytest.approx(2 / 3)  # P = 1/2, R = 1
    assert math.isnan(roc_auc([0.5, 0.5], [0.1, 0.9]))  # one class only
    assert roc_auc([0.5, 0.51], [0.9, 0.1]) == 0.0


def test_auc_nan_when_every_label_is_positive():
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.5, 0.9]))


def test_length_mismatch_messages_name_both_counts():
    with pytest.raises(ValueError, match=r"^2 labels for 3 scores$"):
        roc_auc([1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"^3 labels for 2 scores$"):
        pfbeta([1, 0, 1], [0.1, 0.2])


def test_threshold_ties_keep_the_highest_threshold():
    # t=0.9: P 1, R 1/2 -> 2/3; t=0.63: 1/2; t=0.37: 0.4; t=0.1: P 1/2, R 1 -> 2/3 (a tie with 0.9)
    f, t = best_threshold([1, 0, 0, 1], [0.9, 0.63, 0.37, 0.1])
    assert (f, t) == (pytest.approx(2 / 3), 0.9)
    f, t = best_threshold([1, 0, 0, 1], [0.1, 0.63, 0.37, 0.9])  # the row order does not matter
    assert (f, t) == (pytest.approx(2 / 3), 0.9)


def test_breast_aggregation_defaults_order_and_contract():
    ids = ["b", "a", "b", "a"]
    s = [0.2, 0.9, 0.4, 0.5]
    got = aggregate_breasts(ids, s)
    assert got.ids == ("b", "a")  # first appearance, not sorted
    np.testing.assert_allclose(got.scores, [0.3, 0.7])  # the default is the mean
    assert got.labels.size == 0  # no labels given: none invented
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.ids = ()
    with pytest.raises(ValueError, match=r"^unknown aggregation 'median'; allowed: mean, max$"):
        aggregate_breasts(ids, s, agg="median")
    m = breast_metrics(ids, s, [0, 1, 0, 0])
    assert m["pf1"] == pytest.approx(pfbeta([0, 1], [0.3, 0.7]))  # mean by default
    assert m["positives"] == 1 and m["breasts"] == 2


def test_auc_of_one_class_is_nan_without_a_warning():
    # one class is an expected validation outcome (a fold without positives): nan, and no
    # UndefinedMetricWarning from scikit-learn on every epoch
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(roc_auc([1, 1], [0.1, 0.2]))
        assert math.isnan(roc_auc([0, 0, 0], [0.1, 0.2, 0.3]))


def test_threshold_gain_smaller_than_any_float_tolerance_still_wins():
    # P positives: P - 1 score 0.9, one scores 0.5 beside one negative. Exactly:
    # t=0.9: 2(P-1) / (2P-1); t=0.5: 2P / (2P+1), better by 2 / (4P² - 1) ≈ 8.9e-13 for P = 750 000
    n_pos = 750_000
    y = np.r_[np.ones(n_pos), np.zeros(1)]
    s = np.r_[np.full(n_pos - 1, 0.9), 0.5, 0.5]
    low, high = Fraction(2 * n_pos, 2 * n_pos + 1), Fraction(2 * (n_pos - 1), 2 * n_pos - 1)
    assert 0 < low - high < Fraction(1, 10**12)
    assert binarized_pf1(y, s, 0.5) > binarized_pf1(y, s, 0.9)  # floats tell them apart too
    f, t = best_threshold(y, s)
    assert t == 0.5 and f == binarized_pf1(y, s, 0.5)


def _exact_best_threshold(y, s):
    """Reference: at every distinct score, F1 = 2TP / (2TP + FP + FN) of the hard predictions,
    counted row by row as an exact fraction; the highest threshold among the best."""
    best, thr = Fraction(0), 0.5
    for t in sorted(set(s.tolist()), reverse=True):
        tp = sum(1 for a, b in zip(y, s) if a and b >= t)
        fp = sum(1 for a, b in zip(y, s) if not a and b >= t)
        fn = sum(1 for a, b in zip(y, s) if a and b < t)
        f = Fraction(2 * tp, 2 * tp + fp + fn)
        if f > best:
            best, thr = f, t
    return best, thr


def test_threshold_search_matches_an_exact_search_on_tied_scores():
    rng = np.random.default_rng(3)
    for _ in range(15):
        n = int(rng.integers(2, 30))
        y = rng.integers(0, 2, n)
        y[0] = 1
        s = rng.integers(0, 5, n) / 4.0  # five distinct values: ties between rows and between thresholds
        best, thr = _exact_best_threshold(y, s)
        f, t = best_threshold(y, s)
        assert t == thr and f == pytest.approx(float(best), abs=1e-15)
        assert f == binarized_pf1(y, s, t)  # the value the per-threshold curve shows there


def test_threshold_with_one_positive_or_one_distinct_score():
    assert best_threshold([1, 0], [0.5, 0.5]) == (pytest.approx(2 / 3), 0.5)  # P 1/2, R 1
    assert best_threshold([0, 1], [0.2, 0.7]) == (1.0, 0.7)
    assert best_threshold([1, 0, 0], [0.0, 0.0, 0.0]) == (pytest.approx(0.5), 0.0)  # all zero: threshold 0


def test_threshold_never_calls_a_nan_score():
    nan = float("nan")
    assert best_threshold([1, 0, 1], [nan, 0.3, 0.6]) == (pytest.approx(2 / 3), 0.6)  # P 1, R 1/2
    assert best_threshold([1, 0], [nan, 0.3]) == (0.0, 0.5)  # the only positive is never called
    assert best_threshold([0, 0], [nan, 0.3]) == (0.0, 0.5)  # no positive at all


def test_threshold_length_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"^1 labels for 3 scores$"):
        best_threshold([1], [0.1, 0.2, 0.3])  # one label is not broadcast over the scores
    with pytest.raises(ValueError, match=r"^2 labels for 0 scores$"):
        best_threshold([1, 0], [])
