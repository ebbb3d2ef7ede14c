"""`BalancedSampler`: batches with a fixed share of positives (≥ 1 per batch).

An epoch visits every negative once (fewer when ``max_batches`` caps it), in a seeded
shuffle; each batch of ``batch_size`` rows holds ``n_pos = max(1, round(batch_size *
pos_ratio))`` positives (at most ``batch_size − 1``) drawn from a cycling shuffle of the
positives (oversampled when they are rare, as in the winning RSNA recipe: ~1:7). Without
both classes (or with ``batch_size`` 1) it is a plain seeded shuffle. The order depends
only on ``(seed, epoch)``, so resuming needs just ``state_dict()``.

For ``world`` processes the sampler emits ``world`` batches per step interleaved
row by row, so the loader's ``order[rank::world]`` sharding hands every rank whole
balanced batches, and every rank gets the same number of batches (DDP needs that).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)


class BalancedSampler:
    """Row indices in balanced batches (an iterable re-iterated each epoch).

    Args:
        labels: per-row targets; ``> 0.5`` is positive.
        batch_size: rows per batch on one process.
        pos_ratio: share of positives per batch, in (0, 1) (default 1/8, i.e. 1:7).
        world: number of processes sharding this order with ``order[rank::world]``.
        seed: base seed.
        max_batches: cap on batches per process per epoch (None: one pass over the negatives).
    """

    def __init__(
        self,
        labels: Sequence[float],
        *,
        batch_size: int,
        pos_ratio: float = 1 / 8,
        world: int = 1,
        seed: int = 0,
        max_batches: int | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if not 0.0 < pos_ratio < 1.0:
            raise ValueError(f"pos_ratio must be in (0, 1), got {pos_ratio}")
        if world < 1:
            raise ValueError("world must be >= 1")
        y = np.asarray(labels, dtype=np.float64).reshape(-1) > 0.5
        self.pos = np.flatnonzero(y)
        self.neg = np.flatnonzero(~y)
        self.batch_size = int(batch_size)
        self.pos_ratio = float(pos_ratio)
        self.world = int(world)
        self.seed = int(seed)
        self.max_batches = max_batches
        self.epoch = 0
        self.n_pos = max(1, min(self.batch_size - 1, int(round(self.batch_size * self.pos_ratio))))
        self.balanced = len(self.pos) > 0 and len(self.neg) > 0 and self.batch_size > 1
        if not self.balanced:
            log.warning(
                "BalancedSampler: %d positives, %d negatives, batch %d: plain shuffle",
                len(self.pos),
                len(self.neg),
                self.batch_size,
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def batches_per_rank(self) -> int:
        """Batches each process gets per epoch."""
        if self.balanced:
            total = math.ceil(len(self.neg) / (self.batch_size - self.n_pos))
        else:
            total = math.ceil((len(self.pos) + len(self.neg)) / self.batch_size)
        per_rank = max(1, math.ceil(total / self.world))
        return min(per_rank, self.max_batches) if self.max_batches else per_rank

    def _batches(self, rng: np.random.Generator, n: int) -> list[np.ndarray]:
        if not self.balanced:
            everything = np.concatenate([self.pos, self.neg])
            return list(_cycle(rng, everything, n * self.batch_size).reshape(n, self.batch_size))
        k_neg = self.batch_size - self.n_pos
        negs = _cycle(rng, self.neg, n * k_neg)
        poss = _cycle(rng, self.pos, n * self.n_pos)
        out = []
        for i in range(n):
            b = np.concatenate([poss[i * self.n_pos : (i + 1) * self.n_pos], negs[i * k_neg : (i + 1) * k_neg]])
            out.append(b[rng.permutation(len(b))])
        return out

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = self.batches_per_rank()
        batches = self._batches(rng, n * self.world)
        for step in range(n):
            group = batches[step * self.world : (step + 1) * self.world]  # one batch per rank
            for j in range(self.batch_size):
                for b in group:
                    yield int(b[j])

    def __len__(self) -> int:
        return self.batches_per_rank() * self.batch_size * self.world

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "pos_ratio": self.pos_ratio,
            "world": self.world,
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["batch_size"]) != self.batch_size or abs(float(state["pos_ratio"]) - self.pos_ratio) > 1e-12:
            log.warning(
                "BalancedSampler: resuming with batch %s/pos_ratio %s (saved %s/%s)",
                self.batch_size,
                self.pos_ratio,
                state["batch_size"],
                state["pos_ratio"],
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])


def _cycle(rng: np.random.Generator, rows: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows: whole shuffled passes over ``rows``, the last one cut short."""
    reps = math.ceil(n / len(rows))
    return np.concatenate([rows[rng.permutation(len(rows))] for _ in range(reps)])[:n]
