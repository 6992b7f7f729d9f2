"""Projected gradient descent on the word embeddings (PGD, Madry et al. 2018), FGM's multi-step sibling.

    dontstop finetune ... --adversarial pgd --adv_steps 3 --adv_alpha 0.3 --adv_epsilon 1.0

After the clean backward pass, the embedding matrix takes K steps up the loss: each moves it by alpha * g / ||g|| (g:
the gradient of the pass before) and projects the total perturbation back into the ball of radius epsilon around the
original matrix. Only the last step's gradient is kept and added to the clean one (the earlier steps only find the
direction), as the usual implementation of Chinese competition practice does. Then the matrix is restored exactly
(copied back, not subtracted: bit for bit) before the optimizer step.
"""

from __future__ import annotations

import torch

from .base import Method, register
from .fgm import embedding_gradient_check


class SteppedAdversary(Method):
    """An adversary of --adv_steps steps of --adv_alpha within a ball of radius --adv_epsilon (PGD, FreeLB)."""

    option = "adversarial"
    adversary = True

    def __init__(self, model, epsilon: float = 1.0, alpha: float = 0.3, steps: int = 3):
        self.embeddings = model.get_input_embeddings()
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.epsilon, self.alpha, self.steps = epsilon, alpha, steps

    @classmethod
    def build(cls, context) -> SteppedAdversary:
        args = context.args
        return cls(context.model, args.adv_epsilon, args.adv_alpha, args.adv_steps)

    @classmethod
    def settings(cls, args) -> dict:
        return {"epsilon": args.adv_epsilon, "alpha": args.adv_alpha, "steps": args.adv_steps}


@register
class PGD(SteppedAdversary):
    name = "pgd"

    @classmethod
    def check(cls, args) -> None:
        embedding_gradient_check(cls, args)

    def training_step(self, step):
        weight = self.embeddings.weight
        earlier = None if weight.grad is None else weight.grad.detach().clone()
        loss = step()
        if weight.grad is None:
            return loss
        direction = weight.grad if earlier is None else weight.grad - earlier
        clean = [None if p.grad is None else p.grad.detach().clone() for p in self.parameters]
        backup = weight.detach().clone()
        perturbation = torch.zeros_like(backup)
        attacked = False
        for _ in range(self.steps):
            if direction is None:
                break
            norm = torch.linalg.vector_norm(direction)
            if not torch.isfinite(norm) or norm == 0:
                break
            perturbation = self.project(perturbation + direction * (self.alpha / norm))
            with torch.no_grad():
                weight.copy_(backup + perturbation)
            for p in self.parameters:
                p.grad = None  # a step's gradient only points the next one
            step()
            attacked = True
            direction = weight.grad
        with torch.no_grad():
            weight.copy_(backup)
        for p, kept in zip(self.parameters, clean, strict=True):
            if not attacked or p.grad is None:
                p.grad = kept
            elif kept is not None:
                p.grad.add_(kept)  # the last adversarial gradient, on top of the clean one
        return loss

    def project(self, perturbation: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(perturbation)
        return perturbation * (self.epsilon / norm) if norm > self.epsilon else perturbation
