"""Contrast mining: does `dontstop mine --against` find the words that are new in a corpus? Against the classic
notebook method with an "absent from the reference" filter, in one run.

    .venv/bin/python benchmarks/mine_contrast.py     # writes results-mine_contrast-cpu.txt

People's Daily (../shared/data/zh, January 1998, one paragraph per line in date order) cut in two halves by lines: the
second half is the new corpus, the first the reference. The gold new words: word types of the PKU gold segmentation of
2 or more characters that occur at least 5 times in the second half and never in the first (as gold tokens), none of
whose occurrences is tagged `nr` (personal names, which PKU splits into surname and given name: 江/nr 泽民/nr, so the
names a miner finds could never count). Recall@500: the share of the gold new words among a side's first 500
multi-character words. Also printed: precision@500 (the share of those 500 that are gold new words) and how many of
the 500 begin or end with punctuation or a symbol (Unicode categories P* and S*).

Sides:
- `dontstop mine --corpus new=SECOND --against old=FIRST`: the default ranking, base score x log domain ratio;
- the same with `--max_against_count 0`: only candidates absent from the reference, in the same ranking;
- the classic notebook method (`mine_quality.py --run_reference`: every n-gram in one Counter, min-split cohesion
  ratio, entropy, ranked by frequency) on the second half, keeping the words that do not occur in the first half's
  text, at two settings: its usual defaults (frequency >= 10, cohesion >= 50, entropy >= 2 nats: a word seen 5 times
  can hardly have the entropy, so it finds almost no new word) and ours (frequency >= 5, entropy >= 1 nat, the
  cohesion ratio kept at 50), the fair comparison.
The same with the halves swapped (what is new in the first half against the second) checks the ranking was not
fitted to one direction.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import unicodedata

import mine_quality  # benchmarks/ is on sys.path when a benchmark runs as a script

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "zh"))
RESULTS = os.path.join(HERE, "results-mine_contrast-cpu.txt")
K = 500
CLASSIC = {
    "classic defaults": {"min_freq": 10, "min_cohesion": 50.0, "min_entropy": 2.0},
    "classic, our thresholds": {"min_freq": 5, "min_cohesion": 50.0, "min_entropy": 1.0},
}


def halves() -> tuple[list[str], list[str]]:
    raw = open(os.path.join(DATA, "peoples_daily_1998.raw.txt"), encoding="utf-8").read().split("\n")
    gold = open(os.path.join(DATA, "peoples_daily_1998.txt"), encoding="utf-8").read().split("\n")
    raw, gold = raw[: len(raw) - (raw[-1] == "")], gold[: len(gold) - (gold[-1] == "")]
    return raw, gold


def gold_counts(lines: list[str]) -> tuple[collections.Counter, dict[str, set]]:
    counts, tags = collections.Counter(), collections.defaultdict(set)
    for line in lines:
        for token in line.split():
            word, _, tag = token.rpartition("/")
            counts[word] += 1
            tags[word].add(tag)
    return counts, tags


def new_words(new_gold: list[str], old_gold: list[str]) -> set[str]:
    new, tags = gold_counts(new_gold)
    old, _ = gold_counts(old_gold)
    return {w for w, c in new.items() if len(w) >= 2 and c >= 5 and old[w] == 0 and "nr" not in tags[w]}


def edged(word: str) -> bool:
    return any(unicodedata.category(c)[0] in "PS" for c in (word[0], word[-1]))


def ours(new: str, old: str, out: str, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "dontstop", "mine", "--corpus", f"new={new}", "--against", f"old={old}",
               "--output_dir", out, "--overwrite_output_dir", "--workers", "2", *extra]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed: {done.stderr[-2000:]}")
    return mine_quality.read_words(os.path.join(out, "words.tsv"))


def classic(new: str, old_text: str, out: str, settings: dict) -> list[str]:
    mine_quality.REFERENCE.update(settings)
    mine_quality.run_reference(new, out)
    return [w for w in mine_quality.read_words(os.path.join(out, "words.tsv")) if w not in old_text]


def direction(say, work: str, new_lines: list[str], old_lines: list[str], gold: set[str], label: str) -> dict:
    new, old = os.path.join(work, f"{label}-new.txt"), os.path.join(work, f"{label}-old.txt")
    for path, lines in ((new, new_lines), (old, old_lines)):
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    old_text = "\n".join(old_lines)
    sides = {
        "dontstop mine --against": ours(new, old, os.path.join(work, f"{label}-ours")),
        "dontstop mine --against --max_against_count 0": ours(
            new, old, os.path.join(work, f"{label}-ours-new"), "--max_against_count", "0"
        ),
    }
    for name, settings in CLASSIC.items():
        sides[f"{name} + absent filter"] = classic(new, old_text, os.path.join(work, f"{label}-{name}"), settings)
    say(f"{label}: {len(gold)} gold new words")
    say(f"  {'side':<50}{'recall@500':>12}{'precision@500':>15}{'punct-edged':>13}{'words':>8}")
    recall = {}
    for name, words in sides.items():
        top = words[:K]
        hits = sum(w in gold for w in top)
        recall[name] = hits / len(gold)
        say(f"  {name:<50}{recall[name]:>12.3f}{hits / max(len(top), 1):>15.3f}{sum(map(edged, top)):>13}"
            f"{len(words):>8,}")  # fmt: skip
    return recall


def main() -> int:
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    raw, gold = halves()
    half = len(raw) // 2
    say(f"People's Daily: {len(raw):,} lines; first half lines 1-{half:,}, second half {half + 1:,}-{len(raw):,}")
    with tempfile.TemporaryDirectory() as work:
        forward = direction(say, work, raw[half:], raw[:half], new_words(gold[half:], gold[:half]), "second vs first")
        say()
        backward = direction(say, work, raw[:half], raw[half:], new_words(gold[:half], gold[half:]), "first vs second")
    say()
    fair = "classic, our thresholds + absent filter"
    for label, recall in (("second vs first", forward), ("first vs second", backward)):
        new_only = recall["dontstop mine --against --max_against_count 0"]
        say(f"RATIO recall@500 {label}: dontstop --max_against_count 0 / classic with the filter = "
            f"{new_only / recall[fair]:.2f} ({new_only:.3f} / {recall[fair]:.3f}); default --against "
            f"{recall['dontstop mine --against']:.3f}")  # fmt: skip
    target = forward["dontstop mine --against --max_against_count 0"] >= 0.30
    say(f"target recall@500 >= 0.30 (second vs first, --max_against_count 0): {'PASS' if target else 'FAIL'}")
    with open(RESULTS, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
