"""What `dontstop clean` writes: `label_issues.jsonl`, `probabilities.npy`, `clean.json`, `README.md` and, with
`--write_clean`, the cleaned copy of the file. All of it at once (`outputs.staged`), never the input."""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from ..outputs import staged, write_json
from ..records import LabelIssues
from ..tasks import csv_dialect
from .args import cleaned_name


def cleaned_text(path: str, split, changes: dict[int, str | None], label_column: str) -> tuple[str, dict]:
    """The file's text with each example in `changes` (index -> new label, or None to remove it) changed; every
    other byte as it was in a JSON-lines file, every other row as it was in a csv/tsv file."""
    with open(path, encoding="utf-8-sig") as f:
        text = f.read()
    removed = sum(label is None for label in changes.values())
    counts = {"removed": removed, "relabelled": len(changes) - removed}
    if os.path.splitext(path)[1].lower() in (".jsonl", ".json"):
        lines = text.split("\n")
        for i, label in changes.items():
            at = split.lines[i] - 1
            lines[at] = None if label is None else relabelled(lines[at], label_column, label)
        return "\n".join(line for line in lines if line is not None), counts
    reader = csv.DictReader(io.StringIO(text, newline=""), **csv_dialect(path))
    out = io.StringIO(newline="")
    writer = csv.DictWriter(out, reader.fieldnames, lineterminator="\n", **csv_dialect(path))
    writer.writeheader()
    for i, row in enumerate(reader):
        if i in changes and changes[i] is None:
            continue
        writer.writerow({**row, label_column: changes[i]} if i in changes else row)
    return out.getvalue(), counts


def relabelled(line: str, label_column: str, label: str) -> str:
    """A JSON line with its label replaced, a number kept a number (the file's labels stay of one type)."""
    record = json.loads(line)
    given = record[label_column]
    numeric = isinstance(given, (int, float)) and not isinstance(given, bool)
    record[label_column] = type(given)(float(label)) if numeric else label
    return json.dumps(record, ensure_ascii=False)


def shorten(text: str, width: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def readme(record: LabelIssues, rows: list[dict], top: int) -> str:
    n, flagged = record.train_file["examples"], record.issues
    how = {
        "embed": f"a logistic regression on frozen, mean-pooled embeddings of `{record.model}`",
        "finetune": f"`{record.model}` fine-tuned on the other folds (`folds/`)",
    }[record.mode]
    quality = record.out_of_fold or {}
    found = record.found if record.found is not None else flagged
    kept = f"; the {flagged:,} most suspect are kept (`--max_issues`)" if found != flagged else ""
    lines = [
        f"# Label issues in `{record.train_file['path']}`",
        "",
        f"{n:,} examples, {len(record.labels)} classes. Each example's class probabilities come from {how}, trained "
        f"without it ({record.folds}-fold, stratified). Confident learning (cleanlab, `filter_by="
        f"{record.filter_by}`) flags {found:,} of them ({100 * found / n:.1f}%){kept}: **{flagged:,} flagged**, "
        "ranked by self-confidence, the probability given to the label the file gives, lowest first.",
        "",
        f"Out of fold, the model agrees with the given labels on {100 * quality.get('accuracy', 0):.1f}% of the "
        f"examples (macro-F1 {100 * quality.get('macro_f1', 0):.1f}%, log-loss {quality.get('log_loss', 0):.2f}): "
        "the weaker it is, the more of the flags are its own mistakes, or classes that overlap, rather than wrong "
        "labels."
        + (
            " A fifth of the file or more is flagged: read the top of the list, and keep only the most suspect "
            "(`--max_issues 0.05` keeps the worst 5%) before removing anything."
            if not kept and found >= 0.2 * n
            else ""
        ),
        "",
        f"## The {min(top, flagged)} most suspect",
        "",
        "| rank | line | given | suggested (p) | p(given) | text |",
        "|--:|--:|---|---|--:|---|",
    ]
    for row in rows[:top]:
        lines.append(
            f"| {row['rank']} | {row['line']} | {cell(row['given_label'])} | {cell(row['suggested_label'])} "
            f"({row['suggested_probability']:.2f}) | {row['score']:.3f} | {cell(shorten(row['text']))} |"
        )
    lines += [
        "",
        "## Per class",
        "",
        "Flagged: examples given the class that were flagged. Estimated noise: cleanlab's estimate of P(true class ≠ "
        "k | given class k) from the confident joint, and of the examples of class k given another label "
        "(inverse).",
        "",
        "| class | examples | flagged | estimated noise | estimated inverse noise |",
        "|---|--:|--:|--:|--:|",
    ]
    for name, c in sorted(record.per_class.items(), key=lambda item: -item[1]["noise"]):
        lines.append(
            f"| {cell(name)} | {c['examples']:,} | {c['flagged']:,} | {100 * c['noise']:.1f}% | "
            f"{100 * c['inverse_noise']:.1f}% |"
        )
    lines += [
        "",
        "## Files",
        "",
        "- `label_issues.jsonl`: every flagged example, most suspect first (rank, line, text, given and suggested "
        "label, p(given) as `score`);",
        "- `probabilities.npy`: the out-of-fold probabilities, one row per example in file order, one column per "
        "class in `clean.json`'s `labels` order;",
        "- `clean.json`: these numbers and the settings.",
    ]
    if record.cleaned_file:
        c = record.cleaned
        lines.append(
            f"- `{record.cleaned_file}`: the file with the flagged examples {c['action']}d ({c['removed']:,} removed, "
            f"{c['relabelled']:,} relabelled; {c['examples']:,} examples left). The input was not changed."
        )
    return "\n".join(lines) + "\n"


def write_outputs(output_dir: str, record: LabelIssues, rows: list[dict], probabilities, args, split, changes):
    """Every file of the run, all or nothing; `changes` (example index -> new label, None: removed) make the
    cleaned copy, with --write_clean."""
    with staged(output_dir) as path:
        with open(path("label_issues.jsonl"), "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        with open(path("probabilities.npy"), "wb") as f:
            np.save(f, probabilities.astype(np.float32))
        if args.write_clean:
            text, counts = cleaned_text(args.train_file, split, changes, args.label_column)
            name = cleaned_name(args.train_file)
            with open(path(name), "w", encoding="utf-8") as f:
                f.write(text)
            record.cleaned_file = name
            record.cleaned = {"action": args.clean_action, "examples": len(split) - counts["removed"], **counts}
        write_json(path(LabelIssues.FILE), record.to_dict())
        with open(path("README.md"), "w", encoding="utf-8") as f:
            f.write(readme(record, rows, args.top))
