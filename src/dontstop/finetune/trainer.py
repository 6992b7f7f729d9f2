"""The Trainer of fine-tuning: the standard loop, plus the hooks of the training methods (`methods/`: loss terms, an
adversarial step), the averaged weights evaluated beside the raw ones, a supervised loss of our own (`losses/`) and a
class-aware sampler (`sampler.py`) where asked for; and the callback that keeps the best epoch's weights."""

from __future__ import annotations

import contextlib
import functools
import math

import torch
from transformers import Trainer, TrainerCallback

from ..averaging import WeightAverage
from ..checkpoints import AtomicCheckpoints
from ..knowledge.ngram_adapter import SavesNgramAdapter
from ..logs import quiet_trainer
from ..trackers import place_tracker_logs


class BestEpoch(TrainerCallback):
    """Keep the weights of the best dev evaluation in memory and stop after `patience` evaluations without gain.

    With weight averaging the averaged weights are scored (`FinetuneTrainer.evaluation_loop`), so they choose the best
    epoch and they are the weights kept."""

    def __init__(
        self,
        metric: str,
        patience: int,
        greater_is_better: bool | None = None,
        averager: WeightAverage | None = None,
    ):
        self.metric = metric
        self.patience = patience
        if greater_is_better is None:
            greater_is_better = metric != "loss"  # the dev loss is the one metric where lower is better
        self.sign = 1.0 if greater_is_better else -1.0
        self.best: float | None = None
        self.best_epoch: float | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_metrics: dict | None = None
        self.averager = averager
        self.evaluations_without_gain = 0

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = self.sign * metrics[f"eval_{self.metric}"]
        value = -math.inf if math.isnan(value) else value  # a diverged evaluation never counts as the best
        if self.best is None or value > self.best:
            self.best, self.best_epoch, self.best_metrics = value, state.epoch, dict(metrics)
            with self.averager.swapped_in(model) if self.averager else contextlib.nullcontext():
                self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            self.evaluations_without_gain = 0
        else:
            self.evaluations_without_gain += 1
            if self.patience and self.evaluations_without_gain >= self.patience:
                control.should_training_stop = True

    def restore(self, model) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


class FinetuneTrainer(SavesNgramAdapter, AtomicCheckpoints, Trainer):
    """A Trainer that calls the hooks of the training methods (`methods/base.py`) and, with weight averaging,
    evaluates the averaged weights beside the raw ones. The supervised loss is `loss` (`losses.build_loss`; the
    model's own where that computes the same), and with a `sampler` the training examples are drawn by it (else by the
    Trainer's own)."""

    def __init__(self, *args, methods=(), averager: WeightAverage | None = None, loss=None, sampler=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.methods = list(methods)
        self.averager = averager
        self.loss = loss
        self.sampler = sampler
        quiet_trainer(self)  # a seed's outcome is one line (pipeline.seed_line)
        place_tracker_logs(self)
        # Classification heads accept **kwargs but ignore num_items_in_batch, so the Trainer must scale the loss for
        # gradient accumulation itself (huggingface/transformers#47688).
        self.model_accepts_loss_kwargs = False

    def create_optimizer(self, model=None):
        """The Trainer's optimizer, plus groups for the weights a method trains beside the model's (an auxiliary MLM
        head): weight decay on its matrices, none on its biases and norms, as the Trainer's own groups do."""
        created = self.optimizer is None
        optimizer = super().create_optimizer(model)
        extra = [p for method in self.methods for p in method.trainable_parameters(self.model)] if created else []
        matrices, vectors = [p for p in extra if p.ndim > 1], [p for p in extra if p.ndim <= 1]
        for group, decay in ((matrices, self.args.weight_decay), (vectors, 0.0)):
            if group:
                optimizer.add_param_group({"params": group, "weight_decay": decay})
        return optimizer

    def _get_train_sampler(self, train_dataset=None):
        return self.sampler if self.sampler is not None else super()._get_train_sampler(train_dataset)

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The chosen loss of `logits` against `labels`: what a method adding terms of its own (R-Drop, UDA, ...)
        builds on."""
        if self.loss is None:
            raise RuntimeError("FinetuneTrainer was given no loss (losses.build_loss)")
        return self.loss(logits, labels)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The supervised loss plus, in training, every method's terms."""
        methods = self.methods if model.training else []
        extra = {key: value for method in methods for key, value in method.forward_kwargs.items()}
        if self.loss is None or self.loss.plain:  # the model computes the same loss itself: its path, unchanged
            loss, outputs = super().compute_loss(model, {**inputs, **extra}, True, num_items_in_batch)
        else:
            forward = {**inputs, **extra}
            labels = forward.pop("labels")
            outputs = model(**forward)
            loss = self.supervised_loss(outputs.logits, labels)
        for method in methods:
            loss = method.loss(self, model, inputs, outputs, loss)
        return (loss, outputs) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The batch's forward and backward pass, wrapped by each method that needs more (an adversary)."""
        parent = super().training_step

        def step():
            return parent(model, dict(inputs), num_items_in_batch)

        for method in self.methods:
            step = functools.partial(method.training_step, step)
        return step()

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        """With weight averaging, the scores (eval_*) are the averaged weights' and the raw weights' come beside them
        (raw_eval_*); until the first update of the average the raw weights are all there is."""
        loop = super().evaluation_loop
        if self.averager is None or not self.averager.ready:
            return loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        raw = loop(dataloader, description, prediction_loss_only, ignore_keys, f"raw_{metric_key_prefix}")
        with self.averager.swapped_in(self.model):
            output = loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        output.metrics.update(raw.metrics)
        return output
