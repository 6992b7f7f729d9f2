"""R-Drop (Liang et al. 2021): two dropout passes of each batch, and the symmetric KL between their predictions.

    dontstop finetune ... --rdrop_alpha 1.0

Each training batch runs twice; dropout draws a different sub-network each time. The loss is the mean of the two
cross-entropies plus alpha x (KL(p1 || p2) + KL(p2 || p1)) / 2, averaged over the batch: the model is pulled towards
predictions that do not depend on which units dropout removed. Without dropout the two passes are one, and so is the
loss. Each step costs a second forward and backward pass.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import Method, kl_rows, register


@register
class RDrop(Method):
    name = "rdrop"
    option = "rdrop_alpha"
    task_types = ("single_label",)

    def __init__(self, context):
        self.alpha = context.args.rdrop_alpha

    @classmethod
    def settings(cls, args) -> dict:
        return {"alpha": args.rdrop_alpha}

    def loss(self, trainer, model, inputs, outputs, loss):
        second = model(**inputs)
        first_loss, second_loss = outputs.loss, second.loss
        if first_loss is None:  # the trainer's own supervised loss (--loss focal, --class_weights): the model has none
            first_loss, second_loss = (trainer.supervised_loss(o.logits, inputs["labels"]) for o in (outputs, second))
        # The two supervised losses averaged, written as a term added to the loss so far (whatever else it holds).
        return loss + 0.5 * (second_loss - first_loss) + self.alpha * symmetric_kl(outputs.logits, second.logits)


def symmetric_kl(first, second):
    """(KL(p || q) + KL(q || p)) / 2 of the softmax distributions of two batches of logits, averaged over rows."""
    p, q = F.log_softmax(first.float(), dim=-1), F.log_softmax(second.float(), dim=-1)
    return 0.5 * (kl_rows(p, q) + kl_rows(q, p)).mean()
