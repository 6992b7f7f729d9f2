"""Self-training with pseudo-labels, Noisy-Student / STraTA style (Xie et al. 2020; Du et al. 2021).

    dontstop finetune ... --unlabeled_from_train --self_training_rounds 2 --pseudo_label_top_k 10 \
        --pseudo_label_threshold 0.5 --self_training_noise delete:0.1

After each round, the round's best model (the teacher) predicts every unlabeled text. A text keeps its predicted label
if its probability reaches `--pseudo_label_threshold`; with `--pseudo_label_top_k K`, of those only the r x K most
confident of each class in round r (class-balanced: a few easy classes do not take over). The student then starts
again from the checkpoint (the seed's own head initialisation) and trains on the labelled examples plus the
pseudo-labelled ones, these noised (`--self_training_noise`: dropout alone, or word deletion etc. from
`augment/ops.py`, drawn per text, round and seed). Each round is scored on dev and test, the pseudo-labels are
written to `seed-S/pseudo_labels-round-R.jsonl`, and where the gold label of an unlabeled text is known (a training
text the few-shot draw left out) so is the pseudo-labels' accuracy. The seed's result is the round best on dev.
The unlabeled texts never include a dev or test text (`finetune/unlabeled.py`).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ...augment.ops import Augmenter, generator, parse_augmentation
from ...errors import UsageError
from .base import Examples, Method, register


@register
class SelfTraining(Method):
    name = "self_training"
    option = "self_training_rounds"
    needs_unlabeled = True
    task_types = ("single_label",)

    def __init__(self, context):
        args = context.args
        self.rounds, self.round, self.seed = args.self_training_rounds, context.round, context.seed
        self.threshold, self.top_k = args.pseudo_label_threshold, args.pseudo_label_top_k
        self.noise = Augmenter(parse_augmentation(args.self_training_noise, "--self_training_noise"))
        self.pool, self.labels = context.unlabeled, context.task.labels
        self.tokenizer, self.max_length, self.seed_dir = context.tokenizer, context.max_length, context.seed_dir

    @classmethod
    def check(cls, args) -> None:
        if args.pseudo_label_threshold is None and args.pseudo_label_top_k is None:
            raise UsageError(
                "--self_training_rounds needs --pseudo_label_threshold, --pseudo_label_top_k, or both: which "
                "pseudo-labels to keep"
            )
        parse_augmentation(args.self_training_noise, "--self_training_noise")

    @classmethod
    def settings(cls, args) -> dict:
        return {
            "rounds": args.self_training_rounds,
            "threshold": args.pseudo_label_threshold,
            "top_k_per_class": args.pseudo_label_top_k,
            "noise": str(parse_augmentation(args.self_training_noise, "--self_training_noise")),
        }

    def next_round(self, trainer) -> Examples | None:
        if self.round >= self.rounds:
            return None
        upcoming = self.round + 1
        probabilities = self.teacher_probabilities(trainer)
        per_class = self.top_k * upcoming if self.top_k else None
        chosen = pseudo_label(probabilities, self.threshold, per_class)
        predicted = probabilities.argmax(1)
        labels = [self.labels[predicted[i]] for i in chosen]
        texts = [self.noise(self.pool.texts[i], generator(self.seed, upcoming, int(i)))[0] for i in chosen]
        gold = [self.pool.gold[i] for i in chosen]
        known = [(g, p) for g, p in zip(gold, labels, strict=True) if g is not None]
        record = {
            "round": upcoming,
            "unlabeled_texts": len(self.pool),
            "pseudo_labels": len(chosen),
            "per_class": {label: labels.count(label) for label in self.labels},
            "gold_known": len(known),
            "pseudo_label_accuracy": sum(g == p for g, p in known) / len(known) if known else None,
        }
        self.write(upcoming, chosen, labels, probabilities, gold)
        return Examples(texts, labels, record)

    def teacher_probabilities(self, trainer) -> np.ndarray:
        import datasets

        encoded = self.tokenizer(self.pool.texts, truncation=True, max_length=self.max_length)
        logits = trainer.predict(datasets.Dataset.from_dict(dict(encoded))).predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        shifted = np.exp(logits - logits.max(-1, keepdims=True))
        return shifted / shifted.sum(-1, keepdims=True)

    def write(self, upcoming: int, chosen, labels, probabilities, gold) -> None:
        """The round's pseudo-labels, one line each: the text, where it came from, label, probability, gold."""
        if self.seed_dir is None:
            return
        os.makedirs(self.seed_dir, exist_ok=True)
        path = os.path.join(self.seed_dir, f"pseudo_labels-round-{upcoming}.jsonl")
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            for i, label, truth in zip(chosen, labels, gold, strict=True):
                row = {"text": self.pool.texts[i], "origin": self.pool.origins[i], "label": label}
                row.update(probability=round(float(probabilities[i].max()), 4), gold=truth)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(f"{path}.tmp", path)


def pseudo_label(probabilities: np.ndarray, threshold: float | None, per_class: int | None) -> np.ndarray:
    """Indices (ascending) of the texts that keep their predicted label: probability >= threshold, and of those the
    `per_class` most confident of each predicted class (ties to the earlier text)."""
    confidence, predicted = probabilities.max(1), probabilities.argmax(1)
    candidates = np.flatnonzero(confidence >= threshold) if threshold is not None else np.arange(len(confidence))
    if per_class is None:
        return candidates
    chosen = []
    for label in np.unique(predicted[candidates]):
        members = candidates[predicted[candidates] == label]
        order = np.lexsort((members, -confidence[members]))  # most confident first, then file order
        chosen.append(members[order[:per_class]])
    return np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=int)
