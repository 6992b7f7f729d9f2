"""Which task each training batch comes from (`--task_sampling`), and the data plumbing that keeps a batch to one
task: a dataset over all the tasks' examples whose items carry their task, and a collator that pads each batch with
its own task's collator.

An epoch has as many batches as the tasks' examples fill (sum over tasks of ceil(n_t / batch size)):
- proportional (default): each task's examples once, in shuffled batches of its own, so a task's share of the
  batches is its share of the examples (up to its last, partial batch);
- sqrt, uniform: task t gets a quota of the epoch's batches in proportion to n_t^0.5 or n_t^0 (the temperature-style
  sampling of multilingual and multi-task training, which lifts small tasks), rounded by largest remainders
  (`sampler.quotas`); its batches are full, taken from an endless sequence of shuffled passes over its examples
  continued from epoch to epoch (a small task repeats its examples, within a batch too if it has fewer than one).

The tasks' batches are then shuffled together. Quotas rather than a draw per step: the shares over an epoch are
exact to within one batch, and everything is a pure function of (seed, epoch).
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import torch

from ..sampler import quotas

# --task_sampling NAME -> the power of a task's size that its share of the batches follows.
TASK_SAMPLING = {"proportional": 1.0, "sqrt": 0.5, "uniform": 0.0}


def shuffled_stream(size: int, start: int, count: int, seed: int, task: int) -> np.ndarray:
    """`count` indices from position `start` of task `task`'s endless sequence of shuffled passes over `size`."""
    taken = []
    while count > 0:
        cycle, at = divmod(start, size)
        part = np.random.default_rng([seed, task, cycle, 1]).permutation(size)[at : at + count]
        taken.append(part)
        start, count = start + len(part), count - len(part)
    return np.concatenate(taken) if taken else np.zeros(0, dtype=int)


class TaskBatchSampler(torch.utils.data.Sampler):
    """Batches of indices into a `MultiTaskDataset`, each batch from one task."""

    def __init__(self, sizes: list[int], batch_size: int, sampling: str, seed: int):
        self.sizes, self.batch_size, self.sampling, self.seed, self.epoch = list(sizes), batch_size, sampling, seed, 0
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(int)
        self.natural = [math.ceil(n / batch_size) for n in self.sizes]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return sum(self.natural)

    def quota(self, epoch: int) -> np.ndarray:
        """Batches per task in `epoch`."""
        if self.sampling == "proportional":
            return np.array(self.natural)
        rng = np.random.default_rng([self.seed, epoch, 0])
        return quotas(np.array(self.sizes), len(self), TASK_SAMPLING[self.sampling], rng)

    def task_batches(self, task: int, epoch: int, count: int) -> list[np.ndarray]:
        size, b = self.sizes[task], self.batch_size
        if self.sampling == "proportional":
            order = np.random.default_rng([self.seed, task, epoch, 2]).permutation(size)
        else:
            done = sum(int(self.quota(e)[task]) for e in range(epoch))
            order = shuffled_stream(size, done * b, count * b, self.seed, task)
        return [order[i : i + b] + self.offsets[task] for i in range(0, len(order), b)]

    def __iter__(self):
        quota = self.quota(self.epoch)
        batches = [batch for t, count in enumerate(quota) for batch in self.task_batches(t, self.epoch, int(count))]
        order = np.random.default_rng([self.seed, self.epoch, 3]).permutation(len(batches))
        return iter([batches[i].tolist() for i in order])


class MultiTaskDataset(torch.utils.data.Dataset):
    """The tasks' encoded datasets end to end; an item is its task's row plus {"task": task index}."""

    def __init__(self, datasets: list):
        self.datasets = datasets
        self.starts = np.cumsum([0] + [len(d) for d in datasets]).tolist()

    def __len__(self) -> int:
        return self.starts[-1]

    def __getitem__(self, index: int) -> dict:
        task = bisect.bisect_right(self.starts, index) - 1
        return {**self.datasets[task][index - self.starts[task]], "task": task}


class TaskView(torch.utils.data.Dataset):
    """One task's dataset with its task index on every item: what evaluation and prediction read."""

    def __init__(self, dataset, task: int):
        self.dataset, self.task = dataset, task

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "task": self.task}


class MultiTaskCollator:
    """Pads a batch (all of one task) with that task's collator and adds the task index."""

    def __init__(self, collators: list):
        self.collators = collators

    def __call__(self, features: list[dict]) -> dict:
        task = features[0]["task"]
        if any(f["task"] != task for f in features):
            raise ValueError("a multi-task batch mixes tasks: it must come from TaskBatchSampler")
        batch = self.collators[task]([{k: v for k, v in f.items() if k != "task"} for f in features])
        batch["task"] = torch.tensor(task)
        return batch
