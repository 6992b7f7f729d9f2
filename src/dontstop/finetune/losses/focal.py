"""Focal loss (Lin et al. 2017): cross-entropy scaled by (1 - p_t)^gamma, so examples the model already gets right
count less and the hard ones (often of the rare classes) more. gamma 0 is cross-entropy exactly.

    dontstop finetune ... --loss focal --focal_gamma 2 [--class_weights effective]

Softmax tasks (single_label, token): -(1 - p_y)^gamma log p_y per example, the class weights (the paper's alpha) as
in `CrossEntropy`: a weighted mean. multi_label: the sigmoid form, per (example, label):
-[w y (1 - p)^gamma log p + (1 - y) p^gamma log(1 - p)], averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cross_entropy import IGNORE, CrossEntropy


class FocalLoss(CrossEntropy):
    name = "focal"

    def __init__(self, task_type: str, weights=None, gamma: float = 2.0, **_):
        super().__init__(task_type, weights)
        self.gamma = gamma

    @property
    def plain(self) -> bool:
        return False

    def __call__(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        weight = self.weight_on(logits)
        if self.task_type == "multi_label":
            labels = labels.to(logits.dtype)
            log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
            positive = (1 - log_p.exp()) ** self.gamma * log_p * (labels if weight is None else labels * weight)
            negative = log_p.exp() ** self.gamma * log_not_p * (1 - labels)
            return -(positive + negative).mean()
        logits, labels = logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)
        scored = labels != IGNORE
        logits, labels = logits[scored], labels[scored]
        log_p = F.log_softmax(logits, dim=-1).gather(1, labels[:, None]).squeeze(1)
        losses = -((1 - log_p.exp()) ** self.gamma) * log_p
        counts = torch.ones_like(losses) if weight is None else weight[labels]
        return (counts * losses).sum() / counts.sum()
