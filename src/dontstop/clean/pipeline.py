"""A `dontstop clean` run: read and check the file, split it into stratified folds, get every example's out-of-fold
class probabilities (`embed.py` or `finetune.py`), find the label issues (`issues.py`) and write them (`output.py`)."""

from __future__ import annotations

import importlib
import logging
import time

import numpy as np

from ..outputs import check_output_dir
from ..records import LabelIssues
from .args import CleanArguments, read_examples, validate
from .issues import confident_learning, issue_rows, out_of_fold_scores

logger = logging.getLogger(__name__)


def fold_assignment(label_ids: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """The fold of every example: stratified by label, shuffled with `seed`."""
    from sklearn.model_selection import StratifiedKFold

    assigned = np.zeros(len(label_ids), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, held) in enumerate(splitter.split(np.zeros(len(label_ids)), label_ids)):
        assigned[held] = k
    return assigned


def run_clean(args: CleanArguments, train_args) -> LabelIssues:
    """Find the likely label errors of `args.train_file`; returns the record written to OUTPUT_DIR/clean.json."""
    from .output import write_outputs

    validate(args, train_args)
    check_output_dir(train_args.output_dir, train_args.overwrite_output_dir)
    started = time.time()
    split, labels = read_examples(args)
    label_ids = np.array([labels.index(label) for label in split.labels])
    folds = fold_assignment(label_ids, args.folds, train_args.seed)
    logger.info("%s: %d examples, %d classes, %d folds, %s mode", args.train_file, len(split), len(labels),
                args.folds, args.mode)  # fmt: skip
    mode = importlib.import_module(f"{__package__}.{args.mode}")
    probabilities = mode.out_of_fold(split, label_ids, folds, labels, args, train_args)
    predicted = time.time()
    ranked, found, per_class = confident_learning(label_ids, probabilities, labels, args.filter_by, args.max_issues)
    rows = issue_rows(split, label_ids, probabilities, labels, ranked)
    record = LabelIssues(
        mode=args.mode,
        train_file=split.describe(),
        labels=labels,
        folds=args.folds,
        issues=len(ranked),
        found=found,
        model=args.model_name_or_path,
        filter_by=args.filter_by,
        out_of_fold=out_of_fold_scores(label_ids, probabilities, labels),
        per_class=per_class,
        settings={
            "seed": train_args.seed,
            "max_seq_length": args.max_seq_length,
            "logistic_c": args.logistic_c,
            "max_issues": args.max_issues,
        },
    )
    relabel = args.clean_action == "relabel"
    changes = {int(i): row["suggested_label"] if relabel else None for i, row in zip(ranked, rows, strict=True)}
    record.seconds = {"probabilities": round(predicted - started, 1), "total": round(time.time() - started, 1)}
    write_outputs(train_args.output_dir, record, rows, probabilities, args, split, changes)
    logger.info("%d of %d examples flagged (%.1f%%); the most suspect in %s/README.md", len(ranked), len(split),
                100 * len(ranked) / len(split), train_args.output_dir)  # fmt: skip
    return record
