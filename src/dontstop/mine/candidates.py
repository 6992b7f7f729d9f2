"""From counts to candidates for `dontstop mine`: the strings that pass the thresholds, spelled out, with their
statistics and score; counts in the reference corpora (`--against`); base dictionaries."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..ngrams import NgramCounts, occurrences
from .args import MineArguments
from .codes import chinese_codes, in_parallel, shards, word_codes

# Function characters that begin or end almost no Chinese word but many spurious strings (的确 and 目的 are lost;
# thousands of "X的" fragments go). Characters that end real words often (在: 现在, 是: 但是) are left out.
STOP_START = frozenset("的了着和与及或就都也被把吗呢吧啊之")


STOP_END = frozenset("的了着和与及或被把吗呢吧啊")


@dataclass
class Candidates:
    """Parallel arrays, one entry per candidate that passed every threshold."""

    words: list[str] = field(default_factory=list)
    ns: list[int] = field(default_factory=list)  # the lengths, in the order of the per-length lists below
    keys: list[np.ndarray] = field(default_factory=list)  # per length: the hashes (for counting elsewhere)
    freq: list[np.ndarray] = field(default_factory=list)
    cohesion: list[np.ndarray] = field(default_factory=list)
    cohesion_max: list[np.ndarray] = field(default_factory=list)
    left: list[np.ndarray] = field(default_factory=list)
    right: list[np.ndarray] = field(default_factory=list)
    funnel: dict = field(default_factory=dict)  # how many candidates each step left, per length

    @property
    def lengths(self) -> np.ndarray:
        """Each candidate's length (characters or words)."""
        return np.repeat(self.ns, [len(k) for k in self.keys])

    def column(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)


def spell(codes: np.ndarray, language: str, vocabulary: dict[int, str]) -> list[str]:
    if language == "chinese":
        return ["".join(map(chr, row)) for row in codes.tolist()]
    return [" ".join(vocabulary.get(c, "?") for c in row) for row in codes.tolist()]


def acceptable(codes: np.ndarray, words: list[str], language: str) -> np.ndarray:
    """The surface filters: no digits-only strings, no function characters (or stopwords) at either end."""
    if language == "chinese":
        starts = np.isin(codes[:, 0], [ord(c) for c in STOP_START])
        ends = np.isin(codes[:, -1], [ord(c) for c in STOP_END])
        return ~starts & ~ends & np.array([not w.isdigit() for w in words], dtype=bool)
    from ..similarity import stopwords

    stop = stopwords()
    ok = []
    for word in words:
        parts = word.split(" ")
        numeric = all(p.replace(".", "").isdigit() for p in parts)
        ok.append(not numeric and parts[0] not in stop and parts[-1] not in stop)
    return np.array(ok, dtype=bool)


def fragmented(tokenizer, word: str, min_pieces: int) -> bool:
    """Does the tokenizer split `word` (as it appears after a space) into min_pieces or more, or not know it at all?"""
    pieces = tokenizer.tokenize(" " + word)
    return len(pieces) >= min_pieces or (tokenizer.unk_token is not None and tokenizer.unk_token in pieces)


def find_candidates(counts: NgramCounts, vocabulary: dict, language: str, args: MineArguments, tokenizer=None):
    """Every n-gram passing the thresholds, with its statistics: numbers first (on hashes and codes, vectorised),
    strings only for the survivors."""
    found = Candidates()
    shortest = 1 if (language == "words" and tokenizer is not None) else 2
    longest = args.max_len if language == "chinese" else args.max_words
    for n in range(shortest, longest + 1):
        table = counts.tables[n - 1]
        funnel = found.funnel[n] = {"distinct": len(table)}
        frequent = table.counts >= args.min_freq
        keys, freq = table.keys[frequent], table.counts[frequent]
        codes, decoded = counts.decode(n, keys)
        funnel["frequent"] = len(keys)
        if n >= 2:
            cohesion, cohesion_max = counts.cohesion(codes, freq)
        else:  # a single word has no split
            cohesion = cohesion_max = np.full(len(keys), np.nan)
        left, right = counts.branching_entropy(n, keys, freq)
        keep = decoded & (np.minimum(left, right) >= args.min_entropy)
        if n == 1 and args.long_tail:  # spaces delimit a single word: its entropy says nothing of its being one
            keep = decoded.copy()
        if n >= 2:
            keep &= cohesion >= args.min_cohesion
        funnel["passed_thresholds"] = int(keep.sum())
        words = spell(codes[keep], language, vocabulary)
        surface = acceptable(codes[keep], words, language)
        if n == 1:  # single words: only those the model's tokenizer breaks into many pieces (or does not know)
            surface &= np.array(
                [w.isalpha() and len(w) > 2 and fragmented(tokenizer, w, args.min_pieces) for w in words], dtype=bool
            )
        keep[keep] = surface
        funnel["kept"] = int(keep.sum())
        found.words += [w for w, ok in zip(words, surface, strict=True) if ok]
        found.ns.append(n)
        for name, values in (("keys", keys), ("freq", freq), ("cohesion", cohesion), ("cohesion_max", cohesion_max)):
            getattr(found, name).append(values[keep])
        found.left.append(left[keep])
        found.right.append(right[keep])
    return found


def base_score(freq, cohesion, left, right, lengths, cap: float, length_penalty: float) -> np.ndarray:
    """log(freq) * min(left, right) * min(cohesion, cap) / length ** length_penalty; a single word, which has no
    cohesion, counts half the cap."""
    holds = np.where(np.isnan(cohesion), cap / 2, np.minimum(np.nan_to_num(cohesion), cap))
    return np.log(freq) * np.minimum(left, right) * holds / np.asarray(lengths, dtype=float) ** length_penalty


def occurrence_texts(texts: list[str], language: str, keys_by_length: dict[int, np.ndarray]):
    """One shard of an --against corpus: how often each candidate occurs in it, and its tokens (worker entry)."""
    codes = chinese_codes(texts) if language == "chinese" else word_codes(texts)
    found = occurrences(keys_by_length, codes)
    return found, int((codes != 0).sum()), sum(len(t.encode("utf-8")) for t in texts)


def count_against(paths: list, language: str, keys_by_length: dict, args: MineArguments):
    from tqdm.auto import tqdm

    totals = {n: np.zeros(len(k), dtype=np.int64) for n, k in keys_by_length.items()}
    tokens = 0
    bar = tqdm(total=sum(os.path.getsize(p.path) for p in paths), unit="B", unit_scale=True, desc="counting against")
    items = ((texts, language, keys_by_length) for texts in shards(paths, args))
    for found, shard_tokens, nbytes in in_parallel(occurrence_texts, items, args.workers):
        for n, c in found.items():
            totals[n] += c
        tokens += shard_tokens
        bar.update(nbytes)
    bar.close()
    return totals, tokens


def read_base_dicts(paths: list[str]) -> set[str]:
    """The first column of each line: jieba's `word freq tag`, or one word per line."""
    words = set()
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            words.update(line.strip().partition(" ")[0] for line in f.read().split("\n"))
    words.discard("")
    return words


def jieba_dictionary() -> str:
    import jieba

    return os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
