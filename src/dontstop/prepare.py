"""Held-out splits for an experiment: documents held out of each corpus (seeded), never trained on by any arm.

    dontstop prepare --domain docs.jsonl --general books.jsonl --task_train train.jsonl --task_dev dev.jsonl \\
        --output_dir runs/prepared

Writes `{"text"}` JSON-lines files the other stages read: `domain_train.jsonl` and `domain_heldout.jsonl` (and the
same for `general`), `task_train.jsonl` and `task_dev.jsonl` (the task's texts, no labels), and `counts.json`.
The held-out documents are a uniform draw: a first pass counts the documents, a second writes them.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field

from .errors import UsageError
from .outputs import check_output_dir, staged, write_json
from .records import PreparedData


@dataclass
class PrepareArguments:
    domain: list[str] | None = field(
        default=None,
        metadata={"help": "Domain corpus files (any corpus format); repeat or list several.", "action": "extend",
                  "path": "file"},
    )  # fmt: skip
    general: list[str] | None = field(
        default=None,
        metadata={"help": "General corpus files, whose held-out loss measures forgetting.", "action": "extend",
                  "path": "file"},
    )  # fmt: skip
    task_train: str | None = field(default=None, metadata={"help": "The task's training file.", "path": "file"})
    task_dev: str | None = field(default=None, metadata={"help": "The task's dev file.", "path": "file"})
    text_column: str = field(default="text", metadata={"help": "Column of the text in the task files."})
    held_out_documents: int = field(
        default=100,
        metadata={
            "help": "Documents held out of each corpus (each must have more): never trained on, they measure "
            "the held-out loss of the domain and, on the general corpus, forgetting."
        },
    )
    seed: int = field(default=42, metadata={"help": "Seed of the draw of held-out documents."})
    output_dir: str | None = field(default=None, metadata={"help": "Where the files go.", "fingerprint": False})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Write into a non-empty --output_dir (never done without this flag).", "fingerprint": False},
    )


def texts_of(paths: list[str], column: str = "text"):
    from .corpus import iter_corpus_batches

    for path in paths:
        for batch in iter_corpus_batches(path, column, (), 4096, check=False):
            yield from (t for t in batch[column] if t and t.strip())


def write_split(texts, path, name: str, held_name: str | None = None, held=frozenset(), total=None) -> dict[str, int]:
    """Write `texts` into NAME.jsonl, those numbered in `held` into HELD_NAME.jsonl instead, in one pass."""
    from tqdm.auto import tqdm

    names = [name] + ([held_name] if held_name else [])
    counts = dict.fromkeys(names, 0)
    files = {n: open(path(f"{n}.jsonl"), "w", encoding="utf-8") for n in names}
    try:
        # Kept on screen when done: a bar cleared at once leaves only its first frame ("0doc") in a log file.
        for i, text in enumerate(tqdm(texts, total=total, desc=f"writing {name}", unit=" documents")):
            target = held_name if i in held else name
            files[target].write(json.dumps({"text": text}, ensure_ascii=False) + "\n")
            counts[target] += 1
    finally:
        for f in files.values():
            f.close()
    return counts


def validate(args: PrepareArguments) -> None:
    from .corpus import check_corpus_file
    from .tasks import read_texts

    if not args.domain:
        raise UsageError("--domain is required (the domain corpus)")
    if not args.task_train or not args.task_dev:
        raise UsageError("--task_train and --task_dev are required")
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    if args.held_out_documents < 0:
        raise UsageError("--held_out_documents must be 0 or more")
    for path in [*args.domain, *(args.general or [])]:
        check_corpus_file(path, "text")
    for path in (args.task_train, args.task_dev):
        read_texts(path, args.text_column)
    check_output_dir(args.output_dir, args.overwrite_output_dir)


def run_prepare(args: PrepareArguments) -> PreparedData:
    """Split each corpus into training and held-out documents, gather the task's texts; return the counts."""
    validate(args)
    counts: dict[str, int] = {}
    with staged(args.output_dir) as path:
        for corpus in ("domain", "general"):
            paths = getattr(args, corpus) or []
            if not paths:
                continue
            total = sum(1 for _ in texts_of(paths))  # a first pass only counts, so the draw is uniform
            if total <= args.held_out_documents:
                raise UsageError(
                    f"--{corpus} {', '.join(paths)}: {total} documents, so holding out --held_out_documents "
                    f"{args.held_out_documents} leaves none to train on"
                )
            held = set(random.Random(args.seed).sample(range(total), args.held_out_documents))
            counts.update(write_split(texts_of(paths), path, f"{corpus}_train", f"{corpus}_heldout", held, total))
        for name, file in (("task_train", args.task_train), ("task_dev", args.task_dev)):
            total = sum(1 for _ in texts_of([file], args.text_column))
            counts.update(write_split(texts_of([file], args.text_column), path, name, total=total))
        record = PreparedData(**counts)
        write_json(path(PreparedData.FILE), record.to_dict())
        write_json(path("dontstop_config.json"), asdict(args))
    return record


ARGUMENTS = (PrepareArguments,)
run = run_prepare


EXAMPLES = """examples:
  # hold 100 documents out of each corpus, seeded; gather the task's texts
  dontstop prepare --domain docs.jsonl --general books.jsonl --task_train train.jsonl --task_dev dev.jsonl \\
      --output_dir runs/prepared
"""
