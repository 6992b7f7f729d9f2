"""The order of examples per epoch, and the epoch each example is drawn in: what makes masks a pure function of
(seed, epoch, example index) whatever the number of dataloader workers, resume included."""

from __future__ import annotations

import numpy as np
import torch


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch that yields `epoch * n + i`, so the dataset learns the epoch with the index.

    With `lengths`, examples of similar length are batched together (shuffle, sort within windows of 50 batches,
    shuffle the batches): short texts in line-by-line mode waste little compute on padding.
    """

    def __init__(self, num_examples: int, seed: int, lengths: np.ndarray | None = None, batch_size: int = 1):
        self.n = num_examples
        self.seed = seed
        self.lengths = lengths
        self.batch_size = batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.n)
        if self.lengths is None:
            return order
        window = self.batch_size * 50
        order = np.concatenate(
            [
                chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                for chunk in np.split(order, range(window, self.n, window))
            ]
        )
        batches = np.split(order, range(self.batch_size, self.n, self.batch_size))
        return np.concatenate([batches[i] for i in rng.permutation(len(batches))])

    def __iter__(self):
        base = self.epoch * self.n
        return iter((base + self.order(self.epoch)).tolist())


class EpochIndexed(torch.utils.data.Dataset):
    """Wraps a dataset so that item `epoch * n + i` is example i tagged with its index and epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int) -> dict:
        epoch, i = divmod(int(k), len(self.dataset))
        return {**self.dataset[i], "idx": i, "epoch": epoch}

    def lengths(self) -> np.ndarray:
        return self.dataset.lengths()
