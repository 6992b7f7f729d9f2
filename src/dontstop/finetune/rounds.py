"""One round of training a seed: the trainer with the training methods switched on, its best epoch scored on dev and
test. A seed is one round, or several when a method (self-training) asks for another with more examples."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np

from ..averaging import WeightAverage
from ..scoring import score
from ..tasks import Encoded, Task, TaskSplit, decode, encode
from .args import selection_metric
from .losses import build_loss, class_counts, class_weights
from .methods import Examples, Method, MethodContext, build_methods
from .sampler import SAMPLERS, ClassAwareSampler
from .trainer import BestEpoch, FinetuneTrainer

# Dev metrics in the log: the evaluated weights' and, with weight averaging, the raw weights' beside them.
EVAL_PREFIXES = ("eval_", "raw_eval_")


@dataclass
class Round:
    """A trained round: its trainer (holding the best epoch's weights), and its predictions and scores."""

    index: int
    trainer: FinetuneTrainer | None  # let go (with its model) once the round is neither the best nor the last
    state: object  # the trainer's TrainerState: epochs, steps, log
    best: BestEpoch
    averager: WeightAverage | None
    methods: list[Method]
    train_examples: int
    seconds: float
    predictions: dict[str, tuple[list, np.ndarray]]  # split -> (predicted labels, logits)
    scores: dict[str, dict]  # split -> metrics
    added: dict | None = None  # what the examples added for this round were (self-training's pseudo-labels)

    def history(self) -> list[dict]:
        return [
            {k: v for k, v in entry.items() if k in ("epoch", "step", "loss") or k.startswith(EVAL_PREFIXES)}
            for entry in self.state.log_history
            if "loss" in entry or f"eval_{self.best.metric}" in entry
        ]

    def summary(self) -> dict:
        """Its line in the seed's record."""
        entry = {"round": self.index, "train_examples": self.train_examples, "best_epoch": self.best.best_epoch}
        entry.update(epochs_run=self.state.epoch, steps=self.state.global_step, train_seconds=round(self.seconds, 1))
        return {**entry, **(self.added or {}), **self.scores}

    def next_examples(self) -> Examples | None:
        """The examples a method adds for another round, if one asks for it."""
        return next((e for e in (m.next_round(self.trainer) for m in self.methods) if e is not None), None)


def predict(trainer, task: Task, split: TaskSplit, encoded: Encoded):
    logits = trainer.predict(encoded.dataset).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    lengths = [len(words) for words in split.texts] if task.task_type == "token" else None
    return decode(task, logits, encoded.word_ids, lengths), logits


def seed_trainer(setup, seed: int, model, train, seed_dir: str, methods: list[Method]):
    """(trainer, best-epoch callback) of one round of one seed."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    task, tokenizer, args, dev = setup.task, setup.tokenizer, setup.args, setup.encoded["dev"]
    collator = (DataCollatorForTokenClassification if task.task_type == "token" else DataCollatorWithPadding)(
        tokenizer
    )
    knowledge = "knowledge_slot" in setup.encoded["train"].dataset.column_names
    if knowledge:  # --glossary/--triples: the 4-D mask of who sees the appended knowledge
        from ..knowledge.visibility import KnowledgeCollator

        collator = KnowledgeCollator(collator, setup.task_args.knowledge_attention == "both_ways")
    metric = selection_metric(task, args)
    greater = args.greater_is_better if args.metric_for_best_model else None
    averager = args.averager()
    best = BestEpoch(metric, args.early_stopping_patience, greater, averager)
    dev_lengths = [len(w) for w in task.dev.texts] if task.task_type == "token" else None

    def dev_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return score(task.task_type, task.dev.labels, decode(task, logits, dev.word_ids, dev_lengths))

    seed_args = copy.copy(args)
    seed_args.seed, seed_args.data_seed, seed_args.output_dir = seed, seed, seed_dir
    seed_args.remove_unused_columns = not knowledge  # the knowledge columns are the collator's, not the model's
    weights = class_weights(
        class_counts(train["labels"], task.task_type, len(task.labels)), args.class_weights, args.class_weights_beta
    )
    sampler = ClassAwareSampler(train["labels"], SAMPLERS[args.sampler], seed) if args.sampler in SAMPLERS else None
    trainer = FinetuneTrainer(
        model=model,
        args=seed_args,
        train_dataset=train,
        eval_dataset=dev.dataset,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=dev_metrics,
        callbacks=[best] + ([averager] if averager else []),
        methods=methods,
        averager=averager,
        loss=build_loss(args, task.task_type, weights),
        sampler=sampler,
    )
    return trainer, best


def train_round(setup, seed: int, model, train, pool, index: int, seed_dir: str) -> Round:
    """Train `model` on `train` with the methods switched on; keep its best epoch's weights and score them."""
    task = setup.task
    context = MethodContext(
        model, setup.tokenizer, setup.args, task, seed, setup.max_length, pool, index, seed_dir, setup.source
    )
    methods = build_methods(context)
    trainer, best = seed_trainer(setup, seed, model, train, seed_dir, methods)
    averager = trainer.averager
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    # The best evaluation's weights (the averaged ones with --ema or --swa_start) are the model from here on.
    best.restore(model)
    trainer.averager, trainer.compute_metrics = None, None
    predictions, scores = {}, {}
    for name, split in (("dev", task.dev), ("test", task.test)):
        if split is not None:
            predictions[name] = predict(trainer, task, split, setup.encoded[name])
            scores[name] = score(task.task_type, split.labels, predictions[name][0])
    return Round(index, trainer, trainer.state, best, averager, methods, len(train), seconds, predictions, scores)


def with_examples(setup, train, examples: Examples):
    """The labelled training set plus the examples a method added."""
    import datasets

    split = TaskSplit("added", examples.texts, examples.labels, list(range(1, len(examples.texts) + 1)))
    added = encode(setup.task, split, setup.tokenizer, setup.max_length).dataset
    return datasets.concatenate_datasets([train, added.cast(train.features)]) if len(added) else train
