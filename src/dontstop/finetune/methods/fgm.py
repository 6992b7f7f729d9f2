"""Adversarial training on the word embeddings (FGM, Miyato et al. 2017), a staple of Chinese competition practice.

    dontstop finetune ... --adversarial fgm --adv_epsilon 1.0

After the ordinary backward pass, the embedding matrix is moved by r = epsilon * g / ||g|| (g: its gradient, the
direction that raises the loss most), the batch is run again and its gradient added to the first, and the matrix is
restored exactly before the optimizer step. The model thus learns to be right in a small neighbourhood of each input.
"""

from __future__ import annotations

import torch

from ...errors import UsageError
from .base import Method, register


def embedding_gradient_check(cls, args) -> None:
    """Adversaries on the embedding matrix follow its gradient, which an adapter freezes."""
    if args.uses_adapter:
        raise UsageError(
            f"--adversarial with --adapter lora: {cls.name.upper()} follows the embeddings' gradient, and an "
            "adapter freezes them"
        )


@register
class FGM(Method):
    """Fast Gradient Method on one embedding matrix."""

    name = "fgm"
    option = "adversarial"
    adversary = True

    def __init__(self, embeddings: torch.nn.Embedding, epsilon: float = 1.0):
        self.weight = embeddings.weight
        self.epsilon = epsilon
        self.backup: torch.Tensor | None = None

    @classmethod
    def build(cls, context) -> FGM:
        return cls(context.model.get_input_embeddings(), context.args.adv_epsilon)

    @classmethod
    def check(cls, args) -> None:
        embedding_gradient_check(cls, args)

    @classmethod
    def settings(cls, args) -> dict:
        return {"epsilon": args.adv_epsilon}

    def training_step(self, step):
        earlier = self.gradient_snapshot()
        loss = step()
        if self.attack(earlier):
            step()  # its gradient adds to the clean one
            self.restore()
        return loss  # the clean loss: the adversarial pass is logged nowhere

    def gradient_snapshot(self) -> torch.Tensor | None:
        """The gradient accumulated so far (earlier micro-batches), to be left out of this batch's direction."""
        return None if self.weight.grad is None else self.weight.grad.detach().clone()

    def attack(self, earlier: torch.Tensor | None = None) -> bool:
        """Perturb the embeddings along this batch's gradient (the current one minus `earlier`); False, and nothing
        changed, when there is none."""
        grad = self.weight.grad
        if grad is None:
            return False
        if earlier is not None:
            grad = grad - earlier
        norm = torch.linalg.vector_norm(grad)
        if not torch.isfinite(norm) or norm == 0:
            return False
        self.backup = self.weight.detach().clone()
        with torch.no_grad():
            self.weight.add_(grad, alpha=(self.epsilon / norm).item())
        return True

    def restore(self) -> None:
        """Put back the embeddings saved by `attack` (a copy, not a subtraction: bit-exact)."""
        if self.backup is not None:
            with torch.no_grad():
                self.weight.copy_(self.backup)
            self.backup = None
