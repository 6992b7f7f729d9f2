"""`dontstop mine`: hashed n-gram counting (exact, sharded, lossy), cohesion and entropy by hand, planted words."""

from __future__ import annotations

import math
import os
from collections import Counter

import numpy as np
import pytest

from dontstop.cli import main
from dontstop.mine import MineArguments, run_mine
from dontstop.mine.codes import chinese_codes
from dontstop.ngrams import NgramCounts, count_shard, hash_rows

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
ZH, GENERAL_ZH, EN = (os.path.join(FIXTURES, f"mine_{n}.txt") for n in ("zh", "general_zh", "en"))
PLANTED_ZH = ["自然语言处理", "北京大学", "深度框架", "酒店服务"]
PLANTED_EN = ["kernel module loader", "garbage collector", "file descriptor table"]


def mine(tmp_path, *corpora, against=(), **settings) -> list[dict]:
    args = MineArguments(
        corpus=[f"c{i}={path}" for i, path in enumerate(corpora)],
        against=[f"g{i}={path}" for i, path in enumerate(against)] or None,
        output_dir=str(tmp_path / "out"),
        overwrite_output_dir=True,
        **settings,
    )
    run_mine(args)
    with open(tmp_path / "out" / "words.tsv", encoding="utf-8") as f:
        header, *lines = f.read().splitlines()
    return [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]


def brute_force(lines: list[str], max_n: int) -> Counter:
    """Every character n-gram within runs of letters, the way a notebook counts them."""
    counts = Counter()
    for line in lines:
        for n in range(1, max_n + 1):
            for i in range(len(line) - n + 1):
                counts[line[i : i + n]] += 1
    return counts


def table_counts(counts: NgramCounts, strings: list[str]) -> list[int]:
    out = []
    for s in strings:
        key = hash_rows(np.array([[ord(c) for c in s]], dtype=np.uint64))
        out.append(int(counts.tables[len(s) - 1].count(key)[0]))
    return out


def test_planted_words_are_found_and_fragments_are_not(tmp_path):
    rows = mine(tmp_path, ZH)
    top = [r["word"] for r in rows[:6]]
    assert set(PLANTED_ZH) <= set(top), top
    words = {r["word"] for r in rows}
    assert not words & {"自然语言处", "然语言处理", "北京大", "京大学"}  # fragments: one-sided, no free context
    by_word = {r["word"]: r for r in rows}
    assert by_word["北京大学"]["in_base_dict"] == "1" and by_word["深度框架"]["in_base_dict"] == "0"
    en = mine(tmp_path, EN)
    assert {r["word"] for r in en[:3]} == set(PLANTED_EN)
    assert not {r["word"] for r in en} & {"kernel module", "module loader", "descriptor table"}


def test_cohesion_and_entropy_match_hand_computation(tmp_path):
    lines = ["甲乙丙", "甲乙丁", "甲乙丙"]
    counts = NgramCounts(4)
    counts.add(count_shard(chinese_codes(lines), 4))
    assert counts.tokens == 9 and table_counts(counts, ["甲", "乙", "丙", "丁", "甲乙", "甲乙丙"]) == [
        3,
        3,
        2,
        1,
        3,
        2,
    ]
    codes = np.array([[ord("甲"), ord("乙")], [ord("乙"), ord("丙")]], dtype=np.uint64)
    low, high = counts.cohesion(codes, np.array([3, 2]))
    # PMI(甲乙) = log(3 * 9 / (3 * 3)); PMI(乙丙) = log(2 * 9 / (3 * 2))
    assert low == pytest.approx([math.log(3), math.log(3)]) and high == pytest.approx(low)
    left, right = counts.branching_entropy(2, hash_rows(codes), np.array([3, 2]))
    # 甲乙: three line starts on the left (each its own neighbour): log 3; on the right 丙 twice and 丁 once
    assert left[0] == pytest.approx(math.log(3))
    assert right[0] == pytest.approx(-(2 / 3) * math.log(2 / 3) - (1 / 3) * math.log(1 / 3))
    # 乙丙: 甲 twice on the left (entropy 0); the line end twice on the right (log 2)
    assert left[1] == pytest.approx(0.0) and right[1] == pytest.approx(math.log(2))
    # the same figures come out of the stage, in words.tsv
    corpus = tmp_path / "toy.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = mine(tmp_path, corpus, min_freq=1, min_cohesion=-10, min_entropy=0, language="chinese", max_len=2)
    row = {r["word"]: r for r in rows}["甲乙"]
    assert float(row["cohesion"]) == pytest.approx(math.log(3), abs=1e-4)
    assert float(row["left_entropy"]) == pytest.approx(math.log(3), abs=1e-4) and row["freq"] == "3"


@pytest.mark.parametrize("shard_chars", [1, 50, 1_000_000])
def test_sharded_counting_equals_exact_counting(tmp_path, shard_chars):
    with open(ZH, encoding="utf-8") as f:
        lines = [line.strip().rstrip("。") for line in f][:120]
    exact = brute_force(lines, 4)
    counts = NgramCounts(4)
    batch, size = [], 0
    for line in lines:  # shards of whole lines, as the stage makes them
        batch.append(line)
        size += len(line)
        if size >= shard_chars:
            counts.add(count_shard(chinese_codes(batch), 4))
            batch, size = [], 0
    if batch:
        counts.add(count_shard(chinese_codes(batch), 4))
    assert counts.error == 0 and counts.entries == len(exact)
    strings = list(exact)
    assert table_counts(counts, strings) == [exact[s] for s in strings]


def test_lossy_counting_keeps_its_error_bound():
    with open(ZH, encoding="utf-8") as f:
        lines = [line.strip().rstrip("。") for line in f]
    exact = brute_force(lines, 3)
    counts = NgramCounts(3, max_entries=3_000)
    for start in range(0, len(lines), 20):
        counts.add(count_shard(chinese_codes(lines[start : start + 20]), 3))
    assert counts.prunings > 0 and counts.error > 0 and counts.entries <= 3_000
    for table, n in zip(counts.tables, (1, 2, 3), strict=True):
        for key, count, delta in zip(table.keys, table.counts, table.deltas, strict=True):
            codes, ok = counts.decode(n, np.array([key]))
            true = exact["".join(map(chr, codes[0].tolist()))]
            assert ok[0] and count <= true <= count + delta
    frequent = [s for s, c in exact.items() if c > counts.error]
    assert all(c > 0 for c in table_counts(counts, frequent))  # everything above the bound survived


def test_against_a_general_corpus_drops_general_words(tmp_path):
    plain = [r["word"] for r in mine(tmp_path, ZH)]
    assert "我们" in plain and "北京大学" in plain
    rows = mine(tmp_path, ZH, against=[GENERAL_ZH])
    words = [r["word"] for r in rows]
    assert set(words[:3]) == {"自然语言处理", "深度框架", "酒店服务"}
    assert "我们" not in words and "北京大学" not in words  # as frequent in general text: they fall away
    assert all(float(r["domain_ratio"]) > 1 for r in rows)


def test_workers_give_the_same_words(tmp_path):
    one = mine(tmp_path, ZH, shard_chars=5_000)
    two = mine(tmp_path, ZH, shard_chars=5_000, workers=2)
    assert one == two


def test_outputs_feed_the_segmenter_and_entity_masking(tmp_path):
    from dontstop.segment import Lexicon, make_segmenter, read_user_dict

    mine(tmp_path, ZH)
    out = tmp_path / "out"
    assert {"words.tsv", "user_dict.txt", "lexicon.txt", "metrics.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    assert {w for w, _, _ in read_user_dict(str(out / "user_dict.txt"))} >= set(PLANTED_ZH)
    text = "我在北京大学学习自然语言处理。"
    plain = make_segmenter("jieba")(text)
    with_dict = make_segmenter("jieba", [str(out / "user_dict.txt")])(text)
    pieces = {text[s:e] for s, e in with_dict}
    assert "自然语言处理" in pieces and pieces != {text[s:e] for s, e in plain}
    assert (8, 14) in Lexicon([str(out / "lexicon.txt")]).spans(text)


def test_english_single_terms_the_tokenizer_fragments(tmp_path, tiny_roberta):
    rows = mine(tmp_path, EN, model_name_or_path=str(tiny_roberta), min_pieces=3)
    singles = [r for r in rows if " " not in r["word"]]
    assert singles and all(r["cohesion"] == "" for r in singles)  # no split, no cohesion
    assert {"kernel module loader", "garbage collector"} <= {r["word"] for r in rows}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--corpus", "c=missing.txt"], "no such file"),
        (["--corpus", "c=ZH", "--against", "c=ZH"], "distinct"),
        (["--corpus", "c=ZH", "--max_len", "1"], "at least 2"),
        (["--corpus", "c=ZH", "--workers", "0"], "--workers must be at least 1"),
        (["--corpus", "c=ZH", "--base_dict", "nope.txt"], "--base_dict nope.txt"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    argv = ["mine", "--output_dir", str(tmp_path / "out")] + [a.replace("ZH", ZH) for a in extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
