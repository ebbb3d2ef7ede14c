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
