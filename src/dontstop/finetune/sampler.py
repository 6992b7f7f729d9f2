"""Class-aware sampling for imbalanced single-label tasks (`--sampler balanced|sqrt`), through the Trainer's
`_get_train_sampler` hook.

An epoch keeps its length (as many examples as the training set, so budgets stay comparable with `random`), but each
class gets a quota: `balanced` gives every class the same number of places (within one: the remainder places go to
classes drawn at random), `sqrt` places in proportion to the square root of the class's size (largest remainders).
Within a class, examples are taken from shuffled passes over it, continued from one epoch to the next: a rare class
repeats its examples, a large one shows each of its examples before any repeats. Class-aware sampling in the sense
of Shen et al. (2016); the square-root variant as in Mahajan et al. (2018).

Everything is a function of (seed, epoch): the same seed gives the same batches, whatever ran before.
"""

from __future__ import annotations

import numpy as np
import torch

# --sampler NAME -> the power of the class size that the class's share of an epoch follows (random: the Trainer's).
SAMPLERS = {"balanced": 0.0, "sqrt": 0.5}


def quotas(counts: np.ndarray, total: int, power: float, rng: np.random.Generator) -> np.ndarray:
    """Places per class in an epoch of `total`: shares ∝ count^power over the classes present, rounded down, the
    leftover places to the largest remainders (ties broken at random)."""
    counts = np.asarray(counts, dtype=float)
    present = counts > 0
    share = np.where(present, np.power(counts, power, where=present, out=np.zeros_like(counts)), 0.0)
    exact = total * share / share.sum()
    quota = np.floor(exact).astype(int)
    order = np.lexsort((rng.random(len(counts)), -(exact - quota)))
    quota[order[: total - quota.sum()]] += 1
    return quota


class ClassAwareSampler(torch.utils.data.Sampler):
    def __init__(self, labels, power: float, seed: int):
        labels = np.asarray(labels, dtype=int)
        self.size, self.power, self.seed, self.epoch = len(labels), power, seed, 0
        self.members = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
        self.counts = np.array([len(m) for m in self.members])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def quota(self, epoch: int) -> np.ndarray:
        return quotas(self.counts, self.size, self.power, np.random.default_rng([self.seed, epoch, 0]))

    def take(self, c: int, start: int, count: int) -> np.ndarray:
        """`count` examples of class `c` from position `start` of its endless sequence of shuffled passes."""
        members, taken = self.members[c], []
        while count > 0:
            cycle, at = divmod(start, len(members))
            shuffled = np.random.default_rng([self.seed, c, cycle, 1]).permutation(members)
            part = shuffled[at : at + count]
            taken.append(part)
            start, count = start + len(part), count - len(part)
        return np.concatenate(taken) if taken else np.zeros(0, dtype=int)

    def __iter__(self):
        done = sum((self.quota(e) for e in range(self.epoch)), np.zeros(len(self.members), dtype=int))
        quota = self.quota(self.epoch)
        chosen = np.concatenate([self.take(c, done[c], quota[c]) for c in range(len(self.members))])
        order = np.random.default_rng([self.seed, self.epoch, 2]).permutation(chosen)
        return iter(order.tolist())
