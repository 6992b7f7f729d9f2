"""Supervised contrastive learning for fine-tuning (SupCon; Gunel et al. 2021, after Khosla et al. 2020).

    dontstop finetune ... --contrastive_weight 1.0 --contrastive_temperature 0.3

The representation is the final hidden state of the first token ([CLS] or <s>), L2-normalised. For each example i of
the batch with at least one other example of its class (its positives P(i)), the term is
    -1/|P(i)| sum over p in P(i) of log( exp(z_i . z_p / tau) / sum over a != i of exp(z_i . z_a / tau) ),
averaged over those examples (an InfoNCE loss with the batch as negatives), and added to the cross-entropy times the
weight. A batch in which every class occurs once has no positives and adds nothing: with many classes and few
examples per batch the term is rare, which the record does not hide (`--per_device_train_batch_size` decides it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, register


@register
class SupervisedContrastive(Method):
    name = "contrastive"
    option = "contrastive_weight"
    task_types = ("single_label",)
    forward_kwargs = {"output_hidden_states": True}

    def __init__(self, context):
        self.weight = context.args.contrastive_weight
        self.temperature = context.args.contrastive_temperature

    @classmethod
    def settings(cls, args) -> dict:
        return {"weight": args.contrastive_weight, "temperature": args.contrastive_temperature}

    def loss(self, trainer, model, inputs, outputs, loss):
        features = outputs.hidden_states[-1][:, 0]
        return loss + self.weight * supcon(features, inputs["labels"], self.temperature)


def supcon(features: torch.Tensor, labels: torch.Tensor, temperature: float) -> torch.Tensor:
    """The supervised contrastive loss of a batch (0 when no example has a positive)."""
    z = F.normalize(features.float(), dim=-1)
    similarity = z @ z.T / temperature
    n = len(labels)
    itself = torch.eye(n, dtype=torch.bool, device=z.device)
    log_prob = similarity - torch.logsumexp(similarity.masked_fill(itself, float("-inf")), dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~itself
    counts = positives.sum(1)
    anchors = counts > 0
    if not anchors.any():
        return similarity.sum() * 0.0  # no positive pair: no term, but a graph the backward pass accepts
    per_anchor = -(log_prob * positives).sum(1)[anchors] / counts[anchors]
    return per_anchor.mean()
