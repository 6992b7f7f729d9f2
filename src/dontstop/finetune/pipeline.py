"""A fine-tuning run: read the task, load the tokenizer and config, then each seed's model, train it, and gather
the results."""

from __future__ import annotations

import logging
import os
import time

from ..outputs import check_output_dir, write_json
from ..records import FinetuneResults, SeedResult
from ..scoring import CLASS_METRICS, METRICS, PRIMARY_METRIC, aggregate
from ..tasks import Task
from ..tokenization import check_unknown_tokens
from .args import FinetuningArguments, TaskArguments, selection_metric, validate
from .card import results_table, write_finetune_readme
from .methods import check_methods_model, method_settings, needs_unlabeled
from .methods.auto_verbalizer import FILE as VERBALIZER_FILE
from .resume import CONFIG_FILE, check_resumable, fingerprint, finished_seed, resolved_config
from .seeds import SeedSetup, averaging_summary, run_seed
from .setup import (
    adapter_record,
    encode_splits,
    load_seeded_model,
    load_tokenizer_and_config,
    prompt_summary,
    read_task,
)
from .unlabeled import load_unlabeled

logger = logging.getLogger(__name__)
# The table of seeds at the end: `dontstop run` silences it (it prints one table of all arms at its own end).
table_logger = logging.getLogger(f"{__name__}.table")


def collect(
    task: Task, task_args, args, records: list[SeedResult], encoded, max_length: int, adapter, unlabeled
) -> FinetuneResults:
    metric_names = list(METRICS[task.task_type])
    results = FinetuneResults(
        task_type=task.task_type,
        model=task_args.model_name_or_path,
        labels=task.labels,
        primary_metric=selection_metric(task, args),
        metrics=metric_names,
        train_file=task.train.describe(),
        validation_file=task.dev.describe(),
        test_file=task.test.describe() if task.test else None,
        max_seq_length=max_length,
        truncated={name: enc.truncated for name, enc in encoded.items()},
        seeds=records,
        aggregate={
            split: {m: aggregate([getattr(r, split)[m] for r in records]) for m in metric_names}
            for split in ("dev", "test")
            if getattr(records[0], split) is not None
        },
        averaging=averaging_summary(records, metric_names),
        adapter=adapter,
        methods=method_settings(args),
        unlabeled=unlabeled.record() if unlabeled is not None else None,
        imbalance=args.imbalance(),
    )
    results.per_class = {
        split: {
            name: {m: aggregate(results.class_values(split, name, m)) for m in CLASS_METRICS}
            for name in results.classes(split)
        }
        for split in results.aggregate
        if results.classes(split)
    } or None
    return results


def run_finetune(task_args: TaskArguments, args: FinetuningArguments) -> FinetuneResults:
    """Fine-tune over the seeds; returns the record written to `output_dir/results.json`."""
    if task_args.tasks or task_args.task:
        from .multitask.run import run_multitask

        return run_multitask(task_args, args)
    seeds = validate(task_args, args)
    if task_args.resume:
        check_resumable(task_args, args)
    else:
        check_output_dir(args.output_dir, args.overwrite_output_dir)
    started = time.time()
    task = read_task(task_args, args)
    source, tokenizer, config = load_tokenizer_and_config(task_args, task, args)
    encoded, max_length, expanded = encode_splits(task, task_args, tokenizer, config)
    first = encoded["train"].dataset[: args.per_device_train_batch_size]["input_ids"]
    check_unknown_tokens(first, tokenizer, task_args.allow_unknown_tokens, "--allow_unknown_tokens")
    logger.info(
        "%s task, %d labels; %d train / %d dev / %s test examples; seeds %s",
        task.task_type, len(task.labels), len(task.train), len(task.dev), len(task.test) if task.test else "no",
        ", ".join(map(str, seeds)),
    )  # fmt: skip
    unlabeled = load_unlabeled(task_args, task) if needs_unlabeled(args) else None
    setup = SeedSetup(
        task, tokenizer, encoded, task_args, args, args.output_dir, "", max_length, unlabeled,
        load_model=lambda seed: load_seeded_model(task, source, config, seed, args)[0], source=source,
    )  # fmt: skip
    check_methods_model(args, source, config)  # a checkpoint lacking what a method needs: refused before any write
    chosen = None
    if args.learning_rate_auto:  # before the fingerprint: the seeds' results depend on the rate chosen
        from .sweep import choose_rate

        os.makedirs(args.output_dir, exist_ok=True)
        chosen = choose_rate(setup)
    key = setup.key = fingerprint(task_args, args, task)
    earlier = {seed: finished_seed(args.output_dir, seed, key) if task_args.resume else None for seed in seeds}
    pending = [seed for seed in seeds if earlier[seed] is None]
    # The first model is loaded before anything is written, so a broken checkpoint leaves no half-made directory.
    model, new = load_seeded_model(task, source, config, pending[0], args) if pending else (None, None)
    if new:
        logger.info("Initialised afresh (absent from %s): %s", source, ", ".join(new))
    adapter = adapter_record(source, model)
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, CONFIG_FILE), resolved_config(task_args, args))
    if (getattr(config, "prompt", None) or {}).get("chosen_by"):  # --verbalizer auto: the words, to reuse or edit
        write_json(os.path.join(args.output_dir, VERBALIZER_FILE), config.prompt["verbalizer"])
    records = []
    for i, seed in enumerate(seeds, start=1):
        if earlier[seed] is not None:
            logger.info("Seed %d (%d of %d): finished earlier, reusing its result", seed, i, len(seeds))
            records.append(earlier[seed])
            continue
        model = model if seed == pending[0] else setup.load_model(seed)
        records.append(run_seed(seed, model, setup))
        logger.info("Seed %s (%d of %d): %s", seed, i, len(seeds), seed_line(records[-1], task.task_type))
        model = None  # free it before the next seed loads
    results = collect(task, task_args, args, records, encoded, max_length, adapter, unlabeled)
    results.new_parameters = new
    results.knowledge = expanded or None
    results.best_model = keep_models(results, task_args.keep_models, args.output_dir)
    results.learning_rate = args.learning_rate
    results.learning_rate_sweep = chosen.to_dict() if chosen else None
    results.prompt = prompt_summary(config)
    results.wall_seconds = round(time.time() - started, 1)
    results.save(args.output_dir)
    write_finetune_readme(args.output_dir, results, args)
    table_logger.info("\n%s", "\n".join(results_table(results)))
    return results


def keep_models(results: FinetuneResults, keep: str, output_dir: str) -> str | None:
    """With --keep_models best, every seed's model but the one best on dev (the primary metric) goes; returns where
    the best one is ("seed-S/model"), or None when no model was kept."""
    import shutil

    if keep == "none":
        return None
    metric = results.primary_metric  # the dev loss is not scored per seed: the task's headline metric then
    metric = metric if metric in results.seeds[0].dev else PRIMARY_METRIC[results.task_type]
    best = max(results.seeds, key=lambda s: s.dev[metric])
    if keep == "best":
        for seed in results.seeds:
            if seed is not best:
                shutil.rmtree(os.path.join(output_dir, f"seed-{seed.seed}", "model"), ignore_errors=True)
    kept = f"seed-{best.seed}/model"
    if not os.path.isdir(os.path.join(output_dir, kept)):
        logger.warning("%s: the best seed's model is not there (removed by an earlier run?)", kept)
        return None
    logger.info("The best seed on dev %s: its model is %s", metric, os.path.join(output_dir, kept))
    return kept


def seed_line(record: SeedResult, task_type: str) -> str:
    """ "best epoch 3; dev macro_f1 41.2, test macro_f1 39.8": a seed's outcome on the task's primary metric."""
    metric = PRIMARY_METRIC[task_type]
    scores = [f"{split} {metric} {100 * values[metric]:.1f}" for split, values in (("dev", record.dev),
              ("test", record.test)) if values and metric in values]  # fmt: skip
    epoch = f"best epoch {record.best_epoch:g}; " if record.best_epoch is not None else ""
    return epoch + ", ".join(scores)
