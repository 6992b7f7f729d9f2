"""The Trainer of multi-task fine-tuning: the fine-tuning Trainer (methods' hooks, an auxiliary MLM head) with
batches of one task each (`sampler.TaskBatchSampler`), and an evaluation that scores every task's dev set and
reports their mean, which chooses the best epoch."""

from __future__ import annotations

import numpy as np

from ...scoring import PRIMARY_METRIC, score
from ...tasks import decode
from ..trainer import FinetuneTrainer
from .sampler import TaskView

MEAN = "mean"  # the metric that chooses the best epoch: the mean over the tasks of each one's primary dev metric


class MultiTaskTrainer(FinetuneTrainer):
    def __init__(self, *args, tasks: list, batch_sampler, **kwargs):
        """`tasks`: [(name, tasks.Task, {split: tasks.Encoded})], in the model's task order."""
        super().__init__(*args, **kwargs)
        self.tasks = tasks
        self.batch_sampler = batch_sampler

    def get_train_dataloader(self):
        from torch.utils.data import DataLoader

        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.batch_sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        return self.accelerator.prepare(loader)

    def predict_task(self, index: int, split_name: str):
        """(predicted labels, logits) of task `index` on its dev or test split."""
        _, task, encoded = self.tasks[index]
        split = task.dev if split_name == "dev" else task.test
        logits = self.predict(TaskView(encoded[split_name].dataset, index)).predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        lengths = [len(words) for words in split.texts] if task.task_type == "token" else None
        return decode(task, logits, encoded[split_name].word_ids, lengths), logits

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        """eval_NAME_METRIC for every task's dev metrics, and eval_mean over the tasks' primary metrics."""
        metrics, primaries = {}, []
        for index, (name, task, _) in enumerate(self.tasks):
            predicted, _ = self.predict_task(index, "dev")
            scores = score(task.task_type, task.dev.labels, predicted)
            metrics.update({f"{metric_key_prefix}_{name}_{metric}": value for metric, value in scores.items()})
            primaries.append(scores[PRIMARY_METRIC[task.task_type]])
        metrics[f"{metric_key_prefix}_{MEAN}"] = float(np.mean(primaries))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
