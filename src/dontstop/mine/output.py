"""What `dontstop mine` writes: words.tsv, user_dict.txt, lexicon.txt, metrics.json and README.md, all or nothing."""

from __future__ import annotations

import time

import numpy as np

from ..outputs import staged, write_json
from ..records import MinedWords
from .args import MineArguments

# cohesion is the weakest split's PMI (what the thresholds and the score use), cohesion_max the strongest one's
COLUMNS = (
    "word", "freq", "cohesion", "left_entropy", "right_entropy", "score", "domain_ratio", "in_base_dict",
    "cohesion_max",
)  # fmt: skip


def column_cells(values: list) -> list[str]:
    """One TSV column: empty for a missing value (None or NaN), 0/1 for a flag, 4 decimals for a real number. The
    type is read off the first present value: a column holds one type."""
    present = next((v for v in values if v is not None), None)
    if present is None:
        return [""] * len(values)
    if isinstance(present, (bool, np.bool_)):
        return ["" if v is None else "1" if v else "0" for v in values]
    if isinstance(present, (float, np.floating)):
        return ["" if v is None or v != v else f"{v:.4f}" for v in values]
    return ["" if v is None else str(v) for v in values]


def tsv_lines(rows: list[dict], names) -> list[str]:
    columns = [column_cells([r[c] for r in rows]) for c in names]
    return ["\t".join(names)] + ["\t".join(cells) for cells in zip(*columns, strict=True)]


def write_outputs(args: MineArguments, rows: list[dict], metrics: MinedWords, started: float, tail=None) -> None:
    def write(path: str, lines: list[str]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))

    with staged(args.output_dir) as path:
        write(path("words.tsv"), tsv_lines(rows, COLUMNS))
        if tail is not None:
            from ..knowledge.longtail import COLUMNS as TAIL_COLUMNS

            write(path("long_tail.tsv"), tsv_lines(tail, TAIL_COLUMNS))
        # jieba's user-dictionary format without a frequency: jieba then gives each word one just high enough to be
        # cut whole, which is what whole-word masking needs (a corpus count would be on another scale than its own).
        # The format cannot hold a phrase: in space-delimited text only single words go in.
        write(path("user_dict.txt"), [r["word"] for r in rows if " " not in r["word"]])
        write(path("lexicon.txt"), [r["word"] for r in rows])
        write_readme(path("README.md"), rows, metrics.to_dict(), tail)
        seconds = time.perf_counter() - started
        metrics.seconds["total"] = round(seconds, 2)
        metrics.megabytes_per_second = round(metrics.megabytes / seconds, 3)
        write_json(path(MinedWords.FILE), metrics.to_dict())


def write_readme(path: str, rows: list[dict], metrics: dict, tail=None) -> None:
    s = metrics["settings"]
    unit = "characters" if metrics["language"] == "chinese" else "words"
    lines = [
        "# Mined words",
        "",
        f"Made by `dontstop mine` from {', '.join(c['name'] for c in metrics['corpora'])} "
        f"({metrics['megabytes']:.1f} MB, {metrics['tokens']:,} {unit})"
        + (f" against {', '.join(c['name'] for c in metrics['against'])}" if metrics["against"] else "")
        + f": {len(rows):,} candidates with frequency >= {s['min_freq']}, cohesion >= {s['min_cohesion']} nats and "
        f"branching entropy >= {s['min_entropy']} nats on both sides, ranked by "
        "log(freq) x min(left, right entropy) x min(cohesion, cap)"
        + (" x log(domain ratio)" if metrics["against"] else "")
        + ".",
        "",
        "- `words.tsv`: every candidate with its statistics, best first.",
        "- `user_dict.txt`: the words for jieba: `dontstop pretrain --masking word --user_dict user_dict.txt`.",
        "- `lexicon.txt`: the words as entities: `dontstop pretrain --masking entity --lexicon lexicon.txt`.",
        "- `dontstop vocab extend --words words.tsv --top N` adds the best N to a model's vocabulary.",
        "",
    ]
    if metrics["count_error_bound"]:
        lines += [
            f"Counting held at most {s['max_entries']:,} n-grams and pruned {metrics['prunings']} times: a count "
            f"may be short by up to {metrics['count_error_bound']:,}.",
            "",
        ]
    header = "| word | freq | cohesion | left H | right H | score |" + (
        " domain ratio |" if metrics["against"] else ""
    )
    lines += [header, "|---|---:|---:|---:|---:|---:|" + ("---:|" if metrics["against"] else "")]
    for r in rows[:30]:
        line = f"| {r['word']} | {r['freq']:,} | {column_cells([r['cohesion']])[0]} | {r['left_entropy']:.2f} | "
        line += f"{r['right_entropy']:.2f} | {r['score']:.2f} |"
        if metrics["against"]:
            line += f" {r['domain_ratio']:.1f} |"
        lines.append(line)
    lines += long_tail_lines(tail, metrics)
    lines += ["", "Every setting and the candidate funnel per length are in `metrics.json`."]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def long_tail_lines(tail, metrics: dict) -> list[str]:
    """README's section on long_tail.tsv (`--long_tail`)."""
    if tail is None:
        return []
    report, s = metrics["long_tail"], metrics["settings"]
    glossary = f", {report['in_glossary']} of them defined in {s['glossary']}" if s.get("glossary") else ""
    lines = [
        "",
        "## The long tail",
        "",
        f"`long_tail.tsv`: the best {report['scored']:,} words scored by how likely {s['model_name_or_path']} is "
        f"not to know them ({report['written']:,} written{glossary}): rarity (log domain ratio), pieces (tokens the "
        f"word is cut into) and mlm_loss (masked-LM loss per piece, all pieces masked together, over up to "
        f"{report['contexts_per_word']} occurrences; head: {report['head']}); score = the mean of their percentile "
        "ranks. `dontstop pretrain --glossary FILE --knowledge_terms long_tail.tsv` attaches knowledge to these.",
        "",
        "| word | freq | rarity | pieces | mlm loss | score |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in tail[:30]:
        loss = "" if r["mlm_loss"] is None else f"{r['mlm_loss']:.2f}"
        cells = [r["word"], f"{r['freq']:,}", f"{r['rarity']:.2f}", str(r["pieces"]), loss, f"{r['score']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines
