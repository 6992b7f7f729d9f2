"""A multi-task fine-tuning run (`--tasks tasks.yaml`, or `--task NAME=TRAIN[,DEV[,TEST]]` repeated): every task read
and encoded as a single-task run reads it, then per seed one encoder with one head per task trained on batches of one
task each (`--task_sampling`), the best epoch chosen on the mean of the tasks' primary dev metrics, and every task's
dev and test metrics recorded (`results.py`)."""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, replace

from ...errors import UsageError
from ...outputs import check_output_dir, write_json
from ...scoring import PRIMARY_METRIC, score
from ..args import validate
from ..methods import MethodContext, build_methods, check_methods_model
from ..methods.base import active
from ..resume import CONFIG_FILE, resolved_config
from ..seeds import write_predictions
from ..setup import encode_splits, load_seeded_model, load_tokenizer_and_config, read_task
from ..trainer import BestEpoch
from .model import MultiTaskModel
from .results import collect, keep_models, write_readme
from .sampler import MultiTaskCollator, MultiTaskDataset, TaskBatchSampler
from .spec import read_specs
from .trainer import MEAN, MultiTaskTrainer

logger = logging.getLogger(__name__)

# (the option, whether it is set): what multi-task fine-tuning does not offer (yet); each is refused by name.
UNSUPPORTED = (
    ("--train_file/--validation_file/--test_file (give each task's files in --tasks or --task)",
     lambda t, a: t.train_file or t.validation_file or t.test_file),
    ("--prompt", lambda t, a: t.prompt),
    ("--glossary/--triples", lambda t, a: t.uses_knowledge),
    ("--adapter", lambda t, a: a.uses_adapter),
    ("--learning_rate auto", lambda t, a: a.learning_rate_auto),
    ("--resume", lambda t, a: t.resume),
    ("--train_limit/--train_limit_per_class", lambda t, a: t.train_limit or t.train_limit_per_class),
    ("--unlabeled_file/--unlabeled_from_train", lambda t, a: t.unlabeled_file or t.unlabeled_from_train),
    ("--sampler", lambda t, a: a.sampler != "random"),
    ("--class_weights", lambda t, a: a.class_weights != "none"),
    ("--loss", lambda t, a: a.loss != "cross_entropy"),
    ("--ema/--swa_start", lambda t, a: a.ema is not None or a.swa_start is not None),
    ("--metric_for_best_model (the mean of the tasks' primary dev metrics chooses the best epoch)",
     lambda t, a: a.metric_for_best_model),
    ("--save_probabilities", lambda t, a: t.save_probabilities),
)  # fmt: skip


@dataclass
class MultiSetup:
    """What every seed of a multi-task run shares: per task (in order) its name, task, tokenizer, config, encoding."""

    names: list[str]
    tasks: list
    tokenizers: list
    configs: list
    encoded: list[dict]
    task_args: object
    args: object
    source: str
    max_length: int

    def load_model(self, seed: int) -> MultiTaskModel:
        """Every task's head drawn apart: the first task's as a single-task run of it at `seed` draws it (so its
        head starts as its alone run's), each later one's with the task's name mixed into the seed."""
        models = {
            name: load_seeded_model(task, self.source, config, seed, self.args, head=name if i else None)[0]
            for i, (name, task, config) in enumerate(zip(self.names, self.tasks, self.configs, strict=True))
        }
        return MultiTaskModel(models)


def check_multitask(task_args, args) -> None:
    for option, given in UNSUPPORTED:
        if given(task_args, args):
            raise UsageError(f"{option} with --tasks/--task: not available in multi-task fine-tuning; run that task "
                             "alone for it")  # fmt: skip
    others = [cls.option for cls in active(args) if cls.name != "mlm"]
    if others:
        raise UsageError(f"--{others[0]} with --tasks/--task: multi-task fine-tuning offers --mlm_weight alone")


def prepare(task_args, args, specs: list) -> MultiSetup:
    """Every task read, checked and encoded (each with the run's options, less what its spec sets)."""
    names, tasks, tokenizers, configs, encoded, source, lengths = [], [], [], [], [], None, set()
    for spec in specs:
        spec_args = replace(task_args, tasks=None, task=None, **spec.options())
        task = read_task(spec_args, args)
        source, tokenizer, config = load_tokenizer_and_config(spec_args, task, args)
        splits, max_length, _ = encode_splits(task, spec_args, tokenizer, config)
        lengths.add(max_length)
        names.append(spec.name), tasks.append(task), tokenizers.append(tokenizer), configs.append(config)
        encoded.append(splits)
        tested = len(task.test) if task.test else "no"
        logger.info("Task %s: %s, %d labels; %d train / %d dev / %s test examples", spec.name, task.task_type,
                    len(task.labels), len(task.train), len(task.dev), tested)  # fmt: skip
    return MultiSetup(names, tasks, tokenizers, configs, encoded, task_args, args, source, max(lengths))


def seed_trainer(setup: MultiSetup, seed: int, model, seed_dir: str, methods: list):
    """(trainer, best-epoch callback, batch sampler) of one seed."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding

    args = setup.args
    collators = [(DataCollatorForTokenClassification if task.task_type == "token" else DataCollatorWithPadding)(tok)
                 for task, tok in zip(setup.tasks, setup.tokenizers, strict=True)]  # fmt: skip
    datasets = [splits["train"].dataset for splits in setup.encoded]
    sampler = TaskBatchSampler([len(d) for d in datasets], args.per_device_train_batch_size,
                               setup.task_args.task_sampling, seed)  # fmt: skip
    best = BestEpoch(MEAN, args.early_stopping_patience, greater_is_better=True)
    seed_args = copy.copy(args)
    seed_args.seed, seed_args.data_seed, seed_args.output_dir = seed, seed, seed_dir
    seed_args.remove_unused_columns = False  # the items carry their task, which the collator reads
    trainer = MultiTaskTrainer(
        model=model,
        args=seed_args,
        train_dataset=MultiTaskDataset(datasets),
        eval_dataset=datasets[0],  # the Trainer requires one; `evaluate` scores every task's dev set
        data_collator=MultiTaskCollator(collators),
        processing_class=setup.tokenizers[0],
        callbacks=[best],
        methods=methods,
        tasks=list(zip(setup.names, setup.tasks, setup.encoded, strict=True)),
        batch_sampler=sampler,
    )
    return trainer, best, sampler


def train_seed(setup: MultiSetup, seed: int, model: MultiTaskModel, output_dir: str) -> dict:
    """Train one seed; its record (best epoch, each task's dev and test metrics, their means, the batches each task
    had in the first epoch), with its predictions (and models, per --keep_models) under seed-S/."""
    seed_dir = os.path.join(output_dir, f"seed-{seed}")
    context = MethodContext(model, setup.tokenizers[0], setup.args, setup.tasks[0], seed, setup.max_length,
                            seed_dir=seed_dir, source=setup.source)  # fmt: skip
    trainer, best, sampler = seed_trainer(setup, seed, model, seed_dir, build_methods(context))
    started = time.time()
    trainer.train()
    seconds = time.time() - started
    best.restore(model)
    record = {"seed": seed, "best_epoch": best.best_epoch, "epochs_run": trainer.state.epoch,
              "steps": trainer.state.global_step, "train_seconds": round(seconds, 1), "dev": {}, "test": {},
              "batches_per_epoch": dict(zip(setup.names, sampler.quota(0).tolist(), strict=True))}  # fmt: skip
    for index, (name, task) in enumerate(zip(setup.names, setup.tasks, strict=True)):
        for split_name, split in (("dev", task.dev), ("test", task.test)):
            if split is None:
                continue
            predicted, logits = trainer.predict_task(index, split_name)
            record[split_name][name] = score(task.task_type, split.labels, predicted)
            os.makedirs(os.path.join(seed_dir, name), exist_ok=True)
            write_predictions(os.path.join(seed_dir, name, f"predictions_{split_name}.jsonl"), task, split,
                              predicted, logits)  # fmt: skip
        if setup.task_args.keep_models != "none":
            model.save_task(name, os.path.join(seed_dir, "model", name), setup.tokenizers[index])
    record["mean"] = {split: mean_primary(record[split], setup) for split in ("dev", "test") if record[split]}
    logged = [entry for entry in trainer.state.log_history if "loss" in entry or f"eval_{MEAN}" in entry]
    record["history"] = [{k: v for k, v in entry.items() if k in ("epoch", "step", "loss") or k.startswith("eval_")}
                         for entry in logged]  # fmt: skip
    write_json(os.path.join(seed_dir, "result.json"), record)
    return record


def mean_primary(scores: dict, setup: MultiSetup) -> float | None:
    """The mean over the tasks of each one's primary metric (None unless every task was scored)."""
    if len(scores) != len(setup.names):
        return None
    primaries = [scores[name][PRIMARY_METRIC[task.task_type]] for name, task in zip(setup.names, setup.tasks,
                 strict=True)]  # fmt: skip
    return sum(primaries) / len(primaries)


def run_multitask(task_args, args):
    """Fine-tune one encoder on every task over the seeds; returns the record written to output_dir/results.json."""
    check_multitask(task_args, args)
    specs = read_specs(task_args.tasks, task_args.task)  # its errors first: they name the file and line
    seeds = validate(replace(task_args, train_file=specs[0].train), args)  # the checks every run has
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    started = time.time()
    setup = prepare(task_args, args, specs)
    # The first model is loaded (and the checkpoint checked) before anything is written.
    model = setup.load_model(seeds[0])
    check_methods_model(args, setup.source, setup.configs[0])
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, CONFIG_FILE), resolved_config(task_args, args))
    records = []
    for i, seed in enumerate(seeds, start=1):
        model = model if i == 1 else setup.load_model(seed)
        records.append(train_seed(setup, seed, model, args.output_dir))
        dev = records[-1]["mean"].get("dev")
        logger.info("Seed %d (%d of %d): best epoch %s; dev mean of the tasks' primary metrics %.1f", seed, i,
                    len(seeds), records[-1]["best_epoch"], 100 * dev)  # fmt: skip
        model = None
    results = collect(setup, records)
    results.best_model = keep_models(results, task_args.keep_models, args.output_dir)
    results.wall_seconds = round(time.time() - started, 1)
    results.save(args.output_dir)
    write_readme(args.output_dir, results)
    return results
