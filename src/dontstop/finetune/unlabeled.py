"""Unlabeled text for the methods that read it (UDA, self-training): read once per run behind `select`'s leakage
guard, then drawn per seed.

A run's unlabeled text is every text of `--unlabeled_file` that equals no dev or test text (NFKC, case-folded,
whitespace collapsed, as `dontstop select` compares) and no text read before it; a file that is the dev or test file,
or that has nothing else, is refused. Each seed then adds, with `--unlabeled_from_train`, the training texts its
few-shot draw left out (first, with their gold labels, which only score pseudo-labels), leaves out the texts it drew
as labelled examples, and with `--unlabeled_limit N` keeps a draw of N seeded by the seed: every arm of a paired
comparison reads the same unlabeled texts at the same seed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from ..corpus import check_corpus_file, iter_corpus_batches
from ..errors import UsageError
from ..fingerprint import file_sha256
from ..select.pools import Guard, PoolStats, fingerprint
from ..tasks import Task

logger = logging.getLogger(__name__)


@dataclass
class UnlabeledPool:
    """One seed's unlabeled texts; `gold` holds the label where it is known (a training text the draw left out)."""

    texts: list[str]
    gold: list[str | None]
    origins: list[str]  # "train", or the file the text came from

    def __len__(self) -> int:
        return len(self.texts)

    def record(self) -> dict:
        return {"texts": len(self.texts), "from_train": self.origins.count("train"), "gold_known": self.known}

    @property
    def known(self) -> int:
        return sum(g is not None for g in self.gold)


@dataclass
class UnlabeledSource:
    """A run's unlabeled text: the files' texts that passed the guard, and what the seeds add or take away."""

    texts: list[str] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)  # the texts' fingerprints
    origins: list[str] = field(default_factory=list)
    forbidden: dict[int, str] = field(default_factory=dict)  # fingerprint of a dev/test text -> its split
    files: list[PoolStats] = field(default_factory=list)
    from_train: bool = False
    limit: int | None = None

    def record(self) -> dict:
        """For results.json: the files, what each gave, and how the seeds draw."""
        return {
            "files": [
                {"path": s.path, "documents": s.documents, "empty": s.empty, "leaked": s.leaked,
                 "duplicates": s.duplicates, "kept": s.selected}
                for s in self.files
            ],
            "from_train": self.from_train,
            "limit": self.limit,
        }  # fmt: skip

    def for_seed(self, task: Task, drawn, seed: int) -> UnlabeledPool:
        """The unlabeled texts of the seed whose labelled examples are the training rows `drawn`."""
        drawn = {int(i) for i in drawn}
        taken = {fingerprint(task.train.texts[i]) for i in drawn}
        texts, gold, origins = [], [], []
        if self.from_train:
            for i, (text, label) in enumerate(zip(task.train.texts, task.train.labels, strict=True)):
                key = fingerprint(text)
                if i in drawn or key in taken or key in self.forbidden:
                    continue
                taken.add(key)
                texts.append(text)
                gold.append(label)
                origins.append("train")
        for text, key, origin in zip(self.texts, self.keys, self.origins, strict=True):
            if key not in taken:
                texts.append(text)
                gold.append(None)
                origins.append(origin)
        if self.limit is not None and len(texts) > self.limit:
            keep = np.sort(np.random.default_rng([seed, 1]).choice(len(texts), self.limit, replace=False))
            texts, gold, origins = ([values[i] for i in keep] for values in (texts, gold, origins))
        if not texts:
            raise UsageError("no unlabeled text left for this seed: every text was drawn as a labelled example")
        return UnlabeledPool(texts, gold, origins)


def load_unlabeled(task_args, task: Task) -> UnlabeledSource:
    """Read --unlabeled_file behind the leakage guard; every problem a UsageError naming the option."""
    guard = Guard()
    evaluated = [(name, split) for name, split in (("dev", task.dev), ("test", task.test)) if split is not None]
    for name, split in evaluated:
        guard.forbid(split.texts, name)
    source = UnlabeledSource(
        forbidden=dict(guard.forbidden), from_train=task_args.unlabeled_from_train, limit=task_args.unlabeled_limit
    )
    for path in task_args.unlabeled_file or []:
        try:
            check_corpus_file(path, task_args.unlabeled_text_column)
        except UsageError as e:
            raise UsageError(f"--unlabeled_file {e}") from None
        digest = file_sha256(path) if os.path.isfile(path) else None  # (a saved dataset is a directory)
        for name, split in evaluated:
            if digest == split.sha256 and split.held_out is None:  # (a dev split held out shares its file's hash)
                raise UsageError(f"--unlabeled_file {path}: the {name} file ({split.path}), never trained on")
        stats = PoolStats(path, path)
        for batch in iter_corpus_batches(path, task_args.unlabeled_text_column, (), 4096, check=False):
            for text in batch["text"]:
                stats.documents += 1
                if not text.strip():
                    stats.empty += 1
                elif guard.admit(text, stats):
                    source.texts.append(text)
                    source.keys.append(fingerprint(text))
                    source.origins.append(path)
                    stats.selected += 1
        if not stats.selected:
            why = ", ".join(f"{n} equal a {split} text" for split, n in stats.leaked.items()) or "all repeats"
            raise UsageError(f"--unlabeled_file {path}: no text left to use ({why})")
        if stats.leaked:
            logger.warning(
                "--unlabeled_file %s: %s left out (equal to an evaluation text)",
                path, ", ".join(f"{n} {split} texts" for split, n in stats.leaked.items()),
            )  # fmt: skip
        source.files.append(stats)
    return source
