"""Class weights for imbalanced tasks (`--class_weights`), from the label counts of the examples a seed trains on.

- inverse: w_c ∝ 1 / n_c, every class weighing as much in total;
- sqrt_inverse: w_c ∝ 1 / sqrt(n_c), a milder reweighting (as in word2vec's subsampling and many long-tail papers);
- effective: w_c ∝ (1 - beta) / (1 - beta^n_c), the inverse of the "effective number of samples" (Cui et al. 2019):
  beta 0 weighs every class alike, beta -> 1 approaches inverse frequency; 0.999 is the paper's usual choice.

Weights are scaled to average 1 over the classes present, so the loss keeps its scale and the learning rate its
meaning. A class absent from the training examples gets weight 0 (it never occurs as a target anyway).
For multi_label the counts are each label's positive examples; for token tasks, the scored tags.
"""

from __future__ import annotations

import numpy as np

WEIGHTINGS = ("none", "inverse", "sqrt_inverse", "effective")


def class_counts(labels, task_type: str, classes: int) -> np.ndarray:
    """How often each class occurs among `labels` (the `labels` column of an encoded training set)."""
    if task_type == "multi_label":
        return np.asarray(labels, dtype=float).reshape(-1, classes).sum(0).astype(int)
    flat = np.asarray([x for row in labels for x in row] if task_type == "token" else labels, dtype=int)
    return np.bincount(flat[flat >= 0], minlength=classes)


def class_weights(counts, scheme: str, beta: float = 0.999) -> np.ndarray | None:
    """One weight per class (mean 1 over the classes with examples), or None for `none`."""
    if scheme == "none":
        return None
    counts = np.asarray(counts, dtype=float)
    present = counts > 0
    raw = np.zeros_like(counts)
    n = counts[present]
    if scheme == "inverse":
        raw[present] = 1 / n
    elif scheme == "sqrt_inverse":
        raw[present] = 1 / np.sqrt(n)
    elif scheme == "effective":
        raw[present] = (1 - beta) / (1 - beta**n)
    else:
        raise ValueError(f"unknown class weighting {scheme!r} (known: {', '.join(WEIGHTINGS)})")
    return raw * present.sum() / raw.sum()
