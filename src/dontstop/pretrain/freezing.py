"""What trains at each step of a pretraining run, from one table of phases, as a Trainer callback.

Two warm-ups can freeze most of the model at the start:
- the head warm-up: a checkpoint without MLM-head weights (a sentence encoder) gets a fresh head whose random
  gradients would scramble the encoder, so the newly initialised weights train alone for the first steps;
- the new rows: the tokens `dontstop vocab extend` added start as the mean of their old pieces, only roughly right;
  trained alone first, they fit the unchanged model before their large early gradients reach the rest of it.

| head warm-up | new rows alone | what trains |
|---|---|---|
| on | off | the newly initialised weights |
| off | on | the new token rows (inside tensors whose old rows stay bit-identical) |
| on | on | both: the fresh head tensors whole, and the new rows |
| off | off | everything that was trainable (with an adapter: the adapter) |

The new rows live inside tensors whose other rows must not move, so those tensors stay trainable with the old rows'
gradients zeroed by a hook (gradient clipping and Adam's moments then see only the new rows), and because decoupled
weight decay shrinks rows whose gradient is zero, the old rows are also copied back after every optimizer step. With
an adapter, peft's trainable-token deltas hold the new rows alone and train whole. The phase is a function of the
global step, so a resumed run freezes exactly as the uninterrupted one did.
"""

from __future__ import annotations

import logging

import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class Freezing(TrainerCallback):
    def __init__(
        self,
        model,
        new_params: set[str],
        head_steps: int = 0,
        rows: dict | None = None,
        row_ids: list[int] | None = None,
        rows_steps: int = 0,
        whole_rows: set[str] | None = None,
        evaluate_after_head: bool = False,
    ):
        self.model = model
        self.new_params = new_params
        self.head_steps = head_steps
        self.rows = rows or {}  # {name: tensor with one row per token}
        self.row_ids = row_ids or []
        self.rows_steps = rows_steps
        self.whole_rows = whole_rows or set()  # tensors in `rows` that hold the new rows alone
        self.evaluate_after_head = evaluate_after_head
        self.trainable = {name for name, param in model.named_parameters() if param.requires_grad}
        self.phase: tuple[bool, bool] | None = None  # (head warm-up on, new rows alone) as last applied
        self.protected: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (old-row mask, their values)
        self.hooks: list = []
        self.metrics_after_head: dict | None = None

    def phase_at(self, step: int) -> tuple[bool, bool]:
        return step < self.head_steps, step < self.rows_steps

    def trains(self, phase: tuple[bool, bool]) -> set[str]:
        head, rows = phase
        if rows:
            return set(self.rows) | (self.new_params if head else set())
        if head:
            return self.new_params & self.trainable
        return self.trainable

    def _apply(self, step: int) -> None:
        phase = self.phase_at(step)
        if phase == self.phase:
            return
        trains = self.trains(phase)
        for name, param in self.model.named_parameters():
            param.requires_grad = name in trains
        self._protect_old_rows(phase)
        self._log(phase, step)
        self.phase = phase

    def _protect_old_rows(self, phase: tuple[bool, bool]) -> None:
        for hook in self.hooks:
            hook.remove()
        self.hooks, self.protected = [], {}
        head, rows = phase
        if not rows:
            return
        for name, param in self.rows.items():
            if (head and name in self.new_params) or name in self.whole_rows:
                continue  # a fresh head tensor trains whole during the head warm-up; a delta is all new rows
            old = torch.ones(param.shape[0], dtype=torch.bool, device=param.device)
            old[self.row_ids] = False
            self.protected[name] = (old, param.detach()[old].clone())
            view = old.view(-1, *[1] * (param.dim() - 1))
            self.hooks.append(param.register_hook(lambda grad, view=view: grad.masked_fill(view, 0)))

    def _log(self, phase: tuple[bool, bool], step: int) -> None:
        head, rows = phase
        was_head, was_rows = self.phase or (False, False)
        if rows and not was_rows:
            logger.info("Training the %d new token rows alone for %d steps", len(self.row_ids), self.rows_steps)
        if self.phase is not None and not head and not rows and (was_head or was_rows):
            whole = len(self.trainable) == len(dict(self.model.named_parameters()))
            logger.info("Warm-up done at step %d: training %s", step, "the whole model" if whole else "the adapter")

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(state.global_step)

    def on_step_begin(self, args, state, control, **kwargs):
        self._apply(state.global_step)

    @torch.no_grad()
    def on_optimizer_step(self, args, state, control, **kwargs):
        for name, (old, values) in self.protected.items():
            self.rows[name][old] = values

    def on_step_end(self, args, state, control, **kwargs):
        if self.head_steps and state.global_step == self.head_steps and self.evaluate_after_head:
            control.should_evaluate = True  # the head-only model: what the frozen encoder already knows

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.head_steps and state.global_step == self.head_steps and metrics:
            self.metrics_after_head = dict(metrics)

    def on_train_end(self, args, state, control, **kwargs):
        self._apply(max(self.head_steps, self.rows_steps))  # leave trainable what trained before


def derived_head_warmup_steps(requested: int | None, total_steps: int) -> int:
    """--head_warmup_steps, or 10% of the training steps (at most 500); raised to a minimum (schedule.py)."""
    from .schedule import head_warmup_length

    steps = requested if requested is not None else max(1, min(500, round(0.1 * total_steps)))
    return head_warmup_length(max(0, steps), total_steps)
