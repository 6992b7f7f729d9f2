"""FreeLB (Zhu et al. 2020): adversarial steps on each example's input embeddings, their gradients averaged.

    dontstop finetune ... --adversarial freelb --adv_steps 3 --adv_alpha 0.3 --adv_epsilon 1.0

A perturbation delta of the word-embedding layer's output (one per example, zero at first) is added by a forward
hook; the batch runs K times, each pass's gradient accumulating, and between passes delta climbs the loss by alpha
along its gradient normalised per example, then is projected into the ball of radius epsilon (per example). The
parameters' gradient is the mean of the K passes' (the first pass, with delta zero, is the clean one); the loss
logged is their mean. The embedding matrix itself is never written: only its output is perturbed, so the weights
after the step are exactly those before it, and the method works under a LoRA adapter too.
"""

from __future__ import annotations

import torch

from .base import register
from .pgd import SteppedAdversary


@register
class FreeLB(SteppedAdversary):
    name = "freelb"
    delta: torch.Tensor | None = None  # the perturbation of the embedding layer's output, during a step

    def perturb(self, module, inputs, output):
        if self.delta is None or self.delta.shape != output.shape:
            self.delta = torch.zeros_like(output, requires_grad=True)
        return output + self.delta

    def training_step(self, step):
        earlier = [None if p.grad is None else p.grad.detach().clone() for p in self.parameters]
        self.delta = None
        losses = []
        handle = self.embeddings.register_forward_hook(self.perturb)
        try:
            for k in range(self.steps):
                losses.append(step())
                if k < self.steps - 1:
                    self.ascend()
        finally:
            handle.remove()
            self.delta = None
        for p, before in zip(self.parameters, earlier, strict=True):
            if p.grad is None:
                continue
            if before is None:
                p.grad.div_(self.steps)
            else:  # this batch's K gradients averaged; earlier micro-batches' left as they were
                p.grad.sub_(before).div_(self.steps).add_(before)
        return torch.stack([torch.as_tensor(loss) for loss in losses]).mean()

    def ascend(self) -> None:
        grad = self.delta.grad
        if grad is None:
            return
        rows = grad.flatten(1)
        norm = torch.linalg.vector_norm(rows, dim=1).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))
        delta = self.delta.detach() + self.alpha * grad / norm
        size = torch.linalg.vector_norm(delta.flatten(1), dim=1).view_as(norm)
        delta = delta * torch.clamp(self.epsilon / size.clamp_min(1e-12), max=1.0)
        self.delta = delta.requires_grad_(True)
