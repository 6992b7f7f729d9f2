"""Terms found in token ids: what the glossary expansion and the n-gram adapter share.

A term (a glossary headword, a mined n-gram) is found as the token sequence the tokenizer makes of it in running
text, so a cached corpus, a task example and a model's own `input_ids` are searched alike, with the tokenizer's own
normalisation (an uncased tokenizer finds "Kernel" as "kernel"). A term is tokenized as it appears after a space (the
first piece then starts a word: "kernel" is not found in "mykernel") and, for tokenizers that spell a word's start
(byte-level BPE, SentencePiece), also as it appears at the start of a text, where it is looked for only right after
a special token. It must end where a word ends: the token after it may not continue a word (WordPiece's `##`, a BPE
piece without its space marker), so "net" is not found in "netfilter". In Han text, where every character is a word
start, any occurrence counts (as `--lexicon` entities do).
"""

from __future__ import annotations

import functools
import re

import numpy as np

from ..segment import HAN

MAX_TERM_TOKENS = 16  # longer terms are left out: a phrase of sixteen pieces is a sentence, not a term


def continuation_table(tokenizer) -> np.ndarray:
    """Per token id: does this token continue the word before it? Read off the tokenizer's own detokenization:
    "a" followed by the token reads as "a" plus a letter or digit, with no space between."""
    return _continuation_table(tokenizer.name_or_path, len(tokenizer), tokenizer)


@functools.lru_cache(maxsize=4)
def _continuation_table(name: str, size: int, tokenizer) -> np.ndarray:
    tokens = tokenizer.convert_ids_to_tokens(list(range(size)))
    special = set(tokenizer.all_special_tokens)
    table = np.zeros(size, dtype=bool)
    for i, token in enumerate(tokens):
        if token is None or token in special:
            continue
        text = tokenizer.convert_tokens_to_string(["a", token])
        table[i] = len(text) > 1 and text.startswith("a") and text[1].isalnum()
    return table


def term_variants(tokenizer, term: str) -> list[tuple[tuple[int, ...], bool]]:
    """(token ids, found only right after a special token) of each way the term is spelled in running text."""
    after_space = tuple(tokenizer(" " + term, add_special_tokens=False)["input_ids"])
    at_start = tuple(tokenizer(term, add_special_tokens=False)["input_ids"])
    variants = [(after_space, False)]
    if at_start != after_space:
        variants.append((at_start, True))
    return [(ids, start) for ids, start in variants if 0 < len(ids) <= MAX_TERM_TOKENS]


class TermMatcher:
    """Finds terms (by index) in token ids, longest first, without overlaps, left to right."""

    def __init__(self, tokenizer, terms: list[str], min_tokens: int = 1):
        self.continues = continuation_table(tokenizer)
        self.special = np.zeros(len(self.continues), dtype=bool)
        self.special[[i for i in tokenizer.all_special_ids if i < len(self.special)]] = True
        self.by_first: dict[int, list[tuple[tuple[int, ...], int, bool]]] = {}
        for index, term in enumerate(terms):
            for ids, at_start in term_variants(tokenizer, term):
                if len(ids) >= min_tokens:
                    self.by_first.setdefault(ids[0], []).append((ids, index, at_start))
        for candidates in self.by_first.values():
            candidates.sort(key=lambda c: -len(c[0]))

    def find(self, ids) -> list[tuple[int, int, int]]:
        """(start, end, term index) of every term found in `ids`."""
        ids = [int(i) for i in ids]
        found, i, n = [], 0, len(ids)
        while i < n:
            step = 1
            for sequence, index, at_start in self.by_first.get(ids[i], ()):
                end = i + len(sequence)
                if end > n or tuple(ids[i:end]) != sequence:
                    continue
                if at_start and i > 0 and not self.special[ids[i - 1]]:
                    continue
                if end < n and self.continues[ids[end]]:
                    continue
                found.append((i, end, index))
                step = len(sequence)
                break
            i += step
        return found


class TextTerms:
    """Terms found in text (not tokens), any case, longest first, without overlaps: what the long-tail signal reads
    its contexts with. Terms are indexed by their first word (a Han character counts as a word), so a text is read
    once whatever the number of terms. In space-delimited text a term must end where a word ends ("cat" is not found
    in "cats"); in Han text any occurrence counts."""

    UNIT = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|\w+|[^\w\s]")

    def __init__(self, terms):
        self.by_first: dict[str, list[str]] = {}
        for term in {t.lower() for t in terms}:
            first = self.UNIT.search(term)
            if first is not None:
                self.by_first.setdefault(first.group(), []).append(term)
        for candidates in self.by_first.values():
            candidates.sort(key=len, reverse=True)

    def spans(self, text: str) -> list[tuple[int, int]]:
        lower, found, reached = text.lower(), [], 0
        for unit in self.UNIT.finditer(lower):
            start = unit.start()
            if start < reached:
                continue
            for term in self.by_first.get(unit.group(), ()):
                end = start + len(term)
                if lower.startswith(term, start) and not (end < len(lower) and ends_inside_word(lower, end)):
                    found.append((start, end))
                    reached = end
                    break
        return found


def ends_inside_word(text: str, end: int) -> bool:
    """Whether the character at `end` continues the word before it (Han characters stand alone)."""
    return text[end - 1].isalnum() and text[end].isalnum() and not HAN.match(text[end - 1])
