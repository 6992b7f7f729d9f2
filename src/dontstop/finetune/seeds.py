"""One seed of a fine-tuning run: its few-shot draw, its training, its best epoch scored on dev and test, its
predictions; and whether an earlier run already finished it."""

from __future__ import annotations

import copy
import gc
import json
import logging
import os
import time

import numpy as np

from ..adapters import save_merged
from ..averaging import WeightAverage
from ..fingerprint import hash_json
from ..models import MERGED_DIR
from ..records import SeedResult
from ..scoring import METRICS, aggregate, per_class, score
from ..tasks import Encoded, Task, TaskSplit, decode, per_class_sample, stratified_sample
from .args import TaskArguments, selection_metric
from .losses import build_loss, class_counts, class_weights
from .methods import ADVERSARIES
from .sampler import SAMPLERS, ClassAwareSampler
from .trainer import BestEpoch, FinetuneTrainer

logger = logging.getLogger(__name__)

# Dev metrics in the log: the evaluated weights' and, with weight averaging, the raw weights' beside them.
EVAL_PREFIXES = ("eval_", "raw_eval_")


def predict(trainer, task: Task, split: TaskSplit, encoded: Encoded):
    logits = trainer.predict(encoded.dataset).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    lengths = [len(words) for words in split.texts] if task.task_type == "token" else None
    return decode(task, logits, encoded.word_ids, lengths), logits


def training_examples(task: Task, encoded, task_args: TaskArguments, seed: int):
    """(the training set of one seed, the fingerprint of its draw): all of it, or (--train_limit) a stratified draw
    seeded by the seed (or by --sample_seed). The same seed draws the same examples in every run on the task."""
    train = encoded["train"].dataset
    indices = range(len(train))
    draw_seed = seed if task_args.sample_seed is None else task_args.sample_seed
    if task_args.train_limit:
        indices = stratified_sample(task.train.labels, task_args.train_limit, draw_seed)
    elif task_args.train_limit_per_class:
        indices = per_class_sample(task.train.labels, task_args.train_limit_per_class, draw_seed)
    if len(indices) < len(train):
        train = train.select(indices)
    return train, hash_json([task.train.sha256, [int(i) for i in indices]])[:16]


def seed_trainer(seed: int, task: Task, model, tokenizer, encoded, train, task_args, args, seed_dir: str):
    """(trainer, best-epoch callback) of one seed."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    collator = (DataCollatorForTokenClassification if task.task_type == "token" else DataCollatorWithPadding)(
        tokenizer
    )
    knowledge = "knowledge_slot" in encoded["train"].dataset.column_names
    if knowledge:  # --glossary/--triples: the 4-D mask of who sees the appended knowledge
        from ..knowledge.visibility import KnowledgeCollator

        collator = KnowledgeCollator(collator, task_args.knowledge_attention == "both_ways")
    metric = selection_metric(task, args)
    greater = args.greater_is_better if args.metric_for_best_model else None
    averager = args.averager()
    best = BestEpoch(metric, args.early_stopping_patience, greater, averager)
    dev = encoded["dev"]
    dev_lengths = [len(w) for w in task.dev.texts] if task.task_type == "token" else None

    def dev_metrics(prediction):
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        return score(task.task_type, task.dev.labels, decode(task, logits, dev.word_ids, dev_lengths))

    seed_args = copy.copy(args)
    seed_args.seed, seed_args.data_seed, seed_args.output_dir = seed, seed, seed_dir
    seed_args.remove_unused_columns = not knowledge  # the knowledge columns are the collator's, not the model's
    adversary = None
    if args.adversarial != "none":
        adversary = ADVERSARIES[args.adversarial](model.get_input_embeddings(), args.adv_epsilon)
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
        adversary=adversary,
        averager=averager,
        loss=build_loss(args, task.task_type, weights),
        sampler=sampler,
    )
    return trainer, best


def run_seed(seed, task, model, tokenizer, encoded, task_args, args, output_dir, key: str) -> SeedResult:
    """Train one seed's `model` (from `load_seeded_model`); return its record (dev and test metrics of the best
    epoch, timing, history), also written to seed-S/result.json."""
    seed_dir = os.path.join(output_dir, f"seed-{seed}")
    train, draw = training_examples(task, encoded, task_args, seed)
    trainer, best = seed_trainer(seed, task, model, tokenizer, encoded, train, task_args, args, seed_dir)
    averager = trainer.averager
    started = time.time()
    trainer.train()
    train_seconds = time.time() - started
    # The best evaluation's weights (the averaged ones with --ema or --swa_start) are the model from here on.
    best.restore(model)
    trainer.averager, trainer.compute_metrics = None, None
    record = SeedResult(
        seed=seed,
        dev={},
        fingerprint=key,
        best_epoch=best.best_epoch,
        epochs_run=trainer.state.epoch,
        steps=trainer.state.global_step,
        train_examples=len(train),
        draw=draw,
        train_seconds=round(train_seconds, 1),
        history=[
            {k: v for k, v in entry.items() if k in ("epoch", "step", "loss") or k.startswith(EVAL_PREFIXES)}
            for entry in trainer.state.log_history
            if "loss" in entry or f"eval_{best.metric}" in entry
        ],
    )
    if averager is not None:
        record.averaging = averaged_against_raw(best, averager, [*METRICS[task.task_type], "loss"])
    weights = trainer.loss.weights
    if weights is not None:
        record.class_weights = {label: round(float(w), 6) for label, w in zip(task.labels, weights, strict=True)}
    os.makedirs(seed_dir, exist_ok=True)
    record.per_class = {}
    for name, split in (("dev", task.dev), ("test", task.test)):
        if split is None:
            continue
        predicted, logits = predict(trainer, task, split, encoded[name])
        setattr(record, name, score(task.task_type, split.labels, predicted))
        record.per_class[name] = per_class(task.task_type, split.labels, predicted, task.labels)
        write_predictions(os.path.join(seed_dir, f"predictions_{name}.jsonl"), task, split, predicted, logits)
        if task_args.save_probabilities and task.task_type != "token":
            np.save(os.path.join(seed_dir, f"probabilities_{name}.npy"), probabilities(task, logits))
    if task_args.keep_models != "none":
        trainer.save_model(os.path.join(seed_dir, "model"))  # with --adapter lora: the task adapter
        if args.uses_adapter and args.merge_adapter:
            save_merged(model, tokenizer, os.path.join(seed_dir, "model", MERGED_DIR))
    record.save(seed_dir)
    del trainer, model, best
    gc.collect()
    return record


def averaged_against_raw(best: BestEpoch, averager: WeightAverage, names: list[str]) -> dict:
    """The dev metrics of the raw and the averaged weights at the best epoch, and which scored better on the metric
    that chose it (a tie goes to the raw weights). A best epoch before the average's first update scored the raw
    weights alone: there is no averaged score, and the raw weights are the ones kept."""
    metrics = best.best_metrics or {}
    record = {"method": averager.name, **averager.settings()}
    if f"raw_eval_{best.metric}" not in metrics:
        return {**record, "raw": {m: metrics.get(f"eval_{m}") for m in names}, "averaged": None, "better": "raw"}
    raw = {m: metrics.get(f"raw_eval_{m}") for m in names}
    averaged = {m: metrics.get(f"eval_{m}") for m in names}
    gain = best.sign * (averaged[best.metric] - raw[best.metric])
    return {**record, "raw": raw, "averaged": averaged, "better": averager.name if gain > 0 else "raw"}


def averaging_summary(records: list[SeedResult], metric_names: list[str]) -> dict | None:
    """Over the seeds: how often each of the averaged and the raw weights was better on dev, and the raw weights'
    dev metrics at the best epochs (the averaged weights' are the run's own dev results)."""
    compared = [r.averaging for r in records if r.averaging]
    if not compared:
        return None
    method = compared[0]["method"]
    return {
        "method": method,
        "better": {name: sum(c["better"] == name for c in compared) for name in (method, "raw")},
        "dev_raw": {m: aggregate([c["raw"][m] for c in compared]) for m in metric_names},
    }


def probabilities(task: Task, logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits: softmax (single_label), or each label's sigmoid (multi_label)."""
    if task.task_type == "multi_label":
        return 1 / (1 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def write_predictions(path: str, task: Task, split: TaskSplit, predicted: list, logits: np.ndarray) -> None:
    """One line per example: the line it came from, gold, prediction, and (classification) its probability."""
    confidence = None
    if task.task_type == "single_label":
        confidence = probabilities(task, logits).max(-1).tolist()
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for i, (line, gold, guess) in enumerate(zip(split.lines, split.labels, predicted, strict=True)):
            row = {"line": line, "label": gold, "prediction": guess}
            if confidence is not None:
                row["probability"] = round(confidence[i], 4)
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
