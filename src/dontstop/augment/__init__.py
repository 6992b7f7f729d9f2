"""Augmented copies of a corpus or task file by word deletion, word swap and span cut-off, each line with provenance.

    dontstop augment --train_file train.jsonl --delete 0.15 --swap 0.1 --copies 3 --output_dir runs/augmented

Some TAPT recipes train on word-deletion variants of the task's text, and few-shot fine-tuning on copies of its
labelled examples. Each record of `--train_file` (.jsonl, .json lines, .csv, .tsv, or .txt with one text per line) is
written as it was (unless `--no_include_original`) and then `--copies` times with its text augmented, every other
column (a label, an id) kept. Words come from the segmenter of whole-word masking (`--segmenter`, `--user_dict`),
so Chinese text loses words, not characters (`augment/ops.py`). Copy c of line n is drawn from a generator seeded by
(--seed, n, c): the output is a pure function of the input and the options.

Output: `augmented.jsonl`, with three columns added to every record: `aug_source_line` (its line in the input),
`aug_copy` (0 for the original, 1.. for the copies) and `aug_operations` (words changed per operation, e.g.
"delete=3,swap=1"); `augment.json` (counts); `dontstop_config.json`; `README.md`. `dontstop pretrain --train_file`
and `dontstop finetune --train_file` read it as it is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field

from ..errors import UsageError
from ..outputs import check_output_dir, staged, write_json
from ..records import AugmentedData

logger = logging.getLogger(__name__)

PROVENANCE = ("aug_source_line", "aug_copy", "aug_operations")
RATES = ("delete", "swap", "cutoff")  # the options that are operations, applied in this order


@dataclass
class AugmentArguments:
    train_file: str | None = field(
        default=None,
        metadata={"help": "The file to augment: .jsonl, .json (lines), .csv, .tsv or .txt.", "path": "file"},
    )
    text_column: str = field(default="text", metadata={"help": "Column of the text (ignored for .txt)."})
    delete: float = field(
        default=0.0, metadata={"bounds": "[0, 1)", "help": "Drop each word with this probability (0: never)."}
    )
    swap: float = field(
        default=0.0,
        metadata={"bounds": "[0, 1)", "help": "Swap two random words max(1, int(RATE x words)) times (0: never)."},
    )
    cutoff: float = field(
        default=0.0,
        metadata={"bounds": "[0, 1)", "help": "Remove one span of max(1, int(RATE x words)) words (0: never)."},
    )
    copies: int = field(default=1, metadata={"bounds": "[1, inf)", "help": "Augmented copies of each record."})
    include_original: bool = field(default=True, metadata={"help": "Write each record unchanged before its copies."})
    segmenter: str = field(
        default="auto",
        metadata={
            "help": "Word boundaries: auto (jieba for text with Han characters), whitespace or jieba.",
            "choices": ["auto", "whitespace", "jieba"],
        },
    )
    user_dict: list[str] | None = field(
        default=None,
        metadata={"help": "jieba user dictionaries (e.g. from dontstop mine).", "action": "extend", "path": "file"},
    )
    seed: int = field(default=42, metadata={"help": "Seed of every draw."})
    output_dir: str | None = field(default=None, metadata={"help": "Where the files go.", "fingerprint": False})
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Write into a non-empty --output_dir (never done without this flag).", "fingerprint": False},
    )

    def augmentation(self):
        from .ops import Augmentation

        return Augmentation(tuple((name, getattr(self, name)) for name in RATES if getattr(self, name) > 0))


def validate(args: AugmentArguments):
    """The input's records; every problem a UsageError before anything is written."""
    from ..tasks import read_records

    if not args.train_file:
        raise UsageError("--train_file is required")
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    if not args.augmentation().steps:
        raise UsageError("nothing to do: give --delete, --swap or --cutoff a rate above 0")
    records, digest = read_records(args.train_file)
    if not records:
        raise UsageError(f"{args.train_file}: no records")
    column = "text" if args.train_file.lower().endswith(".txt") else args.text_column
    for lineno, record in records:
        if not isinstance(record.get(column), str) or not record[column].strip():
            raise UsageError(f"{args.train_file}:{lineno}: no text in column {column!r} (set --text_column)")
        taken = [key for key in PROVENANCE if key in record]
        if taken:
            raise UsageError(f"{args.train_file}:{lineno}: column {taken[0]!r} exists already (an augmented file?)")
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    return records, digest, column


def run_augment(args: AugmentArguments) -> AugmentedData:
    """Write the original records and their augmented copies; return the counts."""
    from tqdm.auto import tqdm

    from .ops import Augmenter, generator

    records, digest, column = validate(args)
    augment = Augmenter(args.augmentation(), args.segmenter, tuple(args.user_dict or []))
    changed: dict[str, int] = {}
    written = unchanged = 0
    with staged(args.output_dir) as path:
        with open(path("augmented.jsonl"), "w", encoding="utf-8") as f:
            for lineno, record in tqdm(records, desc="augmenting", unit="record"):
                rows = [(0, record[column], {})] if args.include_original else []
                for copy in range(1, args.copies + 1):
                    text, counts = augment(record[column], generator(args.seed, lineno, copy))
                    rows.append((copy, text, counts))
                    unchanged += text == record[column]
                    for name, count in counts.items():
                        changed[name] = changed.get(name, 0) + count
                for copy, text, counts in rows:
                    operations = ",".join(f"{name}={count}" for name, count in counts.items())
                    row = {**record, column: text, "aug_source_line": lineno, "aug_copy": copy}
                    f.write(json.dumps({**row, "aug_operations": operations}, ensure_ascii=False) + "\n")
                    written += 1
        report = AugmentedData(
            input_file={"path": args.train_file, "sha256": digest, "records": len(records)},
            augmentation=str(args.augmentation()),
            copies=args.copies,
            records_written=written,
            words_changed=changed,
            unchanged_copies=unchanged,
        )
        write_json(path(AugmentedData.FILE), report.to_dict())
        write_json(path("dontstop_config.json"), asdict(args))
        with open(path("README.md"), "w", encoding="utf-8") as f:
            f.write(readme(report))
    logger.info("%d records written (%d copies) to %s", written, len(records) * args.copies, args.output_dir)
    return report


def readme(report: AugmentedData) -> str:
    source = report.input_file
    changed = ", ".join(f"{n:,} words by {name}" for name, n in report.words_changed.items()) or "no words"
    return "\n".join(
        [
            f"# Augmented `{source['path']}`",
            "",
            f"- {source['records']:,} records, {report.copies} augmented copies of each ({report.augmentation}); "
            f"{report.records_written:,} records written to `augmented.jsonl`"
            + (", each original first" if report.records_written > source["records"] * report.copies else ""),
            f"- changed: {changed}; {report.unchanged_copies:,} copies equal their original (too short to change)",
            "- provenance per record: `aug_source_line` (line in the input), `aug_copy` (0 = the original), "
            "`aug_operations`",
            f"- input sha256 `{source['sha256']}`; every setting in `dontstop_config.json`",
            "",
        ]
    )


ARGUMENTS = (AugmentArguments,)
run = run_augment


EXAMPLES = """examples:
  # three word-deletion/swap variants of every TAPT text, the originals kept
  dontstop augment --train_file train.jsonl --delete 0.15 --swap 0.1 --copies 3 --output_dir runs/augmented
  dontstop pretrain --model_name_or_path roberta-base --train_file runs/augmented/augmented.jsonl \\
      --line_by_line --output_dir runs/tapt-augmented

  # Chinese: jieba words (with mined ones), so words are deleted, not characters
  dontstop augment --train_file reviews.jsonl --delete 0.1 --user_dict runs/mine/user_dict.txt \\
      --output_dir runs/reviews-augmented
"""
