"""Adversarial training on the word embeddings (FGM, Miyato et al. 2017), a staple of Chinese competition practice.

    dontstop finetune ... --adversarial fgm --adv_epsilon 1.0

After the ordinary backward pass, the embedding matrix is moved by r = epsilon * g / ||g|| (g: its gradient, the
direction that raises the loss most), the batch is run again and its gradient added to the first, and the matrix is
restored exactly before the optimizer step. The model thus learns to be right in a small neighbourhood of each input.
Adversarial methods are plug-ins: one class with `attack()` and `restore()`, registered in `methods/__init__.py`.
"""

from __future__ import annotations

import torch


class FGM:
    """Fast Gradient Method on one embedding matrix."""

    def __init__(self, embeddings: torch.nn.Embedding, epsilon: float = 1.0):
        self.weight = embeddings.weight
        self.epsilon = epsilon
        self.backup: torch.Tensor | None = None

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
