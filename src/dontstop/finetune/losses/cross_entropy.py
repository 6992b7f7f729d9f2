"""Cross-entropy, optionally class-weighted: the model's own loss (softmax cross-entropy; per-label binary
cross-entropy for multi_label), written out so that `--class_weights` can weight it.

Weights follow PyTorch's conventions: for softmax tasks an example counts w[label] times and the batch loss is the
weighted mean (`F.cross_entropy(weight=...)`); for multi_label a label's weight multiplies the loss of its positive
examples (`pos_weight`, the remedy for labels that are rarely on), averaged over every (example, label) term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label of the positions a token task does not score (sub-tokens after a word's first, specials)


class CrossEntropy:
    name = "cross_entropy"

    def __init__(self, task_type: str, weights=None, **_):
        self.task_type = task_type
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)

    @property
    def plain(self) -> bool:
        """Whether this is the loss the model computes itself (no weights)."""
        return self.weights is None

    def weight_on(self, logits: torch.Tensor) -> torch.Tensor | None:
        return None if self.weights is None else self.weights.to(device=logits.device, dtype=logits.dtype)

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = self.weight_on(logits)
        if self.task_type == "multi_label":
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), pos_weight=weight)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), weight, ignore_index=IGNORE)
