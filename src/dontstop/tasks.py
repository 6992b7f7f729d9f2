"""Labelled task files for `dontstop finetune`: reading, checking, few-shot subsampling, and the bridge to a model
(tokenized inputs with aligned labels; predicted labels back from logits).

Three kinds of task, told apart by the shape of a JSON record (or forced with `--task_type`):
- single_label: a text (optionally a text pair) and one label;
- multi_label: a text and a list of labels (in csv/tsv, one string split on `--label_separator`);
- token: a list of words and a list of BIO tags of the same length (in csv/tsv, both split on whitespace).
Every csv/tsv cell is a string, so there the kind cannot be read off a record: multi_label and token tasks in csv/tsv
need `--task_type`.

Every problem is reported as `file:line: what is wrong`, because a task file is small enough to check whole and
`datasets`' own errors name neither: an empty text, a missing column, and a dev/test label that training never saw.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .corpus import parse_json_line, require_file
from .errors import UsageError
from .logs import once

logger = logging.getLogger(__name__)

TASK_TYPES = ("single_label", "multi_label", "token")
SUFFIXES = (".jsonl", ".json", ".csv", ".tsv")


@dataclass
class TaskSplit:
    """One file of a task: parallel lists, one entry per example, with the line each came from."""

    path: str
    texts: list  # str, or list[str] of words for token tasks
    labels: list  # str, list[str] of labels (multi_label), or list[str] of tags (token)
    lines: list[int]
    pairs: list[str] | None = None
    sha256: str = ""
    held_out: str | None = None  # how this split was cut from its file, when it is part of one (hold_out_dev)

    def __len__(self) -> int:
        return len(self.texts)

    def describe(self) -> dict:
        described = {"path": self.path, "sha256": self.sha256, "examples": len(self)}
        return {**described, "held_out": self.held_out} if self.held_out else described

    def subset(self, indices, held_out: str | None = None) -> TaskSplit:
        pick = [int(i) for i in indices]
        pairs = [self.pairs[i] for i in pick] if self.pairs is not None else None
        return TaskSplit(
            self.path,
            [self.texts[i] for i in pick],
            [self.labels[i] for i in pick],
            [self.lines[i] for i in pick],
            pairs,
            self.sha256,
            held_out or self.held_out,
        )


@dataclass
class Task:
    task_type: str
    labels: list[str]  # class names, or tag names for token tasks, in id order
    train: TaskSplit
    dev: TaskSplit
    test: TaskSplit | None = None
    label2id: dict[str, int] = field(init=False)

    def __post_init__(self):
        self.label2id = {label: i for i, label in enumerate(self.labels)}


def _read(path: str) -> bytes:
    """The whole file: task files are small, and holding them lets a decoding error name its line and the hash come
    from the same read."""
    require_file(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise UsageError(f"{path}: unknown task file format {suffix!r} (expected {', '.join(SUFFIXES)})")
    with open(path, "rb") as f:
        return f.read()


def _decode(path: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")  # spreadsheet exports start with a byte-order mark
    except UnicodeDecodeError as e:
        lineno = raw.count(b"\n", 0, e.start) + 1
        raise UsageError(f"{path}:{lineno}: invalid UTF-8 (byte {e.start})") from None


def csv_dialect(path: str) -> dict:
    """How a .csv or .tsv task file is read (and written back): TSV task files (GLUE and the like) quote nothing, so
    a stray quote is text, not the start of a quoted field."""
    if os.path.splitext(path)[1].lower() == ".tsv":
        return {"delimiter": "\t", "quoting": csv.QUOTE_NONE}
    return {"delimiter": ","}


def _records(path: str, raw: bytes):
    """Yield (line number, record dict) from the bytes of a jsonl/csv/tsv file, with file:line errors."""
    suffix = os.path.splitext(path)[1].lower()
    text = _decode(path, raw)
    if suffix in (".jsonl", ".json"):
        for lineno, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                yield lineno, parse_json_line(path, lineno, line)
    else:
        csv.field_size_limit(1 << 30)  # long documents are fine; the csv module's default stops at 128 KiB
        reader = csv.DictReader(io.StringIO(text, newline=""), **csv_dialect(path))
        for record in reader:
            yield reader.line_num, record


def _column(path, lineno, record, column, option):
    if column not in record:
        found = ", ".join(sorted(k for k in record if k is not None)) or "none"
        raise UsageError(f"{path}:{lineno}: no column {column!r} (set {option}; columns: {found})")
    return record[column]


def infer_task_type(value_text, value_label) -> str:
    if isinstance(value_text, list):
        return "token"
    if isinstance(value_label, list):
        return "multi_label"
    return "single_label"


def read_task_file(
    path: str,
    task_type: str,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    label_separator: str = ",",
    label_type: str = "auto",
) -> TaskSplit:
    """Read one split; `task_type` may be "auto" (decided by the first record). Labels that are numbers in some
    records and strings in others (1 and "1") are an error, unless `label_type` is "str": then all are strings."""
    texts, labels, pairs, lines = [], [], [], []
    kinds: dict[str, int] = {}  # the kind of a label (number or string) -> the first line with one
    raw = _read(path)
    for lineno, record in _records(path, raw):
        text = _column(path, lineno, record, text_column, "--text_column")
        label = _column(path, lineno, record, label_column, "--label_column")
        if task_type == "auto":
            task_type = infer_task_type(text, label)
        if task_type == "token":
            words = text.split() if isinstance(text, str) else text
            tags = label.split() if isinstance(label, str) else label
            if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
                raise UsageError(f"{path}:{lineno}: {text_column!r} must be a list of words for a token task")
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise UsageError(f"{path}:{lineno}: {label_column!r} must be a list of tags for a token task")
            if not words or not all(w.strip() for w in words):
                raise UsageError(f"{path}:{lineno}: empty text (or an empty word) in {text_column!r}")
            if len(words) != len(tags):
                raise UsageError(f"{path}:{lineno}: {len(words)} words but {len(tags)} tags")
            text, label = words, tags
        else:
            if not isinstance(text, str) or not text.strip():
                raise UsageError(f"{path}:{lineno}: empty text in column {text_column!r}")
            if text_pair_column is not None:
                pair = _column(path, lineno, record, text_pair_column, "--text_pair_column")
                if not isinstance(pair, str) or not pair.strip():
                    raise UsageError(f"{path}:{lineno}: empty text in column {text_pair_column!r}")
                pairs.append(pair)
            if task_type == "multi_label":
                if isinstance(label, str):
                    label = [p.strip() for p in label.split(label_separator) if p.strip()]
                if not isinstance(label, list):
                    raise UsageError(f"{path}:{lineno}: {label_column!r} must be a list of labels (multi_label)")
                label = sorted({str(x) for x in label})
            else:
                if label is None or isinstance(label, (list, dict)) or str(label).strip() == "":
                    raise UsageError(f"{path}:{lineno}: {label_column!r} must hold one label, got {label!r}")
                kinds.setdefault("a string" if isinstance(label, str) else "a number", lineno)
                label = str(label).strip()
        texts.append(text)
        labels.append(label)
        lines.append(lineno)
    if not texts:
        raise UsageError(f"{path}: no examples")
    if len(kinds) > 1 and label_type != "str":
        first = ", ".join(f"{kind} on line {line}" for kind, line in sorted(kinds.items(), key=lambda k: k[1]))
        raise UsageError(
            f"{path}: the {label_column!r} column mixes numbers and strings ({first}): make them one kind, or pass "
            "--label_type str to read every label as a string"
        )
    # Recorded with the results, so `dontstop compare` can refuse runs scored on different files.
    digest = hashlib.sha256(raw).hexdigest()
    return TaskSplit(path, texts, labels, lines, pairs if text_pair_column else None, digest)


def _label_names(split: TaskSplit, task_type: str) -> set[str]:
    if task_type == "single_label":
        return set(split.labels)
    return {label for labels in split.labels for label in labels}


def _sort_key(label: str):
    # Numeric labels in numeric order (so "2" < "10"), then names alphabetically; "O" first for tag sets.
    numeric = re.fullmatch(r"-?[0-9]+", label) is not None
    return (label != "O", not numeric, int(label) if numeric else 0, label)


def sorted_labels(names) -> list[str]:
    """Class names in the order of a task's label ids: numbers numerically, then names; "O" first."""
    return sorted(names, key=_sort_key)


def load_task(
    train_file: str,
    validation_file: str | None,
    test_file: str | None = None,
    task_type: str = "auto",
    validation_split_percentage: float = 10.0,
    **columns,
) -> Task:
    """Read the splits; the label set is the training file's, and any other label is an error naming its line.
    Without a validation file, `validation_split_percentage` of the training examples are the dev set."""
    if task_type not in ("auto", *TASK_TYPES):
        raise UsageError(f"--task_type {task_type}: expected auto or one of {', '.join(TASK_TYPES)}")
    train = read_task_file(train_file, task_type, **columns)
    if task_type == "auto":
        task_type = infer_task_type(train.texts[0], train.labels[0])
    labels = sorted_labels(_label_names(train, task_type))
    if task_type == "single_label" and len(labels) < 2:
        raise UsageError(f"{train_file}: only one label ({labels[0]}) in the training file; nothing to learn")
    known = set(labels)
    splits = []
    for path in (validation_file, test_file):
        if path is None:
            splits.append(None)
            continue
        split = read_task_file(path, task_type, **columns)
        for lineno, label in zip(split.lines, split.labels, strict=True):
            unseen = sorted(({label} if task_type == "single_label" else set(label)) - known)
            if unseen:
                raise UsageError(
                    f"{path}:{lineno}: label {unseen[0]!r} never occurs in the training file {train_file} "
                    f"(training labels: {', '.join(labels[:20])}{' ...' if len(labels) > 20 else ''})"
                )
        splits.append(split)
    if validation_file is None:
        train, splits[0] = hold_out_dev(train, validation_split_percentage, "--validation_split_percentage")
    return Task(task_type, labels, train, splits[0], splits[1])


def hold_out_dev(train: TaskSplit, percentage: float, option: str, seed: int = 0) -> tuple[TaskSplit, TaskSplit]:
    """(train, dev): `percentage` of the training file's examples held out as the dev set, stratified by label for
    single-label tasks (uniformly for the others), with a fixed seed so every seed and arm sees the same split."""
    n = round(len(train) * percentage / 100)
    if not 1 <= n < len(train):
        raise UsageError(f"{option} {percentage:g}: {n} of {len(train)} training examples; hold out at least one and "
                         "keep at least one, or give --validation_file")  # fmt: skip
    chosen = stratified_sample(train.labels, n, seed)
    rest = np.setdiff1d(np.arange(len(train)), chosen)
    how = "stratified by label" if train.labels and isinstance(train.labels[0], str) else "drawn uniformly"
    dev, kept = train.subset(chosen, f"{percentage:g}% of the training file, {how} (seed {seed})"), train.subset(rest)
    if isinstance(train.labels[0], str):
        lost = sorted(set(train.labels) - set(kept.labels), key=_sort_key)
        if lost:
            raise UsageError(f"{option} {percentage:g}: label {lost[0]!r} has too few examples to hold any out; give "
                             "--validation_file")  # fmt: skip
    return kept, dev


def stratified_sample(labels: list, n: int, seed: int) -> np.ndarray:
    """Indices of `n` examples drawn without replacement, keeping class proportions (single-label labels).

    Each class gets its proportional share rounded down; the leftover places go to the largest remainders; when
    `n` covers every class, each class keeps at least one example. Labels that are lists (multi-label, token tags)
    are sampled uniformly, since there is no single class to stratify by.
    """
    rng = np.random.default_rng(seed)
    total = len(labels)
    if n >= total:
        return np.arange(total)
    if not labels or not isinstance(labels[0], str):
        return np.sort(rng.choice(total, size=n, replace=False))
    classes, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    exact = counts * n / total
    quota = np.floor(exact).astype(int)
    leftover = n - quota.sum()
    # Ties between equal remainders are broken at random, so no class is favoured by its name.
    order = np.lexsort((rng.random(len(classes)), -(exact - quota)))
    quota[order[:leftover]] += 1
    if n >= len(classes):
        for c in np.flatnonzero(quota == 0):
            donor = int(np.argmax(quota))
            quota[donor] -= 1
            quota[c] += 1
    chosen = [rng.choice(np.flatnonzero(inverse == c), size=q, replace=False) for c, q in enumerate(quota) if q]
    return np.sort(np.concatenate(chosen))


def per_class_sample(labels: list, k: int, seed: int) -> np.ndarray:
    """Indices of `k` examples of each label (all of a label with fewer), drawn without replacement, in file order."""
    if not labels or not isinstance(labels[0], str):
        raise UsageError("--train_limit_per_class draws per label: it needs a single_label task")
    rng = np.random.default_rng(seed)
    classes, inverse = np.unique(np.asarray(labels), return_inverse=True)
    chosen = [rng.permutation(np.flatnonzero(inverse == c))[:k] for c in range(len(classes))]
    return np.sort(np.concatenate(chosen))


@dataclass
class Encoded:
    """A tokenized split: the dataset the Trainer sees, and what maps predictions back to words."""

    dataset: object
    word_ids: list[list[int | None]] | None
    truncated: int


def encode(task: Task, split: TaskSplit, tokenizer, max_length: int) -> Encoded:
    import datasets

    if task.task_type == "token":
        enc = tokenizer(split.texts, is_split_into_words=True, truncation=True, max_length=max_length)
        word_ids = [enc.word_ids(i) for i in range(len(split))]
        labels = []
        for ids, tags in zip(word_ids, split.labels, strict=True):
            # Only a word's first sub-token is trained and scored; the others are ignored (-100).
            previous, row = None, []
            for w in ids:
                row.append(task.label2id[tags[w]] if w is not None and w != previous else -100)
                previous = w
            labels.append(row)
        last_word = [max((w for w in ids if w is not None), default=-1) for ids in word_ids]
        truncated = sum(last < len(words) - 1 for last, words in zip(last_word, split.texts, strict=True))
    else:
        pairs = split.pairs
        enc = tokenizer(split.texts, pairs, truncation=True, max_length=max_length)
        full = tokenizer(split.texts, pairs, truncation=False, verbose=False)["input_ids"]
        truncated = sum(len(ids) > max_length for ids in full)
        word_ids = None
        labels = sequence_labels(task, split)
    columns = {key: list(values) for key, values in enc.items()}
    columns["labels"] = labels
    if truncated:
        once(logger, logging.WARNING, "%s: %d of %d examples truncated to %d tokens", split.path, truncated,
             len(split), max_length)  # fmt: skip
    return Encoded(datasets.Dataset.from_dict(columns), word_ids, truncated)


def sequence_labels(task: Task, split: TaskSplit) -> list:
    """A sequence task's labels as the model trains on them: class ids, or (multi_label) one 0/1 per label."""
    if task.task_type == "multi_label":
        return [[float(label in set(gold)) for label in task.labels] for gold in split.labels]
    return [task.label2id[label] for label in split.labels]


def decode(task: Task, logits: np.ndarray, word_ids, lengths: list[int] | None = None) -> list:
    """Predicted labels (names) from logits: argmax, sigmoid > 0.5, or per-word argmax (cut words become O)."""
    if task.task_type == "single_label":
        return [task.labels[i] for i in logits.argmax(-1)]
    if task.task_type == "multi_label":
        return [[task.labels[i] for i in np.flatnonzero(row > 0)] for row in logits]  # sigmoid(x) > 0.5 iff x > 0
    predictions = []
    best = logits.argmax(-1)
    for row, ids, n_words in zip(best, word_ids, lengths, strict=True):
        tags = ["O"] * n_words
        previous = None
        for position, w in enumerate(ids):
            if w is not None and w != previous:
                tags[w] = task.labels[row[position]]
            previous = w
        predictions.append(tags)
    return predictions


def read_records(path: str) -> tuple[list[tuple[int, dict]], str]:
    """([(line number, record)], sha256 of the file) of a .jsonl/.json/.csv/.tsv file, or of a .txt file read as one
    {"text"} record per non-empty line; every problem named with its file and line."""
    if path.lower().endswith(".txt"):
        require_file(path)
        with open(path, "rb") as f:
            raw = f.read()
        lines = enumerate(_decode(path, raw).split("\n"), start=1)
        return [(n, {"text": line.strip()}) for n, line in lines if line.strip()], hashlib.sha256(raw).hexdigest()
    raw = _read(path)
    return list(_records(path, raw)), hashlib.sha256(raw).hexdigest()


def read_texts(path: str, text_column: str = "text") -> TaskSplit:
    """Just the texts of a task file, labelled or not (queries and leakage checks need no labels). A .txt file holds
    one text per line; a token task's words are joined with spaces."""
    records, digest = read_records(path)
    column = "text" if path.lower().endswith(".txt") else text_column
    numbered = []
    for lineno, record in records:
        text = _column(path, lineno, record, column, "--text_column")
        if isinstance(text, list) and all(isinstance(w, str) for w in text):
            text = " ".join(text)
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"{path}:{lineno}: empty text in column {text_column!r}")
        numbered.append((lineno, text))
    if not numbered:
        raise UsageError(f"{path}: no texts")
    texts = [t for _, t in numbered]
    return TaskSplit(path, texts, [None] * len(texts), [n for n, _ in numbered], None, digest)
