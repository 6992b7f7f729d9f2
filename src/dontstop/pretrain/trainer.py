"""The Trainer of continued pretraining: the standard loop, with hooks overridden for seeded per-epoch sampling (so
masks are pure), a loss on the masked positions only, attention confined to segments (padding-free batches, documents
of a packed block) or shaped by appended knowledge, and token-weighted held-out evaluation (of the averaged weights
too, with weight averaging); a saved model keeps its n-gram adapter beside it."""

from __future__ import annotations

import math
import time

import torch
from transformers import Trainer

from ..adapters import underlying_model
from ..attention import SegmentAttention
from ..averaging import WeightAverage
from ..checkpoints import AtomicCheckpoints
from ..heads import causal_lm_loss_sum, masked_lm_loss_sum, masked_only_head, use_masked_only_head
from ..knowledge.ngram_adapter import SavesNgramAdapter
from ..logs import quiet_trainer
from ..masking import EpochIndexed, EpochSampler
from ..replay import ReplayMix
from ..trackers import place_tracker_logs


class PretrainTrainer(SavesNgramAdapter, AtomicCheckpoints, Trainer):
    """Trainer for continued pretraining. Overrides hooks only: the train sampler (seeded per epoch, so masks are
    pure), the inputs (segment ids become the attention inputs that confine each segment, on the device), the loss
    (masked positions only) and evaluation (token-weighted loss, perplexity, masked-token accuracy, and the same for
    the averaged weights, if any)."""

    def __init__(
        self,
        *args,
        objective: str = "mlm",
        prefer_masked_only_head: bool = True,
        sampler_lengths=None,
        averager: WeightAverage | None = None,
        head_warmup: tuple[int, float] | None = None,
        segment_attention: SegmentAttention | None = None,
        knowledge_attention=None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.knowledge_attention = knowledge_attention  # knowledge.visibility.KnowledgeAttention
        self.objective = objective
        self.averager = averager
        self.head_warmup = head_warmup  # (steps, learning rate) of a head warm-up phase, with its own schedule
        self.segment_attention = segment_attention
        self.sampler_lengths = sampler_lengths
        # With an adapter the transformers model inside the peft wrapper gets the head: peft's forward calls it.
        inner = underlying_model(self.model)
        head = masked_only_head(inner) if objective == "mlm" and prefer_masked_only_head else None
        self.masked_only = head is not None
        self.restore_forward = use_masked_only_head(inner, head) if head is not None else (lambda: None)
        # Our loss is a sum divided by the number of labelled tokens in the whole accumulated batch, which the
        # Trainer counts only for models that accept loss kwargs; the result is already scaled for accumulation.
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        quiet_trainer(self, describe=held_out_losses)
        place_tracker_logs(self)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        if self.lr_scheduler is None and self.head_warmup and self.head_warmup[0]:
            from .schedule import phased_scheduler

            self.lr_scheduler = phased_scheduler(optimizer or self.optimizer, self.args, num_training_steps,
                                                 *self.head_warmup)  # fmt: skip
            self._created_lr_scheduler = self.lr_scheduler is not None
        return super().create_scheduler(num_training_steps, optimizer)

    def _get_train_sampler(self, train_dataset=None):
        train_dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not isinstance(train_dataset, EpochIndexed):
            return super()._get_train_sampler(train_dataset)
        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
        if isinstance(train_dataset, ReplayMix):  # spreads its general examples evenly itself (see replay.py)
            return train_dataset.sampler(seed, batch, by_length=self.sampler_lengths is not None)
        return EpochSampler(len(train_dataset), seed, lengths=self.sampler_lengths, batch_size=batch)

    def _prepare_inputs(self, inputs):
        inputs = super()._prepare_inputs(inputs)
        if "knowledge_slot" in inputs:  # the 4-D mask of appended knowledge, segments included
            inputs = self.knowledge_attention(inputs)
        elif self.segment_attention is not None:
            inputs = self.segment_attention(inputs)
        return inputs

    def _loss_sum(self, model, inputs):
        if self.objective == "mlm":
            return masked_lm_loss_sum(model, inputs, self.masked_only)
        return causal_lm_loss_sum(model, inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss_sum, count, _ = self._loss_sum(model, inputs)
        denominator = num_items_in_batch if num_items_in_batch is not None else max(count, 1)
        loss = loss_sum / denominator
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients; the count was global
        return (loss, None) if return_outputs else loss

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        eval_sets = eval_dataset if eval_dataset is not None else self.eval_dataset
        if not isinstance(eval_sets, dict):
            eval_sets = {"": eval_sets}
        metrics = {}
        for name, dataset in eval_sets.items():
            prefix = f"{metric_key_prefix}_{name}" if name else metric_key_prefix
            metrics.update(self._evaluate_lm(dataset, prefix))
        if self.averager is not None and self.averager.ready:
            # The averaged weights beside the raw ones, under their own prefix: ema_eval_validation_loss, ...
            with self.averager.swapped_in(self.model):
                for name, dataset in eval_sets.items():
                    prefix = f"{metric_key_prefix}_{name}" if name else metric_key_prefix
                    metrics.update(self._evaluate_lm(dataset, f"{self.averager.name}_{prefix}"))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    @torch.no_grad()
    def _evaluate_lm(self, dataset, prefix: str) -> dict[str, float]:
        model = self._wrap_model(self.model, training=False)
        model.eval()
        totals = torch.zeros(3, dtype=torch.float64, device=self.args.device)
        start = time.perf_counter()
        for inputs in self.get_eval_dataloader(dataset):
            inputs = self._prepare_inputs(inputs)
            # Autocast as in training (--bf16): before the first training step the model's forward is not wrapped yet.
            with self.compute_loss_context_manager(), self.accelerator.autocast():
                loss_sum, count, correct = self._loss_sum(model, inputs)
            totals += torch.tensor([loss_sum.item(), count, correct.item()], dtype=torch.float64, device=totals.device)
        totals = self.accelerator.reduce(totals, reduction="sum")
        loss_sum, count, correct = totals.tolist()
        loss = loss_sum / max(count, 1)
        return {
            f"{prefix}_loss": loss,
            f"{prefix}_perplexity": math.exp(min(loss, 50.0)),
            f"{prefix}_accuracy": correct / max(count, 1),
            f"{prefix}_tokens": int(count),
            f"{prefix}_runtime": round(time.perf_counter() - start, 3),
        }


def held_out_losses(metrics: dict) -> str | None:
    """ "held-out loss: validation 5.012, domain 6.231": an evaluation in one line."""
    losses = [(k[len("eval_") : -len("_loss")], v) for k, v in metrics.items() if k.startswith("eval_") and
              k.endswith("_loss")]  # fmt: skip
    averaged = [(k[: -len("_loss")].replace("_eval_", " "), v) for k, v in metrics.items()
                if "_eval_" in k and k.endswith("_loss")]  # fmt: skip
    named = [f"{name or 'held-out'} {value:.3f}" for name, value in losses + averaged]
    return f"held-out loss: {', '.join(named)}" if named else None
