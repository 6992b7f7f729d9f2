"""Multi-task fine-tuning: `dontstop finetune --tasks tasks.yaml` (or `--task NAME=TRAIN[,DEV[,TEST]]` repeated)
trains one encoder with one head per task, each batch from one task (`--task_sampling proportional|sqrt|uniform`),
early-stopping on the mean of the tasks' primary dev metrics and reporting each task's metrics.

    dontstop finetune --model_name_or_path runs/dapt --tasks tasks.yaml --task_sampling sqrt --mlm_weight 0.3 \\
        --seeds 5 --output_dir runs/dapt-multitask

`spec.py` reads the tasks, `sampler.py` draws the batches, `model.py` shares the encoder, `trainer.py` evaluates
every task, `run.py` runs the seeds and `results.py` writes what they found.
"""

from __future__ import annotations


def is_multitask(task_args) -> bool:
    return bool(getattr(task_args, "tasks", None) or getattr(task_args, "task", None))
