"""`dontstop mine` against the classic notebook method: precision against gold words, speed, and memory as input grows.

    .venv/bin/python benchmarks/mine_quality.py               # full run; writes results-mine_quality-cpu.txt
    .venv/bin/python benchmarks/mine_quality.py --lines 2000  # the first 2,000 lines of each input (no results file)

Quality, on ../shared/data/zh/peoples_daily_1998.raw.txt (People's Daily, January 1998, 5.5 MB, one paragraph per
line). The gold words are the word types of the line-aligned gold file peoples_daily_1998.txt (`word/TAG` tokens,
PKU standard) of 2 or more characters, whatever they are made of (digits such as `１９９８年` included). A side's
words.tsv is read in its own order (ours sorts by score, the reference by frequency), rows of one character skipped;
precision@K is the share of its first K words that are gold words (if it has fewer than K, over those it has, and
the table says so). A second line restricts both sides to words made only of Han characters (U+4E00-U+9FFF): the
first K Han-only words of a side against the Han-only gold words. The PKU standard splits personal names (`江/nr
泽民/nr`) and some compounds, so some real words count as misses, on both sides alike. With --lines N the gold words
come from the same N gold lines.

Two sides, each in a fresh process, with its peak RSS taken from os.wait4 (the process and its descendants). Speed is
throughput over each side's own processing time, from opening the input to the last output row written, as each
side reports it (ours: `seconds.total` of its metrics.json; the reference: its `total_s`), so that the interpreter's
start-up (the reference imports nothing, ours imports numpy, tokenizers and transformers' argument parser: about
1.3 s, printed as `mine --help`'s wall time) does not decide the ratio on a 5.5 MB input; the wall time from start to
exit is printed beside it:

- dontstop: `python -m dontstop mine --corpus pd=PATH --workers 2 --max_entries 4000000` (words.tsv written);
- reference (`--run_reference`), the notebook method of Matrix67's "互联网时代的社会语言学：基于SNS的文本数据挖掘" as
  the blog posts and notebooks that implement it do, plain Python, one process: the whole file read into memory and
  split into runs of characters that are not whitespace, punctuation, symbols or control characters (Unicode
  categories Z*, P*, S*, C*); every character n-gram of length 1 to 7 of every run counted in one Counter; for every
  n-gram of length 2 to 6 seen at least 10 times, cohesion (凝固度) = the minimum over its binary splits a|b of
  p(w) / (p(a) p(b)), p = count / characters (the min over splits: the issue's "max-PMI" reads as this); left and
  right neighbour entropy (natural log) from the 3- to 7-grams, occurrences at the edge of a run having no neighbour.
  Kept: frequency >= 10, cohesion >= 50, min(left, right entropy) >= 2.0 nats. Cohesion 50 and entropy 2.0 are the
  defaults of the Matrix67 ports (Moonshile's wordseg; Tencent's new_word_extraction also has 2.0); frequency 10 is
  苏剑林's and the much-copied max_word_len = 6 notebook's (wordseg's relative 5e-5 would be 83 here and grows with
  the input). Ranked by frequency, as all of them do (score = frequency in its words.tsv; domain_ratio and
  in_base_dict empty).

Memory: ours with a fixed --max_entries on inputs of growing size, made of distinct text only: People's Daily (5.5
MB), + zh/tech.jsonl (10.0 MB), + zh/reviews/{train,dev,test,unlabeled}.jsonl (13.7 MB), one paragraph per line,
cached in benchmarks/.cache/. Repeating one text would not do: repeats add no new n-grams, so any counter stays flat.
The reference runs on every size too (--no_reference_scaling: People's Daily only). The n-grams column is, for the
reference, its distinct n-grams of lengths 1 to 7 (People's Daily alone has 4.16 M, so the default cap of 4 M binds
on every size) and, for ours, `ngram_entries` of its metrics.json when there (not part of the contract; it matched
the reference's count on a 2,000-line slice), with its `prunings` printed below. Targets: ours' precision at least
the reference's at every K, at least 5x its throughput (MB/s of UTF-8 input) on People's Daily, and ours' peak RSS
on the largest input at most 1.25x its peak on People's Daily. Two workers for ours (a 2-core machine; the reference
is one process, as the notebooks are). On People's Daily both sides run --repeats (3) times, alternating, and the
median processing time counts: this machine's speed drifts by tens of percent over minutes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections import Counter

from measure import measure  # benchmarks/ is on sys.path when a benchmark runs as a script

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data"))
RESULTS = os.path.join(HERE, "results-mine_quality-cpu.txt")
FULL = {"lines": None, "workers": 2, "max_entries": 4_000_000, "no_reference_scaling": False, "repeats": 3}
KS = (100, 500, 1000)
HEADER = ["word", "freq", "cohesion", "left_entropy", "right_entropy", "score", "domain_ratio", "in_base_dict"]
REFERENCE = {"max_len": 6, "min_freq": 10, "min_cohesion": 50.0, "min_entropy": 2.0}
TARGET_SPEEDUP, TARGET_RSS_GROWTH = 5.0, 1.25
# (label, files) of each input size; a .jsonl contributes its records' paragraphs, a .txt its lines
SIZES = [
    ("pd", ["zh/peoples_daily_1998.raw.txt"]),
    ("pd+tech", ["zh/peoples_daily_1998.raw.txt", "zh/tech.jsonl"]),
    (
        "pd+tech+reviews",
        ["zh/peoples_daily_1998.raw.txt", "zh/tech.jsonl"]
        + [f"zh/reviews/{split}.jsonl" for split in ("train", "dev", "test", "unlabeled")],
    ),
]


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_dir", default=DATA, help="the shared corpora")
    parser.add_argument("--cache_dir", default=os.path.join(HERE, ".cache"), help="where the inputs are written")
    parser.add_argument("--lines", type=int, help="only the first N lines (paragraphs) of each corpus file")
    parser.add_argument("--workers", type=int, default=FULL["workers"], help="ours' --workers")
    parser.add_argument("--max_entries", type=int, default=FULL["max_entries"], help="ours' --max_entries")
    parser.add_argument("--no_reference_scaling", action="store_true", help="the reference on People's Daily only")
    parser.add_argument(
        "--repeats", type=int, default=FULL["repeats"], help="alternating runs of both on the first input"
    )
    parser.add_argument("--run_reference", nargs=2, metavar=("CORPUS", "OUT_DIR"), help=argparse.SUPPRESS)
    # what runs as ours, for checking the harness before `dontstop mine` exists: a command prefix, split on spaces
    parser.add_argument("--ours_command", default=f"{sys.executable} -m dontstop mine", help=argparse.SUPPRESS)
    return parser


# --- the reference: what a notebook does ---------------------------------------------------------------------------


def split_runs(text: str) -> list[str]:
    """Runs of characters that are not whitespace, punctuation, symbols or control characters."""
    separators = "".join(c for c in set(text) if c.isspace() or unicodedata.category(c)[0] in "ZPSC")
    return [run for run in re.split(f"[{re.escape(separators)}]+", text) if run] if separators else [text]


def entropy(neighbours: dict[str, int]) -> float:
    total = sum(neighbours.values())
    return -sum(c / total * math.log(c / total) for c in neighbours.values())


def run_reference(corpus: str, out_dir: str) -> None:
    max_len, min_freq = REFERENCE["max_len"], REFERENCE["min_freq"]
    timings, tick = {}, time.perf_counter()
    started = tick
    with open(corpus, encoding="utf-8") as f:
        runs = split_runs(f.read())
    counts: Counter[str] = Counter()
    for run in runs:  # every n-gram of length 1..max_len + 1 (the longest ones give the neighbours)
        n = len(run)
        counts.update(run[i : i + k] for i in range(n) for k in range(1, min(max_len + 1, n - i) + 1))
    timings["count_s"], tick = time.perf_counter() - tick, time.perf_counter()
    chars = sum(len(run) for run in runs)
    cohesion = {}
    for word, freq in counts.items():
        if 2 <= len(word) <= max_len and freq >= min_freq:
            ratio = min(freq * chars / (counts[word[:i]] * counts[word[i:]]) for i in range(1, len(word)))
            if ratio >= REFERENCE["min_cohesion"]:
                cohesion[word] = ratio
    timings["cohesion_s"], tick = time.perf_counter() - tick, time.perf_counter()
    left: dict[str, dict[str, int]] = {word: {} for word in cohesion}
    right: dict[str, dict[str, int]] = {word: {} for word in cohesion}
    for gram, freq in counts.items():
        if len(gram) >= 3:
            if gram[1:] in left:
                left[gram[1:]][gram[0]] = left[gram[1:]].get(gram[0], 0) + freq
            if gram[:-1] in right:
                right[gram[:-1]][gram[-1]] = right[gram[:-1]].get(gram[-1], 0) + freq
    rows = []
    for word, ratio in cohesion.items():
        h_left = entropy(left[word]) if left[word] else 0.0
        h_right = entropy(right[word]) if right[word] else 0.0
        if min(h_left, h_right) >= REFERENCE["min_entropy"]:
            rows.append((word, counts[word], ratio, h_left, h_right))
    rows.sort(key=lambda row: (-row[1], row[0]))
    timings["entropy_s"] = time.perf_counter() - tick
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "words.tsv"), "w", encoding="utf-8") as f:
        f.write("\t".join(HEADER) + "\n")
        for word, freq, ratio, h_left, h_right in rows:
            f.write(f"{word}\t{freq}\t{ratio:.1f}\t{h_left:.4f}\t{h_right:.4f}\t{freq}\t\t\n")
    timings["total_s"] = time.perf_counter() - started  # reading to the last row written, as ours reports it
    report = {"ngrams": len(counts), "characters": chars, "after_cohesion": len(cohesion), "words": len(rows)}
    with open(os.path.join(out_dir, "reference.json"), "w", encoding="utf-8") as f:
        json.dump({**report, "timings": timings}, f)


# --- inputs and gold -----------------------------------------------------------------------------------------------


def paragraphs(path: str, limit: int | None):
    """A .txt file's lines, or a .jsonl file's records' paragraphs; the first `limit` of them, empty ones skipped."""
    n = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            for text in json.loads(line)["text"].split("\n") if path.endswith(".jsonl") else [line.rstrip("\n")]:
                if text.strip():
                    if limit is not None and n == limit:
                        return
                    n += 1
                    yield text


def build_input(opts, label: str, files: list[str]) -> str:
    """The input file of one size: its corpora's paragraphs, one a line (People's Daily itself when whole)."""
    if len(files) == 1 and opts.lines is None:
        return os.path.join(opts.data_dir, files[0])
    path = os.path.join(opts.cache_dir, f"mine_{label}{'' if opts.lines is None else f'_first{opts.lines}'}.txt")
    if not os.path.exists(path):
        os.makedirs(opts.cache_dir, exist_ok=True)
        with open(f"{path}.tmp", "w", encoding="utf-8") as out:
            for name in files:
                for text in paragraphs(os.path.join(opts.data_dir, name), opts.lines):
                    out.write(text + "\n")
        os.replace(f"{path}.tmp", path)
    return path


def is_han(word: str) -> bool:
    return all("\u4e00" <= c <= "\u9fff" for c in word)


def gold_words(path: str, limit: int | None) -> set[str]:
    """Word types of 2 or more characters in the first `limit` lines of the gold file (`word/TAG` tokens)."""
    words = set()
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if limit is not None and i == limit:
                break
            words.update(token.rsplit("/", 1)[0] for token in line.split())
    return {w for w in words if len(w) >= 2}


def read_words(path: str) -> list[str]:
    """words.tsv's multi-character words, in its order."""
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header[:1] != ["word"]:
            sys.exit(f"{path}: expected a header starting with 'word', got {header}")
        return [w for line in f if len(w := line.split("\t", 1)[0].rstrip("\n")) >= 2]


def precision(words: list[str], gold: set[str], k: int) -> tuple[float, int]:
    top = words[:k]
    return (sum(w in gold for w in top) / len(top) if top else 0.0), len(top)


# --- measuring -----------------------------------------------------------------------------------------------------


def ours_command(opts) -> list[str]:
    command = opts.ours_command.split()
    return command if os.path.isabs(command[0]) else [sys.executable, *command]


def check_ours(opts) -> float:
    """`mine --help` must work; its wall time is ours' start-up."""
    tick = time.perf_counter()
    done = subprocess.run([*ours_command(opts), "--help"], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(
            f"`{' '.join(ours_command(opts))} --help` failed ({done.returncode}): is the `dontstop mine` stage there "
            f"yet?\n{(done.stderr or done.stdout)[-2000:]}"
        )
    return time.perf_counter() - tick


def run_ours(opts, corpus: str, work: str, name: str) -> dict:
    out = os.path.join(work, name)
    cmd = [*ours_command(opts), "--corpus", f"pd={corpus}", "--output_dir", out, "--overwrite_output_dir"]
    cmd += ["--workers", str(opts.workers), "--max_entries", str(opts.max_entries)]
    run = measure(cmd, f"{out}.log")
    run["words"] = read_words(os.path.join(out, "words.tsv"))
    with open(os.path.join(out, "metrics.json"), encoding="utf-8") as f:
        run["metrics"] = json.load(f)
    run["processing"] = run["metrics"]["seconds"]["total"]
    return run


def run_theirs(corpus: str, work: str, name: str) -> dict:
    out = os.path.join(work, name)
    run = measure([sys.executable, os.path.abspath(__file__), "--run_reference", corpus, out], f"{out}.log")
    run["words"] = read_words(os.path.join(out, "words.tsv"))
    with open(os.path.join(out, "reference.json"), encoding="utf-8") as f:
        run["report"] = json.load(f)
    run["processing"] = run["report"]["timings"]["total_s"]
    return run


def main(argv: list[str]) -> int:
    opts = make_parser().parse_args(argv)
    if opts.run_reference:
        run_reference(*opts.run_reference)
        return 0
    full = all(getattr(opts, key) == value for key, value in FULL.items())
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    startup = check_ours(opts)
    say(f"python {platform.python_version()}  cpus {os.cpu_count()}  load average {os.getloadavg()[0]:.1f} at start")
    inputs = [(label, build_input(opts, label, files)) for label, files in SIZES]
    sizes = {label: os.path.getsize(path) for label, path in inputs}
    for label, path in inputs:
        say(f"input {label}: {os.path.relpath(path)}, {sizes[label] / 1e6:.1f} MB")
    gold = gold_words(os.path.join(opts.data_dir, "zh", "peoples_daily_1998.txt"), opts.lines)
    gold_han = {w for w in gold if is_han(w)}
    say(f"gold: {len(gold):,} word types of >= 2 characters ({len(gold_han):,} made only of Han characters)")
    say(
        f"ours: --workers {opts.workers} --max_entries {opts.max_entries:,}; start-up (`mine --help`) {startup:.1f} s"
        f", included in its wall time"
    )
    say(
        f"reference: n-grams 1..{REFERENCE['max_len'] + 1}, freq >= {REFERENCE['min_freq']}, cohesion >= "
        f"{REFERENCE['min_cohesion']:g}, min(left, right entropy) >= {REFERENCE['min_entropy']:g} nats, by frequency"
    )
    say()

    ours, theirs = {}, {}  # size label -> run
    with tempfile.TemporaryDirectory(dir=opts.cache_dir) as work:
        for i, (label, path) in enumerate(inputs):
            # The first input decides the speed target: both sides run --repeats times, alternating (this machine's
            # speed drifts by tens of percent over minutes), and the run with the median processing time counts.
            runs: dict[str, list] = {"ours": [], "theirs": []}
            for r in range(opts.repeats if i == 0 else 1):
                runs["ours"].append(run_ours(opts, path, work, f"ours_{label}_{r}"))
                if i == 0 or not opts.no_reference_scaling:
                    runs["theirs"].append(run_theirs(path, work, f"reference_{label}_{r}"))
            for side, store in (("ours", ours), ("theirs", theirs)):
                if runs[side]:
                    ordered = sorted(runs[side], key=lambda run: run["processing"])
                    store[label] = ordered[len(ordered) // 2]
                    if len(ordered) > 1:
                        times = ", ".join(f"{run['processing']:.2f}" for run in runs[side])
                        say(f"{'dontstop' if side == 'ours' else 'reference'} on {label}, processing s: {times}")
    sides = [("dontstop mine", ours), ("reference (notebook)", theirs)]
    rows = [(side, label, runs[label]) for label, _ in inputs for side, runs in sides if label in runs]

    say(
        f"{'':<22}{'input':<17}{'MB':>6}{'wall s':>9}{'processing s':>14}{'MB/s':>8}{'peak RSS MB':>13}{'words':>9}"
        f"{'n-grams':>12}"
    )
    for side, label, run in rows:
        mb = sizes[label] / 1e6
        ngrams = run["report"]["ngrams"] if "report" in run else run.get("metrics", {}).get("ngram_entries")
        ngrams = "" if ngrams is None else f"{ngrams:,}"
        say(
            f"{side:<22}{label:<17}{mb:>6.1f}{run['seconds']:>9.1f}{run['processing']:>14.2f}"
            f"{mb / run['processing']:>8.2f}"
            f"{run['peak_rss_bytes'] / 2**20:>13,.0f}{len(run['words']):>9,}{ngrams:>12}"
        )
    for label, run in ours.items():
        if "prunings" in run.get("metrics", {}):
            say(f"dontstop on {label}: {run['metrics']['prunings']:,} prunings (lossy counting under the cap)")
    for label, run in theirs.items():
        timings = ", ".join(f"{key} {value:.1f}" for key, value in run["report"]["timings"].items())
        say(f"reference on {label}: {run['report']['after_cohesion']:,} pass freq and cohesion; {timings}")
    say()

    first, last = inputs[0][0], inputs[-1][0]
    say(f"{'precision on ' + first:<34}" + "".join(f"{f'@{k}':>14}" for k in KS) + "   ((n): only n words)")
    table = {}
    for side, runs in sides:
        words = runs[first]["words"]
        for kind, ws, gs in (("all gold", words, gold), ("Han only", [w for w in words if is_han(w)], gold_han)):
            cells = [precision(ws, gs, k) for k in KS]
            table[side, kind] = [p for p, _ in cells]
            text = "".join(
                f"{f'{p:.3f}' + (f' ({n})' if n < k else ''):>14}" for (p, n), k in zip(cells, KS, strict=True)
            )
            say(f"  {side:<22}{kind:<10}{text}")
    say()

    verdict = {True: "PASS", False: "FAIL"}
    (ours_side, _), (their_side, _) = sides
    for kind in ("all gold", "Han only"):
        for k, p_ours, p_theirs in zip(KS, table[ours_side, kind], table[their_side, kind], strict=True):
            say(f"RATIO precision@{k} ({kind}) dontstop - reference: {p_ours - p_theirs:+.3f}")
    passed = all(a >= b for a, b in zip(table[ours_side, "all gold"], table[their_side, "all gold"], strict=True))
    say(f"target precision >= reference at every K (all gold): {verdict[passed]}")
    for label, run in theirs.items():
        say(f"RATIO dontstop/reference throughput on {label}: {run['processing'] / ours[label]['processing']:.2f}")
        say(f"  (wall time, start-up included: {run['seconds'] / ours[label]['seconds']:.2f})")
    speedup = theirs[first]["processing"] / ours[first]["processing"]
    ok = verdict[speedup >= TARGET_SPEEDUP]
    say(f"target throughput >= {TARGET_SPEEDUP:g}x the reference on {first}: {speedup:.2f}x {ok}")
    input_growth = sizes[last] / sizes[first]
    for side, runs in sides:
        if last in runs:
            growth = runs[last]["peak_rss_bytes"] / runs[first]["peak_rss_bytes"]
            say(f"RATIO {side} peak RSS {last}/{first} (input {input_growth:.2f}x): {growth:.2f}")
    growth = ours[last]["peak_rss_bytes"] / ours[first]["peak_rss_bytes"]
    ok = verdict[growth <= TARGET_RSS_GROWTH]
    say(f"target dontstop peak RSS growth {last}/{first} <= {TARGET_RSS_GROWTH:g}x: {growth:.2f}x {ok}")
    if full:
        with open(RESULTS, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
