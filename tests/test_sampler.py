"""BalancedSampler: ratios, ≥1 positive per batch, rank sharding, determinism, resume state."""

import numpy as np
import pytest

from training.sampler import BalancedSampler


def _labels(n_pos, n_neg, seed=0):
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    return np.random.default_rng(seed).permutation(y)


@pytest.mark.parametrize(
    "n_pos,n_neg,batch,ratio,expect_pos",
    [
        (10, 700, 8, 1 / 8, 1),  # rare positives: oversampled to 1:7
        (300, 700, 8, 1 / 8, 1),  # plenty of positives: still 1:7
        (5, 95, 16, 0.25, 4),
        (2, 50, 4, 0.01, 1),  # at least one per batch
    ],
)
def test_every_batch_has_its_share_of_positives(n_pos, n_neg, batch, ratio, expect_pos):
    y = _labels(n_pos, n_neg)
    s = BalancedSampler(y, batch_size=batch, pos_ratio=ratio, seed=1)
    order = np.array(list(s))
    assert len(order) == len(s) and len(order) % batch == 0
    per_batch = y[order].reshape(-1, batch).sum(1)
    assert (per_batch == expect_pos).all()
    negs = order[y[order] == 0]
    assert set(negs) == set(np.flatnonzero(y == 0))  # every negative once per epoch
    assert len(negs) - len(set(negs)) < batch  # (only the last batch tops up)


def test_epochs_differ_and_repeat():
    y = _labels(20, 200)
    s = BalancedSampler(y, batch_size=8, seed=3)
    e0 = list(s)
    s.set_epoch(1)
    e1 = list(s)
    assert e0 != e1
    s.set_epoch(0)
    assert list(s) == e0
    t = BalancedSampler(y, batch_size=8, seed=99)
    t.load_state_dict({**s.state_dict(), "epoch": 1})
    assert list(t) == e1


def test_rank_sharding_keeps_batches_balanced():
    y = _labels(7, 130)
    world, batch = 2, 8
    s = BalancedSampler(y, batch_size=batch, world=world, seed=0)
    order = list(s)
    shards = [order[r::world] for r in range(world)]
    assert len(shards[0]) == len(shards[1]) == s.batches_per_rank() * batch
    for sh in shards:
        assert (y[np.array(sh)].reshape(-1, batch).sum(1) == 1).all()


def test_cap_and_degenerate_labels():
    y = _labels(20, 200)
    assert len(list(BalancedSampler(y, batch_size=8, max_batches=3))) == 24
    allneg = BalancedSampler(np.zeros(30), batch_size=8)
    assert not allneg.balanced and set(allneg) <= set(range(30)) and len(set(allneg)) == 30
    with pytest.raises(ValueError):
        BalancedSampler(y, batch_size=8, pos_ratio=1.5)


def _batches(sampler, y):
    order = np.array(list(sampler))
    return order, y[order].reshape(-1, sampler.batch_size)


def test_defaults_are_one_positive_in_eight_and_seed_zero():
    y = _labels(40, 400)
    assert BalancedSampler(y, batch_size=28).n_pos == 4  # round(28 / 8) = round(3.5) = 4 (1/9 would give 3)
    assert list(BalancedSampler(y, batch_size=8)) == list(BalancedSampler(y, batch_size=8, seed=0))
    assert list(BalancedSampler(y, batch_size=8)) != list(BalancedSampler(y, batch_size=8, seed=1))


@pytest.mark.parametrize(
    "batch,ratio,n_pos",
    [
        (10, 0.25, 2),  # 2.5 rounds to 2 (half to even), not up
        (12, 0.25, 3),
        (7, 0.3, 2),  # 2.1: batch x ratio need not be an integer
        (4, 0.99, 3),  # capped at batch - 1: a batch keeps one negative
        (2, 0.5, 1),
        (2, 0.01, 1),  # at least one
    ],
)
def test_positives_per_batch_rounds_and_is_capped(batch, ratio, n_pos):
    y = _labels(9, 60)
    s = BalancedSampler(y, batch_size=batch, pos_ratio=ratio)
    assert s.n_pos == n_pos and s.balanced
    _, per = _batches(s, y)
    assert (per.sum(1) == n_pos).all()


def test_batch_of_one_is_a_plain_shuffle_with_one_row_per_batch(caplog):
    y = _labels(3, 9)
    with caplog.at_level("WARNING", logger="training.sampler"):
        s = BalancedSampler(y, batch_size=1)
    assert s.n_pos == 1 and not s.balanced
    assert "plain shuffle" in caplog.text
    assert sorted(s) == list(range(12))  # every row once
    assert s.batches_per_rank() == 12 and len(s) == 12


def test_balanced_with_a_single_positive_or_a_single_negative(caplog):
    with caplog.at_level("WARNING", logger="training.sampler"):
        one_pos = BalancedSampler(np.r_[np.ones(1), np.zeros(20)], batch_size=4)
        one_neg = BalancedSampler(np.r_[np.ones(20), np.zeros(1)], batch_size=4)
    assert caplog.text == ""  # balanced: no warning
    assert one_pos.balanced and one_neg.balanced
    order = np.array(list(one_pos))
    assert (order.reshape(-1, 4) == 0).sum(1).tolist() == [1] * one_pos.batches_per_rank()  # row 0 in every batch
    assert one_neg.batches_per_rank() == 1  # one pass over the single negative


def test_no_negatives_or_no_positives_is_a_plain_shuffle(caplog):
    with caplog.at_level("WARNING", logger="training.sampler"):
        s = BalancedSampler(np.ones(10), batch_size=4)
    assert not s.balanced and "10 positives, 0 negatives, batch 4: plain shuffle" in caplog.text
    assert s.batches_per_rank() == 3  # ceil(10 / 4)
    order = list(s)
    assert len(order) == 12 and set(order) == set(range(10))


def test_label_of_exactly_one_half_is_negative():
    s = BalancedSampler([0.5, 0.5, 1.0, 0.0], batch_size=2)
    assert s.pos.tolist() == [2] and s.neg.tolist() == [0, 1, 3]


def test_batches_per_rank_rounds_up_per_rank_and_is_at_least_one():
    y = np.r_[np.ones(1), np.zeros(5)]
    assert BalancedSampler(y, batch_size=8).batches_per_rank() == 1  # 5 negatives fit one batch
    assert BalancedSampler(y, batch_size=8, world=4).batches_per_rank() == 1  # 1/4 of a batch -> 1
    y = _labels(5, 70)
    assert BalancedSampler(y, batch_size=8, world=2).batches_per_rank() == 5  # ceil(ceil(70 / 7) / 2)
    assert BalancedSampler(y, batch_size=8, world=3).batches_per_rank() == 4  # ceil(10 / 3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(batch_size=0), r"^batch_size must be >= 1$"),
        (dict(batch_size=8, pos_ratio=0.0), r"^pos_ratio must be in \(0, 1\), got 0.0$"),
        (dict(batch_size=8, pos_ratio=1.0), r"^pos_ratio must be in \(0, 1\), got 1.0$"),
        (dict(batch_size=8, world=0), r"^world must be >= 1$"),
    ],
)
def test_bad_arguments_are_refused_at_their_boundary(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BalancedSampler(_labels(2, 10), **kwargs)


def test_state_dict_round_trip_and_mismatch_warning(caplog):
    y = _labels(4, 40)
    s = BalancedSampler(y, batch_size=8, pos_ratio=0.25, world=2, seed=5)
    s.set_epoch(3)
    assert s.state_dict() == {"epoch": 3, "seed": 5, "batch_size": 8, "pos_ratio": 0.25, "world": 2}
    with caplog.at_level("WARNING", logger="training.sampler"):
        BalancedSampler(y, batch_size=8, pos_ratio=0.25).load_state_dict(s.state_dict())
        assert caplog.text == ""  # same batch and ratio: nothing to say
        BalancedSampler(y, batch_size=4, pos_ratio=0.25).load_state_dict(s.state_dict())
        assert "resuming with batch 4/pos_ratio 0.25 (saved 8/0.25)" in caplog.text
        caplog.clear()
        BalancedSampler(y, batch_size=8, pos_ratio=0.25 + 1.5e-12).load_state_dict(s.state_dict())
        assert "resuming with batch 8" in caplog.text  # any ratio difference above 1e-12 is said


def test_resume_ratio_difference_of_exactly_the_tolerance_is_not_said(caplog):
    # 2e-12 - 1e-12 is exactly 1e-12 in floats (a power-of-two scaling): the bound is inclusive
    assert 2e-12 - 1e-12 == 1e-12
    saved = BalancedSampler(_labels(4, 40), batch_size=8, pos_ratio=1e-12).state_dict()
    with caplog.at_level("WARNING", logger="training.sampler"):
        BalancedSampler(_labels(4, 40), batch_size=8, pos_ratio=2e-12).load_state_dict(saved)
    assert caplog.text == ""
