"""What a multi-task run leaves: results.json (`records.MultiTaskResults`), the kept models, and a README.md with a
table of every task's metrics."""

from __future__ import annotations

import os
import shutil

from ...records import MultiTaskResults
from ...scoring import METRICS, PRIMARY_METRIC, aggregate
from ..methods import method_settings


def collect(setup, records: list[dict]) -> MultiTaskResults:
    tasks = {}
    for name, task, splits in zip(setup.names, setup.tasks, setup.encoded, strict=True):
        metrics = list(METRICS[task.task_type])
        tasks[name] = {
            "task_type": task.task_type,
            "labels": task.labels,
            "primary_metric": PRIMARY_METRIC[task.task_type],
            "metrics": metrics,
            "train_file": task.train.describe(),
            "validation_file": task.dev.describe(),
            "test_file": task.test.describe() if task.test else None,
            "truncated": {split: encoded.truncated for split, encoded in splits.items()},
            "aggregate": {split: {m: aggregate([r[split][name][m] for r in records]) for m in metrics}
                          for split in ("dev", "test") if name in records[0][split]},
        }  # fmt: skip
    mean = {split: aggregate([r["mean"][split] for r in records]) for split in ("dev", "test")
            if all(r["mean"].get(split) is not None for r in records)}  # fmt: skip
    return MultiTaskResults(
        tasks=tasks,
        seeds=records,
        mean=mean,
        task_sampling=setup.task_args.task_sampling,
        model=setup.task_args.model_name_or_path,
        max_seq_length=setup.max_length,
        learning_rate=setup.args.learning_rate,
        methods=method_settings(setup.args),
    )


def keep_models(results: MultiTaskResults, keep: str, output_dir: str) -> str | None:
    """With --keep_models best, only the models of the seed best on the dev mean stay; where they are."""
    if keep == "none":
        return None
    best = max(results.seeds, key=lambda record: record["mean"]["dev"])
    if keep == "best":
        for record in results.seeds:
            if record is not best:
                shutil.rmtree(os.path.join(output_dir, f"seed-{record['seed']}", "model"), ignore_errors=True)
    return f"seed-{best['seed']}/model"


def cell(value: dict | None) -> str:
    if not value:
        return "–"
    std = f" ± {100 * value['std']:.1f}" if value.get("std") is not None else ""
    return f"{100 * value['mean']:.1f}{std}"


def write_readme(output_dir: str, results: MultiTaskResults) -> None:
    seeds = ", ".join(str(r["seed"]) for r in results.seeds)
    lines = [
        "# Multi-task fine-tuning",
        "",
        f"One encoder from `{results.model}` with one head per task, trained on batches of one task each (task "
        f"sampling: {results.task_sampling}); the best epoch of each seed chosen on the mean over the tasks of each "
        f"one's primary dev metric. Seeds: {seeds}. Mean ± standard deviation over the seeds, in percent.",
        "",
        "| task | type | primary metric | dev | test |",
        "|---|---|---|---|---|",
    ]
    for name, task in results.tasks.items():
        metric = task["primary_metric"]
        scores = [cell(task["aggregate"].get(split, {}).get(metric)) for split in ("dev", "test")]
        lines.append(f"| {name} | {task['task_type']} | {metric} | {scores[0]} | {scores[1]} |")
    lines.append(f"| **mean of the tasks** | | | {cell(results.mean.get('dev'))} | {cell(results.mean.get('test'))} |")
    if results.methods:
        lines += ["", f"Training methods: {', '.join(results.methods)} ({results.methods})."]
    if results.best_model:
        lines += ["", f"Kept models (one per task, each loads with its `AutoModelFor*Classification`): "
                  f"`{results.best_model}/TASK`."]  # fmt: skip
    lines += ["", "Every seed's dev and test metrics per task are in results.json; predictions in seed-S/TASK/."]
    with open(os.path.join(output_dir, "README.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
