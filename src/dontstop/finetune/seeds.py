"""One seed of a fine-tuning run: its few-shot draw and unlabeled text, its rounds of training (one, unless
self-training asks for more), the round best on dev scored and its predictions written."""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..adapters import save_merged
from ..averaging import WeightAverage
from ..fingerprint import hash_json
from ..models import MERGED_DIR
from ..records import SeedResult
from ..scoring import METRICS, aggregate, per_class
from ..tasks import Task, TaskSplit, per_class_sample, stratified_sample
from .args import FinetuningArguments, TaskArguments
from .rounds import Round, train_round, with_examples
from .trainer import BestEpoch
from .unlabeled import UnlabeledSource

logger = logging.getLogger(__name__)


@dataclass
class SeedSetup:
    """What every seed of a run shares."""

    task: Task
    tokenizer: object
    encoded: dict  # split -> tasks.Encoded
    task_args: TaskArguments
    args: FinetuningArguments
    output_dir: str
    key: str  # the fingerprint of the settings and files a seed's result depends on
    max_length: int
    unlabeled: UnlabeledSource | None
    load_model: Callable[[int], object]  # seed -> a fresh model with that seed's head: the student of a new round
    source: str | None = None  # the checkpoint (a method may load more of it: `MethodContext.source`)


def training_examples(task: Task, encoded, task_args: TaskArguments, seed: int):
    """(the training set of one seed, the fingerprint of its draw, the rows drawn): all of it, or (--train_limit) a
    stratified draw seeded by the seed (or by --sample_seed). The same seed draws the same examples in every run on
    the task."""
    train = encoded["train"].dataset
    indices = drawn_indices(task, task_args, seed)
    if len(indices) < len(train):
        train = train.select(indices)
    return train, hash_json([task.train.sha256, [int(i) for i in indices]])[:16], indices


def drawn_indices(task: Task, task_args: TaskArguments, seed: int):
    """The rows of task.train that `seed` trains on: all, or the few-shot draw (--train_limit[_per_class])."""
    draw_seed = seed if task_args.sample_seed is None else task_args.sample_seed
    if task_args.train_limit:
        return stratified_sample(task.train.labels, task_args.train_limit, draw_seed)
    if task_args.train_limit_per_class:
        return per_class_sample(task.train.labels, task_args.train_limit_per_class, draw_seed)
    return range(len(task.train))


def train_rounds(seed: int, model, setup: SeedSetup, seed_dir: str) -> tuple[list[Round], Round, dict]:
    """(every round, the one best on dev, what the seed was given); a later round's student starts again from the
    checkpoint. Only the best round keeps its weights in memory."""
    train, draw, drawn = training_examples(setup.task, setup.encoded, setup.task_args, seed)
    pool = setup.unlabeled.for_seed(setup.task, drawn, seed) if setup.unlabeled is not None else None
    rounds, chosen, current, added = [], None, train, None
    for index in itertools.count():
        if index:
            model = setup.load_model(seed)
        latest = train_round(setup, seed, model, current, pool, index, seed_dir)
        latest.added = added
        rounds.append(latest)
        if chosen is None or latest.best.best > chosen.best.best:  # the dev metric of the best epoch, signed
            if chosen is not None:
                chosen.best.best_state = None
            chosen = latest
        else:
            latest.best.best_state = None
        examples = latest.next_examples()
        for earlier in rounds[:-1]:
            if earlier is not chosen:
                earlier.trainer = None  # and its model
        if examples is None:
            break
        added, current = examples.record, with_examples(setup, train, examples)
        logger.info("Seed %d, round %d: %d pseudo-labelled examples added", seed, index + 1, len(examples.texts))
    given = {"train_examples": len(train), "draw": draw, "unlabeled": pool.record() if pool is not None else None}
    return rounds, chosen, given


def run_seed(seed: int, model, setup: SeedSetup) -> SeedResult:
    """Train one seed's `model` (from `load_seeded_model`); return its record (dev and test metrics of the best
    round's best epoch, timing, history), also written to seed-S/result.json."""
    task, args = setup.task, setup.args
    seed_dir = os.path.join(setup.output_dir, f"seed-{seed}")
    rounds, chosen, given = train_rounds(seed, model, setup, seed_dir)
    record = SeedResult(
        seed=seed,
        dev=chosen.scores["dev"],
        test=chosen.scores.get("test"),
        fingerprint=setup.key,
        best_epoch=chosen.best.best_epoch,
        epochs_run=chosen.state.epoch,
        steps=chosen.state.global_step,
        train_examples=given["train_examples"],
        draw=given["draw"],
        train_seconds=round(sum(r.seconds for r in rounds), 1),  # every round: the seed's cost
        history=chosen.history(),
        unlabeled=given["unlabeled"],
    )
    if len(rounds) > 1:
        record.rounds, record.chosen_round = [r.summary() for r in rounds], chosen.index
    if chosen.averager is not None:
        record.averaging = averaged_against_raw(chosen.best, chosen.averager, [*METRICS[task.task_type], "loss"])
    weights = chosen.trainer.loss.weights
    if weights is not None:
        record.class_weights = {label: round(float(w), 6) for label, w in zip(task.labels, weights, strict=True)}
    os.makedirs(seed_dir, exist_ok=True)
    record.per_class = {}
    for name, (predicted, logits) in chosen.predictions.items():
        split = task.dev if name == "dev" else task.test
        record.per_class[name] = per_class(task.task_type, split.labels, predicted, task.labels)
        write_predictions(os.path.join(seed_dir, f"predictions_{name}.jsonl"), task, split, predicted, logits)
        if setup.task_args.save_probabilities and task.task_type != "token":
            np.save(os.path.join(seed_dir, f"probabilities_{name}.npy"), probabilities(task, logits))
    if setup.task_args.keep_models != "none":
        last = rounds[-1]
        if last is not chosen:  # the last round's trainer saves the chosen round's weights
            last.trainer.model.load_state_dict(chosen.best.best_state)
        last.trainer.save_model(os.path.join(seed_dir, "model"))  # with --adapter lora: the task adapter
        if args.uses_adapter and args.merge_adapter:
            save_merged(last.trainer.model, setup.tokenizer, os.path.join(seed_dir, "model", MERGED_DIR))
    record.save(seed_dir)
    del rounds, chosen, model
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
