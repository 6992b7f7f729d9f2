"""Weight averaging as a Trainer callback: an exponential moving average (EMA) of the weights, used for evaluation.

    dontstop finetune ... --ema 0.999

After every optimizer step the average moves towards the live weights: avg = d * avg + (1 - d) * w, built on
`torch.optim.swa_utils.AveragedModel`. The decay warms up, d = min(decay, (1 + n) / (10 + n)) after n updates, so a
short run is not dominated by its first weights (0.999 ** 130 is still 0.88). Only parameters are averaged: buffers
such as BERT's integer position ids must stay exact. Evaluation swaps the averaged weights into the model and back,
so training continues on the raw weights and the checkpoint kept as best is the averaged one it was chosen by.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from transformers import TrainerCallback


def warmed_up_decay(decay: float, updates: int) -> float:
    return min(decay, (1.0 + updates) / (10.0 + updates))


class EMACallback(TrainerCallback):
    def __init__(self, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.averaged: torch.optim.swa_utils.AveragedModel | None = None
        self.updates = 0

    def _average(self, averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged) -> None:
        # The update count is kept here, as a Python int, so that no device synchronisation happens per step.
        weight = 1.0 - warmed_up_decay(self.decay, self.updates)
        for a, c in zip(averaged, current, strict=True):
            a.lerp_(c, weight)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        from torch.optim.swa_utils import AveragedModel

        self.averaged = AveragedModel(model, multi_avg_fn=self._average, use_buffers=False)
        self.updates = 0

    def on_step_end(self, args, state, control, model=None, **kwargs):
        # on_step_end runs after the optimizer step (once per accumulated batch), so each update sees new weights.
        self.averaged.update_parameters(model)  # the first call copies the weights
        self.updates += 1

    @contextmanager
    def swapped_in(self, model: torch.nn.Module):
        """Inside the block, `model` holds the averaged parameters; on leaving, its own are back."""
        if self.averaged is None:
            yield
            return
        live = [p.detach().clone() for p in model.parameters()]
        with torch.no_grad():
            for target, average in zip(model.parameters(), self.averaged.module.parameters(), strict=True):
                target.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for target, saved in zip(model.parameters(), live, strict=True):
                    target.copy_(saved)
