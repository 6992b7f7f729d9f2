"""Which words does my domain have that the model lacks? New-word and phrase discovery without supervision.

    dontstop mine --corpus domain=reviews.jsonl [--against general=news.txt] --output_dir runs/mine

The classic method of Chinese practice (Matrix67, "互联网时代的社会语言学", 2012), at scale. A string is a word when
it is frequent, holds together (cohesion: even its weakest binary split a|b has high pointwise mutual information
log p(ab) / (p(a) p(b))) and is free at both ends (high left and right branching entropy: many different characters
come before and after it). Chinese (any text whose letters are mostly Han) is mined over characters, candidates of
2..`--max_len` characters; space-delimited text over words, phrases of 2..`--max_words` words, plus, with
`--model_name_or_path`, single words that the model's tokenizer splits into `--min_pieces` or more pieces.

The score ranks the candidates that pass every threshold: score = log(freq) * min(left, right entropy) *
min(cohesion, `--cohesion_cap`) / length ** `--length_penalty` (entropies and cohesion in nats): all three signals
must be present, a string of rare characters cannot win on cohesion alone, and a long string, which gains cohesion
and loses frequency by construction, pays for its length. The penalty's default, 0.5, was chosen on People's Daily
against its gold segmentation (`benchmarks/mine_quality.py`), whose words are short; 0 ranks compounds and names
higher. With `--against` corpora, the domain ratio (frequency per token here over
frequency per token there, each count plus one) multiplies in as its log, and candidates at or below
`--min_domain_ratio` are dropped: general words fall away, and what the domain has new or characteristic rises.

Counting is `ngrams.py`: hashed n-grams counted with numpy in shards by `--workers` processes, merged into tables of at
most `--max_entries` entries (lossy counting beyond that, with the error bound reported), so memory does not grow
with the corpus. Outputs: `words.tsv` (sorted by score), `user_dict.txt` (for jieba and `dontstop pretrain
--user_dict`), `lexicon.txt` (for `--masking entity --lexicon`), `metrics.json` and `README.md`.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict

import numpy as np

from ..errors import UsageError
from ..knowledge.longtail import check_long_tail
from ..outputs import check_output_dir
from ..records import MinedWords
from .args import MineArguments
from .candidates import base_score, count_against, find_candidates, jieba_dictionary, read_base_dicts
from .codes import count_corpora
from .output import write_outputs

logger = logging.getLogger(__name__)


def validate(args: MineArguments) -> tuple[list, list]:
    from ..corpus import check_corpus_file, parse_named_path

    if not args.corpus:
        raise UsageError("--corpus NAME=PATH is required (repeat it to mine several corpora together)")
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    corpora = [parse_named_path(spec, "--corpus") for spec in args.corpus]
    against = [parse_named_path(spec, "--against") for spec in args.against or []]
    names = [c.name for c in corpora + against]
    if len(set(names)) != len(names):
        raise UsageError(f"--corpus and --against names must be distinct (got {', '.join(names)})")
    for option in ("max_len", "max_words", "min_freq", "min_pieces", "workers", "shard_chars", "max_entries"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option} must be at least 1")
    if args.max_len < 2 or args.max_words < 2:
        raise UsageError("--max_len and --max_words must be at least 2 (candidates have two or more units)")
    if args.top is not None and args.top < 1:
        raise UsageError("--top must be at least 1")
    if args.min_domain_ratio < 0:
        raise UsageError("--min_domain_ratio must be 0 or more")
    if args.max_against_count is not None and (args.max_against_count < 0 or not against):
        raise UsageError("--max_against_count N needs --against corpora and N >= 0")
    check_long_tail(args)
    for c, option in [(c, "--corpus") for c in corpora] + [(c, "--against") for c in against]:
        if not os.path.exists(c.path):
            raise UsageError(f"{option} {c.name}={c.path}: no such file or directory")
        check_corpus_file(c.path, args.text_column)
    for path in args.base_dict or []:
        if not os.path.isfile(path):
            raise UsageError(f"--base_dict {path}: no such file")
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    return corpora, against


def detect_language(corpora: list, args: MineArguments) -> str:
    if args.language != "auto":
        return args.language
    from ..corpus import iter_corpus_batches
    from ..similarity import detect_segmenter

    sample = next(iter_corpus_batches(corpora[0].path, args.text_column, (), 500, check=False), {"text": []})["text"]
    if not any(t.strip() for t in sample):
        raise UsageError(f"--corpus {corpora[0].name}={corpora[0].path}: no text in its first 500 records")
    return "chinese" if detect_segmenter(sample) == "jieba" else "words"


def score_candidates(found, counts, against, language: str, args: MineArguments):
    """(score, domain ratio or None, counts in the reference corpora or None, their tokens) of every candidate."""
    freq = found.column("freq")
    cohesion, left, right = found.column("cohesion"), found.column("left"), found.column("right")
    score = base_score(freq, cohesion, left, right, found.lengths, args.cohesion_cap, args.length_penalty)
    if not against:
        return score, None, None, 0
    keys_by_length = dict(zip(found.ns, found.keys, strict=True))
    totals, against_tokens = count_against(against, language, keys_by_length, args)
    there = np.concatenate([totals[n] for n in found.ns]) if found.ns else np.zeros(0, dtype=np.int64)
    # per-token frequencies with one added to each count: a word absent there gets a large, finite ratio
    ratio = ((freq + 1) / counts.tokens) / ((there + 1) / max(against_tokens, 1))
    kept = ratio > args.min_domain_ratio
    if args.max_against_count is not None:
        kept &= there <= args.max_against_count
    score = np.where(kept, score * np.log(np.maximum(ratio, 1e-12)), -np.inf)
    return score, ratio, there, against_tokens


def ranked_rows(found, score, ratio, there, base_words: set[str] | None, args: MineArguments) -> list[dict]:
    """The candidates that scored, best first, as rows of words.tsv (`base_words` None: no base dictionary)."""
    order = np.argsort(-score, kind="stable")
    order = order[np.isfinite(score[order])]
    if args.only_new:
        order = order[[found.words[i] not in (base_words or ()) for i in order]]
    if args.top is not None:
        order = order[: args.top]
    columns = {name: found.column(name) for name in ("freq", "cohesion", "left", "right", "cohesion_max")}
    return [
        {
            "word": found.words[i],
            "freq": int(columns["freq"][i]),
            "cohesion": columns["cohesion"][i],
            "left_entropy": columns["left"][i],
            "right_entropy": columns["right"][i],
            "score": score[i],
            "domain_ratio": None if ratio is None else ratio[i],
            "in_base_dict": (found.words[i] in base_words) if base_words is not None else None,
            "cohesion_max": columns["cohesion_max"][i],
            "against_freq": None if there is None else int(there[i]),
        }
        for i in order
    ]


def model_tokenizer(args: MineArguments, language: str):
    """With --model_name_or_path on space-delimited text: its tokenizer, which tells which words it shreds."""
    if not args.model_name_or_path or language != "words":
        return None
    from ..models import load_tokenizer

    return load_tokenizer(args.model_name_or_path)


def run_mine(args: MineArguments) -> MinedWords:
    """Mine, write the output directory, and return the record written to metrics.json."""
    import resource

    started = time.perf_counter()
    corpora, against = validate(args)
    language = detect_language(corpora, args)
    tokenizer = model_tokenizer(args, language)
    tick = time.perf_counter()
    base_paths = list(args.base_dict or ([jieba_dictionary()] if language == "chinese" else []))
    max_n = (args.max_len if language == "chinese" else args.max_words) + 1  # +1: the neighbours of the longest
    counts, vocabulary, size = count_corpora(corpora, language, max_n, args, "counting n-grams")
    counted = time.perf_counter()
    found = find_candidates(counts, vocabulary, language, args, tokenizer)
    score, ratio, there, against_tokens = score_candidates(found, counts, against, language, args)
    rows = ranked_rows(found, score, ratio, there, read_base_dicts(base_paths) if base_paths else None, args)
    tail, tail_report = None, None
    if args.long_tail:
        from ..knowledge.longtail import long_tail_rows

        tail, tail_report = long_tail_rows(rows, corpora, args)
    metrics = MinedWords(
        language=language,
        corpora=[asdict(c) for c in corpora],
        against=[asdict(c) for c in against],
        characters=size["characters"],
        megabytes=round(size["bytes"] / 1e6, 3),
        tokens=counts.tokens,
        against_tokens=against_tokens,
        # from the start of the stage (checking the files included) to the last file written
        seconds={"counting": round(counted - tick, 2), "total": None},
        peak_rss_mb_main_process=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        ngram_entries=counts.entries,
        count_error_bound=counts.error,
        prunings=counts.prunings,
        funnel={str(n): f for n, f in found.funnel.items()},
        words_written=len(rows),
        new_words_written=sum(1 for r in rows if r["in_base_dict"] is False),
        base_dicts=base_paths,
        settings=asdict(args),
        long_tail=tail_report,
    )
    write_outputs(args, rows, metrics, started, tail)
    logger.info(
        "mined %d words from %.1f MB in %.1f s (%.2f MB/s); wrote %s",
        len(rows), size["bytes"] / 1e6, metrics.seconds["total"], metrics.megabytes_per_second,
        os.path.join(args.output_dir, "words.tsv"),
    )  # fmt: skip
    return metrics


EXAMPLES = """examples:
  # new words of a Chinese domain, and a dictionary for whole-word masking
  dontstop mine --corpus reviews=reviews.jsonl --output_dir runs/mine-reviews --workers 2
  dontstop pretrain --model_name_or_path bert-base-chinese --train_file reviews.jsonl --masking word \\
      --user_dict runs/mine-reviews/user_dict.txt --output_dir runs/dapt-reviews

  # what is characteristic of the domain, not merely frequent: rank against general text
  dontstop mine --corpus domain=reviews.jsonl --against general=news.txt --output_dir runs/mine-vs-news

  # English: phrases of 2-4 words, and single terms the model's tokenizer shreds
  dontstop mine --corpus docs=software.jsonl --model_name_or_path roberta-base --output_dir runs/mine-en
"""


ARGUMENTS = (MineArguments,)
run = run_mine
