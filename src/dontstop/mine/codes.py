"""Text to n-gram counts for `dontstop mine`: Chinese as characters, other text as words, each mapped to integer codes
(a word to a 64-bit hash), counted in shards by worker processes and merged (`ngrams.py`)."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
import unicodedata
from collections import deque

import numpy as np

from ..ngrams import FIELDS, NgramCounts, Table, count_shard
from .args import MineArguments

WORD_TOKEN = re.compile(r"\w+(?:[-'.+#]\w+)*|[^\w\s]")


@functools.lru_cache(maxsize=1)
def word_characters() -> np.ndarray:
    """For each code point of the Basic Multilingual Plane: is it a letter or a digit (part of a candidate) rather
    than a separator? (Beyond it, the few code points a text holds are looked up one by one.)"""
    return np.array([unicodedata.category(chr(cp))[0] in "LN" for cp in range(0x10000)], dtype=bool)


def is_word_character(codes: np.ndarray) -> np.ndarray:
    table = word_characters()
    inside = codes < len(table)
    out = np.zeros(len(codes), dtype=bool)
    out[inside] = table[codes[inside]]
    if not inside.all():
        beyond = np.unique(codes[~inside])
        letters = beyond[[unicodedata.category(chr(int(cp)))[0] in "LN" for cp in beyond]]
        out[~inside] = np.isin(codes[~inside], letters)
    return out


def chinese_codes(texts: list[str]) -> np.ndarray:
    """Code points, with 0 for everything that is not a letter or digit (punctuation, spaces, document ends)."""
    joined = "\n".join(texts) + "\n"
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).copy()
    codes[~is_word_character(codes)] = 0
    return codes


@functools.lru_cache(maxsize=1_000_000)
def word_id(word: str) -> int:
    """A stable 64-bit id (never 0, the separator): the same in every worker process and every corpus."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little") or 1


def word_codes(texts: list[str], vocabulary: dict[int, str] | None = None) -> np.ndarray:
    """Lower-cased word ids, with 0 for punctuation and document ends; `vocabulary` collects id -> word."""
    codes = []
    for text in texts:
        for token in WORD_TOKEN.findall(text.lower()):
            if token[0].isalnum() or token[0] == "_":
                i = word_id(token)
                codes.append(i)
                if vocabulary is not None:
                    vocabulary[i] = token
            else:
                codes.append(0)
        codes.append(0)
    return np.array(codes, dtype=np.uint64)


def count_texts(texts: list[str], language: str, max_n: int):
    """One shard (a worker's job): its tables, the words behind its ids (words only), its characters and bytes."""
    vocabulary: dict[int, str] | None = {} if language == "words" else None
    codes = chinese_codes(texts) if language == "chinese" else word_codes(texts, vocabulary)
    return count_shard(codes, max_n), vocabulary, sum(map(len, texts)), sum(len(t.encode("utf-8")) for t in texts)


def shards(paths: list, args: MineArguments):
    """Whole documents, about --shard_chars characters at a time, from every corpus in turn."""
    from ..corpus import iter_corpus_batches

    batch, size = [], 0
    for corpus in paths:
        for records in iter_corpus_batches(corpus.path, args.text_column, (), 1024, check=False):
            for text in records["text"]:
                if not text.strip():
                    continue
                batch.append(text)
                size += len(text)
                if size >= args.shard_chars:
                    yield batch
                    batch, size = [], 0
    if batch:
        yield batch


def count_texts_to_file(texts: list[str], language: str, max_n: int, directory: str):
    """count_texts in a worker, its tables handed back through a file in `directory` (on tmpfs where there is one):
    a pipe would pickle a shard's hundreds of MB of tables, and that costs more than counting them."""
    tables, vocabulary, characters, nbytes = count_texts(texts, language, max_n)
    arrays = {f"{name}{n}": getattr(t, name) for n, t in enumerate(tables) for name in FIELDS}
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz", delete=False) as f:
        np.savez(f, **arrays)
    return f.name, vocabulary, characters, nbytes


def load_tables(path: str, max_n: int) -> list[Table]:
    with np.load(path) as arrays:
        tables = [Table(**{name: arrays[f"{name}{n}"] for name in FIELDS}) for n in range(max_n)]
    os.remove(path)
    return tables


def in_parallel(work, items, workers: int):
    """Yield work(*item) for each item in order, with at most `workers` + 1 items in flight (bounded memory)."""
    if workers <= 1:
        for item in items:
            yield work(*item)
        return
    import multiprocessing

    # fork where there is one: workers start at once, without importing anything again
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(work, item))
            while len(pending) > workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def count_corpora(paths: list, language: str, max_n: int, args: MineArguments, desc: str):
    """Global n-gram tables of the corpora, the words behind the ids (words), and the text's size."""
    from tqdm.auto import tqdm

    counts = NgramCounts(max_n, args.max_entries)
    vocabulary: dict[int, str] = {}
    size = {"characters": 0, "bytes": 0}
    # The bar counts text bytes against the files' sizes (markup included), so it ends a little short of 100%.
    bar = tqdm(total=sum(os.path.getsize(p.path) for p in paths), unit="B", unit_scale=True, desc=desc)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm, prefix="dontstop-mine-") as scratch:  # removed even on Ctrl-C
        if args.workers > 1:
            work = count_texts_to_file
            items = ((texts, language, max_n, scratch) for texts in shards(paths, args))
        else:
            work, items = count_texts, ((texts, language, max_n) for texts in shards(paths, args))
        for tables, words, characters, nbytes in in_parallel(work, items, args.workers):
            prunings = counts.prunings
            counts.add(load_tables(tables, max_n) if isinstance(tables, str) else tables)
            if words:
                vocabulary.update(words)
            if vocabulary and counts.prunings > prunings:  # the words of pruned unigrams are pruned with them
                kept = set(counts.tables[0].last.tolist())
                vocabulary = {i: w for i, w in vocabulary.items() if i in kept}
            size["characters"] += characters
            size["bytes"] += nbytes
            bar.update(nbytes)
    bar.close()
    return counts, vocabulary, size
