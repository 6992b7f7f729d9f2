"""The supervised loss of `dontstop finetune` (`--loss`), one file each, registered here by name; class weights
(`--class_weights`) in `weights.py`.

A loss maps a batch's logits and labels to its mean loss, for every task type: single_label (logits (batch,
classes), label ids), multi_label (logits and 0/1 label vectors of the same shape) and token (logits (batch, length,
tags), tag ids, -100 where nothing is scored). `FinetuneTrainer.supervised_loss` asks the chosen one, and so must a
training method that adds terms of its own (R-Drop, UDA, ...): then any loss composes with any method. A loss that
is `plain` (cross-entropy without class weights) is what the model computes itself, so the trainer keeps the model's
own: the standard path, unchanged.
"""

from __future__ import annotations

from .cross_entropy import CrossEntropy
from .focal import FocalLoss
from .weights import WEIGHTINGS, class_counts, class_weights  # noqa: F401  (the API)

LOSSES = {"cross_entropy": CrossEntropy, "focal": FocalLoss}


def build_loss(args, task_type: str, weights) -> CrossEntropy:
    """The loss `args` ask for (`--loss`, `--focal_gamma`), with `weights` (one per class, or None)."""
    return LOSSES[args.loss](task_type, weights, gamma=args.focal_gamma)
