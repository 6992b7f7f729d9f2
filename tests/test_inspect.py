"""`dontstop inspect`: vocabulary overlap, Chinese words, fragmentation, the heatmap and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import HAN, synthetic_documents, write_jsonl

from dontstop.similarity import count_words, jaccard, overlap_matrix, topk_overlap

NO_STOPWORDS = frozenset()


def test_corpus_against_itself_is_100_and_disjoint_vocabularies_0():
    a = count_words("a", ["alpha beta gamma", "beta delta"], "whitespace", NO_STOPWORDS)
    b = count_words("b", ["one two three four"], "whitespace", NO_STOPWORDS)
    assert topk_overlap(a, a, 10_000) == 1.0 and topk_overlap(a, b, 10_000) == 0.0
    matrix = overlap_matrix([a, b], "topk", top_k=10)
    assert np.allclose(matrix, [[100, 0], [0, 100]])


def test_hand_computed_overlap_and_jaccard():
    # top-3 of a: xx (4), yy (3), zz (2); of b: xx (5), ww (4), yy (3)  -> {xx, yy} shared, 2 / 3
    a = count_words("a", ["xx xx xx xx yy yy yy zz zz qq"], "whitespace", NO_STOPWORDS)
    b = count_words("b", ["xx xx xx xx xx ww ww ww ww yy yy yy qq"], "whitespace", NO_STOPWORDS)
    assert a.top(3) == ["xx", "yy", "zz"] and b.top(3) == ["xx", "ww", "yy"]
    assert topk_overlap(a, b, 3) == pytest.approx(2 / 3)
    # ties are broken alphabetically, so the top set never depends on dictionary order
    assert count_words("t", ["bb aa cc"], "whitespace", NO_STOPWORDS).top(2) == ["aa", "bb"]
    # Jaccard over words in >= 2 documents: a {xx, yy}, b {xx, ww}: 1 / 3
    a = count_words("a", ["xx yy zz", "xx yy"], "whitespace", NO_STOPWORDS)
    b = count_words("b", ["xx ww", "xx ww vv"], "whitespace", NO_STOPWORDS)
    assert jaccard(a, b, min_df=2) == pytest.approx(1 / 3)


def test_words_are_lowercased_letters_without_stopwords():
    vocab = count_words("e", ["The Kernel loads 2 drivers; the kernel's module."], "auto")
    assert vocab.segmenter == "whitespace"
    assert vocab.counts == {"kernel": 2, "loads": 1, "drivers": 1, "module": 1}  # no "s" of "kernel's"
    assert vocab.surface["The"] == 1 and vocab.tokens == 8  # as written, stopwords included


def test_chinese_is_segmented_into_words_not_characters():
    vocab = count_words("zh", ["我们在北京大学学习自然语言处理", "这家酒店服务态度也不错"], "auto")
    assert vocab.segmenter == "jieba"
    assert "北京大学" in vocab.counts and "自然语言" in vocab.counts
    assert "我们" not in vocab.counts  # a Chinese stopword
    assert all(len(w) >= 2 for w in vocab.counts)


def test_fragmentation_counts_pieces_by_occurrence(tiny_bert):
    from transformers import AutoTokenizer

    from dontstop.similarity import fragmentation

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    # "kernel" is one token in the tiny vocabulary; "zzz" is z ##z ##z; "ω" is unknown
    vocab = count_words("f", ["kernel kernel zzz ω"], "whitespace", NO_STOPWORDS)
    metrics = fragmentation(tokenizer, vocab)
    assert metrics["subtokens_per_word"] == pytest.approx((1 + 1 + 3 + 1) / 4)
    assert metrics["split_3plus"] == pytest.approx(1 / 4)
    assert metrics["unknown_rate"] == pytest.approx(1 / 4)


def test_inspect_end_to_end_with_model(tiny_bert_headless, tmp_path):
    from PIL import Image

    from dontstop.cli import main

    english = write_jsonl(tmp_path / "en.jsonl", synthetic_documents(80, seed=1))
    other = write_jsonl(tmp_path / "other.jsonl", [" ".join(reversed(d.split())) for d in synthetic_documents(80, 2)])
    chinese = write_jsonl(tmp_path / "zh.jsonl", [HAN[i : i + 12] for i in range(0, 40)])
    out = tmp_path / "inspect"
    args = ["--corpus", f"general={english}", "--corpus", f"domain={other}", "--corpus", f"zh={chinese}"]
    args += ["--model_name_or_path", tiny_bert_headless, "--output_dir", str(out), "--head_warmup_steps", "3"]
    args += ["--eval_blocks", "4", "--batch_size", "4", "--max_seq_length", "32"]
    assert main(["inspect", *args]) == 0
    report = json.loads((out / "similarity.json").read_text())
    matrix = np.array(report["overlap"]["matrix"])
    assert np.allclose(np.diag(matrix), 100) and np.allclose(matrix, matrix.T)
    assert matrix[0, 1] == pytest.approx(100)  # same words, other order
    assert matrix[0, 2] == 0  # no English words in the Chinese corpus
    segmenters = {c["name"]: c["segmenter"] for c in report["corpora"]}
    assert segmenters == {"general": "whitespace", "domain": "whitespace", "zh": "jieba"}
    model = report["corpora"][0]["model"]
    assert model["lm_head"] == "warmed up" and model["lm_loss"] > 0 and model["lm_tokens"] > 0
    assert len(report["recommendation"]) == 2 and report["recommendation"][1].startswith("- **zh**: far from general")
    image = Image.open(out / "overlap.png")
    assert image.format == "PNG" and image.size[0] > 100
    assert json.loads(image.text["Description"])["labels"] == ["general", "domain", "zh"]
    readme = (out / "README.md").read_text()
    assert "## Recommendation" in readme and "Rule:" in readme and "| **zh** |" in readme
    # the seed fixes the samples, the new head's initialisation and the masks: a second run measures the same
    again = [str(tmp_path / "again") if a == str(out) else a for a in args]
    assert main(["inspect", *again]) == 0
    repeated = json.loads((tmp_path / "again" / "similarity.json").read_text())
    assert [c["model"]["lm_loss"] for c in repeated["corpora"]] == [c["model"]["lm_loss"] for c in report["corpora"]]


def test_inspect_bad_input(tmp_path, capsys):
    from dontstop.cli import main

    corpus = write_jsonl(tmp_path / "c.jsonl", ["kernel module"])
    cases = [
        (["--corpus", f"a={corpus}", "--corpus", f"a={corpus}"], "names must be distinct"),
        (["--corpus", "a"], "--corpus expects NAME=PATH"),
        (["--corpus", f"a={tmp_path / 'missing.jsonl'}"], "missing.jsonl: no such file"),
        (["--corpus", f"a={corpus}", "--reference", "b"], "--reference b: no corpus of that name"),
    ]
    for extra, error in cases:
        assert main(["inspect", *extra, "--output_dir", str(tmp_path / "out")]) == 2
        assert error in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_inspect_measures_a_decoder_with_its_causal_loss(tiny_gpt2, tmp_path):
    from dontstop.cli import main

    a = write_jsonl(tmp_path / "a.jsonl", synthetic_documents(40, seed=1))
    b = write_jsonl(tmp_path / "b.jsonl", synthetic_documents(40, seed=2))
    out = tmp_path / "inspect"
    args = ["--corpus", f"a={a}", "--corpus", f"b={b}", "--model_name_or_path", tiny_gpt2, "--output_dir", str(out)]
    assert main(["inspect", *args, "--eval_blocks", "4", "--batch_size", "4", "--max_seq_length", "32"]) == 0
    model = json.loads((out / "similarity.json").read_text())["corpora"][1]["model"]
    assert model["objective"] == "clm" and model["lm_head"] == "checkpoint" and model["lm_loss"] > 0


def test_a_domain_corpus_far_from_the_task_is_called_so(tiny_bert, tmp_path):
    """A domain corpus far from general text reads as "DAPT likely pays" against general text alone; beside the
    task's own text, which it does not resemble, the recommendation says to select from it or find another."""
    from dontstop.cli import main

    general = write_jsonl(tmp_path / "general.jsonl", synthetic_documents(80, seed=1))
    domain = write_jsonl(tmp_path / "domain.jsonl", [HAN[i : i + 12] for i in range(0, 40)])
    task = write_jsonl(tmp_path / "task.jsonl", synthetic_documents(60, seed=3))
    out = tmp_path / "inspect"
    args = ["--corpus", f"general={general}", "--corpus", f"domain={domain}", "--corpus", f"task={task}"]
    args += ["--model_name_or_path", tiny_bert, "--output_dir", str(out), "--probe_steps", "4"]
    args += ["--eval_blocks", "4", "--batch_size", "4", "--max_seq_length", "32", "--head_warmup_steps", "0"]
    assert main(["inspect", *args]) == 0
    report = json.loads((out / "similarity.json").read_text())
    assert report["task"] == "task"
    line = next(line for line in report["recommendation"] if line.startswith("- **domain**"))
    assert "far from your task (0.0% top-K overlap with task; 4 probe steps on it lowered" in line
    assert "select from it (kNN-TAPT) or find a closer one" in line
    probe = report["probes"]["domain"]
    assert probe["steps"] == 4 and probe["domain_before"] != probe["domain_after"]
    assert probe["task_before"] != probe["task_after"]
    assert "Relevance probes" in (out / "README.md").read_text()
    assert main(["inspect", *args[:6], "--output_dir", str(tmp_path / "x"), "--probe_steps", "4"]) == 2
