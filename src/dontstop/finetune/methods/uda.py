"""Unsupervised data augmentation (UDA; Xie et al. 2020): a consistency loss on unlabeled text beside the labelled one.

    dontstop finetune ... --unlabeled_file pool.jsonl --uda_weight 1.0 --unlabeled_ratio 3 \
        --uda_augmentation delete:0.1,swap:0.1 --uda_temperature 0.4 --uda_confidence 0.8 --tsa linear

Every training step also draws ceil(ratio x batch size) unlabeled texts (a pure function of the seed, the round and
the step) and augments each (`augment/ops.py`: word deletion, swap, span cut-off, or dropout only). The target p(x) is
the model's prediction on the original text, without gradient, at temperature `--uda_temperature`; the loss adds
weight x mean over the texts of KL(p(x) || p(augment(x))), counting only texts whose top probability on the original
reaches `--uda_confidence`. The identity augmentation (dropout, on a model without dropout, at temperature 1) gives
exactly zero. With `--tsa`, training-signal annealing takes from the supervised loss the labelled examples whose
correct class is predicted above eta_t = a_t (1 - 1/K) + 1/K (K labels; a_t rising from 0 to 1 over the steps:
t/T linearly, exp(5 (t/T - 1)), or 1 - exp(-5 t/T)), so a few labels are not learnt by heart before the unlabeled
text has had its say.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...augment.ops import Augmenter, generator, parse_augmentation
from .base import Method, kl_rows, register

SCHEDULE_SCALE = 5.0  # the UDA paper's: exp and log schedules reach within e^-5 of their end


@register
class UDA(Method):
    name = "uda"
    option = "uda_weight"
    needs_unlabeled = True
    task_types = ("single_label",)

    def __init__(self, context):
        args = context.args
        self.texts = context.unlabeled.texts
        self.tokenizer, self.max_length = context.tokenizer, context.max_length
        self.key = (context.seed, context.round)
        self.size = min(len(self.texts), max(1, math.ceil(args.unlabeled_ratio * args.per_device_train_batch_size)))
        self.augment = Augmenter(parse_augmentation(args.uda_augmentation, "--uda_augmentation"))
        self.weight, self.temperature, self.confidence = args.uda_weight, args.uda_temperature, args.uda_confidence
        self.schedule, self.classes = args.tsa, len(context.task.labels)

    @classmethod
    def check(cls, args) -> None:
        parse_augmentation(args.uda_augmentation, "--uda_augmentation")

    @classmethod
    def settings(cls, args) -> dict:
        return {
            "weight": args.uda_weight,
            "unlabeled_ratio": args.unlabeled_ratio,
            "augmentation": str(parse_augmentation(args.uda_augmentation, "--uda_augmentation")),
            "temperature": args.uda_temperature,
            "confidence": args.uda_confidence,
            "tsa": args.tsa,
        }

    def loss(self, trainer, model, inputs, outputs, loss):
        step, total = trainer.state.global_step, max(trainer.state.max_steps, 1)
        if self.schedule != "none":
            threshold = tsa_threshold(self.schedule, step / total, self.classes)
            loss = loss + annealed_loss(outputs.logits, inputs["labels"], threshold) - outputs.loss
        clean, noisy = self.batch(step, model.device)
        return loss + self.weight * self.consistency(model, clean, noisy)

    def consistency(self, model, clean: dict, noisy: dict) -> torch.Tensor:
        """Mean over the texts of KL(p(x) || p(augment(x))), masked by the target's confidence."""
        with torch.no_grad():
            logits = model(**clean).logits.float()
        target = F.log_softmax(logits / self.temperature, dim=-1)
        divergence = kl_rows(target, F.log_softmax(model(**noisy).logits.float(), dim=-1))
        if self.confidence is not None:
            divergence = divergence * (F.softmax(logits, dim=-1).max(-1).values >= self.confidence)
        return divergence.mean()

    def batch(self, step: int, device) -> tuple[dict, dict]:
        """The step's unlabeled texts, tokenized as they are and augmented."""
        picks = generator(*self.key, step).choice(len(self.texts), size=self.size, replace=False)
        texts = [self.texts[i] for i in picks]
        noisy = [self.augment(self.texts[i], generator(*self.key, step, int(i)))[0] for i in picks]
        return self.encode(texts, device), self.encode(noisy, device)

    def encode(self, texts: list[str], device) -> dict:
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        return {key: value.to(device) for key, value in encoded.items()}


def tsa_threshold(schedule: str, progress: float, classes: int) -> float:
    """eta_t: the probability of the correct class above which a labelled example leaves the loss."""
    rising = {
        "linear": lambda: progress,
        "exp": lambda: math.exp((progress - 1) * SCHEDULE_SCALE),
        "log": lambda: 1 - math.exp(-progress * SCHEDULE_SCALE),
    }[schedule]()
    return rising * (1 - 1 / classes) + 1 / classes


def annealed_loss(logits: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """Cross-entropy over the labelled examples whose correct class has probability at most `threshold`."""
    correct = F.log_softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)
    keep = correct.exp() <= threshold
    return -(correct * keep).sum() / keep.sum().clamp_min(1)
