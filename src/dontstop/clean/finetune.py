"""`--mode finetune`: out-of-fold probabilities from a `dontstop finetune` run per fold.

Fold k's run trains on the other folds (one seed, `--seed`), chooses its best epoch on `--validation_file` (or, if
none is given, on a stratified tenth of its training part, so the held-out fold stays unseen), and scores the fold as
its test set, writing the class probabilities of every held-out example (`--save_probabilities`). Each run is a
complete fine-tuning directory, `OUTPUT_DIR/folds/fold-K/`, and one that finished with the same settings is reused,
so an interrupted clean continues where it stopped.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections import Counter

import numpy as np

from ..errors import UsageError

logger = logging.getLogger(__name__)

DEV_SHARE = 0.1  # of a fold's training part, when no --validation_file is given


def write_examples(path: str, split, indices, args) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for i in indices:
            row = {args.text_column: split.texts[i], args.label_column: split.labels[i]}
            if split.pairs is not None:
                row[args.text_pair_column] = split.pairs[i]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def fold_files(directory: str, split, held: np.ndarray, seed: int, args) -> dict[str, str]:
    """The fold's train, heldout (its test) and, without --validation_file, dev files."""
    from ..tasks import stratified_sample

    os.makedirs(directory, exist_ok=True)
    rest = np.flatnonzero(~held)
    files = {"validation_file": args.validation_file}
    if args.validation_file is None:
        labels = [split.labels[i] for i in rest]
        left = Counter(labels)
        dev = []
        for i in rest[stratified_sample(labels, max(1, round(DEV_SHARE * len(rest))), seed)]:
            if left[split.labels[i]] > 1:  # training keeps one of every class: dev labels must be ones it saw
                left[split.labels[i]] -= 1
                dev.append(i)
        files["validation_file"] = write_examples(os.path.join(directory, "dev.jsonl"), split, dev, args)
        rest = np.setdiff1d(rest, dev)
    files["train_file"] = write_examples(os.path.join(directory, "train.jsonl"), split, rest, args)
    files["test_file"] = write_examples(os.path.join(directory, "heldout.jsonl"), split, np.flatnonzero(held), args)
    return files


def fold_arguments(files: dict, directory: str, args, train_args):
    """(TaskArguments, FinetuningArguments) of one fold's run; a run left there with other settings is cleared."""
    from ..finetune import TaskArguments
    from ..finetune.resume import CONFIG_FILE, check_resumable

    task_args = TaskArguments(
        model_name_or_path=args.model_name_or_path,
        task_type="single_label",
        text_column=args.text_column,
        text_pair_column=args.text_pair_column,
        label_column=args.label_column,
        label_type=args.label_type,
        max_seq_length=args.max_seq_length,
        seeds="1",
        save_probabilities=True,
        keep_models="none",  # only the held-out fold's probabilities are read
        **files,
    )
    fold_args = copy.copy(train_args)
    fold_args.output_dir, fold_args.overwrite_output_dir = directory, True
    if os.path.isfile(os.path.join(directory, CONFIG_FILE)):
        task_args.resume = True
        try:
            check_resumable(task_args, fold_args)
        except UsageError:
            logger.info("%s: an earlier run with other settings; starting the fold over", directory)
            task_args.resume = False
    return task_args, fold_args


def out_of_fold(split, label_ids: np.ndarray, folds: np.ndarray, labels: list[str], args, train_args) -> np.ndarray:
    """(examples, classes) probabilities, each row from the fine-tuned model that never saw the example."""
    from ..finetune import run_finetune
    from ..models import load_config, resolve_model_path

    load_config(resolve_model_path(args.model_name_or_path))  # a broken checkpoint fails before anything is written
    probabilities = np.zeros((len(label_ids), len(labels)))
    for k in range(folds.max() + 1):
        directory = os.path.join(train_args.output_dir, "folds", f"fold-{k}")
        held = folds == k
        files = fold_files(os.path.join(directory, "data"), split, held, train_args.seed, args)
        task_args, fold_args = fold_arguments(files, os.path.join(directory, "run"), args, train_args)
        if not task_args.resume and os.path.isdir(fold_args.output_dir):
            shutil.rmtree(fold_args.output_dir)
        logger.info("fold %d of %d: fine-tuning on %d examples, %d held out", k + 1, folds.max() + 1,
                    (~held).sum(), held.sum())  # fmt: skip
        results = run_finetune(task_args, fold_args)
        seed = results.seeds[0].seed
        predicted = np.load(os.path.join(fold_args.output_dir, f"seed-{seed}", "probabilities_test.npy"))
        columns = [labels.index(label) for label in results.labels]
        probabilities[np.ix_(held, columns)] = predicted
    return probabilities
