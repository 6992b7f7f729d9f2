"""Word and entity boundaries for masking units, from the tokenizer's character offsets plus a segmenter.

Boundaries come from offsets, not from `##` prefixes, so WordPiece, byte-level BPE and SentencePiece tokenizers all
work. A segmenter turns text into word spans:
- `whitespace`: runs of letters/digits, and each punctuation mark alone (space-delimited scripts);
- `jieba`: jieba's words, with any number of user dictionaries (e.g. words mined by `dontstop mine`), so a run of Han
  characters is split into words instead of being taken as one;
- `auto` (default): jieba for a text that contains Han characters, whitespace otherwise.

Each token gets the id of the word its characters fall in; a token that straddles words (a BPE merge across a jieba
boundary) joins them into one unit, so a unit is never split. Special tokens get -1.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .corpus import require_file
from .errors import UsageError

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"\w+|[^\w\s]")

Spans = list[tuple[int, int]]
# Per-token boundary columns, each with the column counting its units per document.
BOUNDARY_COUNTS = {"word_ids": "n_words", "entity_ids": "n_entities"}
SEGMENTERS: dict[str, Callable[[list[str]], Callable[[str], Spans]]] = {}


def register_segmenter(name: str):
    def decorator(factory):
        SEGMENTERS[name] = factory
        return factory

    return decorator


@register_segmenter("whitespace")
def whitespace_segmenter(user_dicts: list[str]) -> Callable[[str], Spans]:
    def spans(text: str) -> Spans:
        return [m.span() for m in WORD.finditer(text)]

    return spans


@register_segmenter("jieba")
def jieba_segmenter(user_dicts: list[str]) -> Callable[[str], Spans]:
    """jieba's dictionary and algorithm, run by rjieba (its Rust port: identical words on People's Daily, ~11x
    faster) when installed, else by jieba itself."""
    entries = [entry for path in user_dicts for entry in read_user_dict(path)]
    try:
        import rjieba
    except ImportError:
        rjieba = None
    if rjieba is not None:
        engine = rjieba.Jieba()
        for word, freq, tag in entries:
            engine.add_word(word, freq, tag)

        def spans(text: str) -> Spans:
            return [(start, end) for word, start, end in engine.tokenize(text, "default", True) if not word.isspace()]

        return spans
    try:
        import jieba
    except ImportError:
        raise UsageError("--segmenter jieba needs rjieba or jieba: pip install rjieba jieba") from None
    import logging

    logging.getLogger(__name__).info("rjieba is not installed: segmenting with jieba (about 11x slower)")
    jieba.setLogLevel(logging.WARNING)
    tokenizer = jieba.Tokenizer()
    for word, freq, tag in entries:
        tokenizer.add_word(word, freq, tag)

    def spans(text: str) -> Spans:
        return [(start, end) for word, start, end in tokenizer.tokenize(text) if not word.isspace()]

    return spans


@functools.lru_cache(maxsize=32)
def read_user_dict(path: str) -> tuple[tuple[str, int | None, str | None], ...]:
    """jieba's user-dictionary format, `word [freq] [tag]` per line; any problem is an error naming file and line."""
    require_file(path, "--user_dict ")
    entries = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").strip().lstrip("\ufeff")
            except UnicodeDecodeError:
                raise UsageError(f"--user_dict {path}:{lineno}: invalid UTF-8") from None
            parts = line.split()
            if not parts:
                continue
            freq = tag = None
            rest = parts[1:]
            if rest and rest[0].isdigit():
                freq, rest = int(rest[0]), rest[1:]
            if rest:
                tag = rest[0]
            if len(parts) > 3 or (len(parts) == 3 and freq is None):
                raise UsageError(f"--user_dict {path}:{lineno}: expected 'word [freq] [tag]', got {line!r}")
            entries.append((parts[0], freq, tag))
    return tuple(entries)


@register_segmenter("auto")
def auto_segmenter(user_dicts: list[str]) -> Callable[[str], Spans]:
    words = whitespace_segmenter(user_dicts)
    chinese: list[Callable[[str], Spans]] = []  # built on first Han text: jieba's dictionary takes a second to load

    def spans(text: str) -> Spans:
        if not HAN.search(text):
            return words(text)
        if not chinese:
            chinese.append(jieba_segmenter(user_dicts))
        return chinese[0](text)

    return spans


def make_segmenter(name: str, user_dicts: list[str] | None = None) -> Callable[[str], Spans]:
    if name not in SEGMENTERS:
        raise UsageError(f"unknown segmenter {name!r} (choose from {', '.join(SEGMENTERS)})")
    return SEGMENTERS[name](list(user_dicts or []))


def unit_ids(offsets, spans: Spans) -> np.ndarray:
    """Per token, the index of the unit it belongs to: its word, or several words joined by a token that straddles
    them. -1 for tokens without characters (special tokens); a token in no word (a lone whitespace piece) is a unit
    of its own."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    start, end = offsets[:, 0], offsets[:, 1]
    has_chars = end > start
    bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    first = np.searchsorted(bounds[:, 1], start, side="right")  # first word ending after the token starts
    last = np.searchsorted(bounds[:, 0], end, side="left") - 1  # last word starting before the token ends
    in_word = has_chars & (first <= last)
    # Tokens come in text order: a token opens a new unit unless it overlaps a word an earlier token already reached.
    reached = np.maximum.accumulate(np.where(in_word, last, -1))
    reached_before = np.concatenate([[-1], reached[:-1]])
    opens = has_chars & (~in_word | (first > reached_before))
    ids = np.cumsum(opens) - 1
    ids[~has_chars] = -1
    return ids


class Lexicon:
    """Terms (one per line, any script) found in text, longest match first; each occurrence is one entity.

    In space-delimited text an occurrence must start and end at word boundaries ("cat" is not found in "concatenate");
    in Han text, which has no such boundaries, any occurrence counts.
    """

    def __init__(self, paths: list[str]):
        terms = set()
        for path in paths:
            require_file(path, "--lexicon ")
            try:
                with open(path, encoding="utf-8") as f:
                    terms.update(line.split("\t")[0].strip() for line in f)
            except UnicodeDecodeError as e:
                raise UsageError(f"--lexicon {path}: invalid UTF-8 ({e.reason})") from None
        terms.discard("")
        if paths and not terms:
            raise UsageError(f"--lexicon {', '.join(paths)}: no terms")
        self.terms = sorted(terms, key=lambda t: (-len(t), t))
        # Alternatives are tried in order at each position: longest first gives the longest match.
        self.pattern = re.compile("|".join(map(re.escape, self.terms))) if self.terms else None

    def spans(self, text: str) -> Spans:
        if self.pattern is None:
            return []
        found = []
        for m in self.pattern.finditer(text):
            s, e = m.span()
            if not HAN.match(text[s]) and s > 0 and text[s - 1].isalnum():
                continue
            if not HAN.match(text[e - 1]) and e < len(text) and text[e].isalnum():
                continue
            found.append((s, e))
        return found


def entity_ids(offsets, spans: Spans) -> np.ndarray:
    """Per token, the index of the entity occurrence it overlaps, or -1."""
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    first = np.searchsorted(bounds[:, 1], offsets[:, 0], side="right")
    overlaps = (offsets[:, 1] > offsets[:, 0]) & (first < len(bounds))
    overlaps[overlaps] &= bounds[first[overlaps], 0] < offsets[overlaps, 1]
    return np.where(overlaps, first, -1)


@dataclass(frozen=True)
class Boundaries:
    """What to compute at tokenization time: word units with `segmenter` (+ user dictionaries), and entity
    occurrences of the lexicon terms (if any lexicon is given)."""

    segmenter: str = "auto"
    user_dicts: tuple[str, ...] = ()
    lexicons: tuple[str, ...] = field(default=())

    def fingerprint(self) -> dict:
        """Identity for the tokenization cache: the settings and the content of every dictionary file."""
        from .fingerprint import file_sha256

        return {
            "segmenter": self.segmenter,
            "user_dicts": [file_sha256(p)[:16] for p in self.user_dicts],
            "lexicons": [file_sha256(p)[:16] for p in self.lexicons],
        }

    def check(self) -> None:
        """Read every dictionary and lexicon now (cached for tokenization), so bad files fail before any work."""
        for path in self.user_dicts:
            read_user_dict(path)
        if self.lexicons:
            cached_lexicon(self.lexicons)

    def annotate(self, texts: list[str], offsets: list[list[tuple[int, int]]]) -> dict[str, list]:
        """Per text: unit ids per token, the number of units, and (with a lexicon) entity ids per token.

        The batch is laid end to end (each text shifted past the previous one) so one vectorised pass labels all its
        tokens; units cannot cross texts because a gap separates them.
        """
        segment = cached_segmenter(self.segmenter, self.user_dicts)
        counts = np.fromiter(map(len, offsets), dtype=np.int64, count=len(offsets))
        shifts = np.cumsum([0] + [len(t) + 1 for t in texts[:-1]], dtype=np.int64)
        flat = flatten_pairs(offsets, int(counts.sum())) + np.repeat(shifts, counts)[:, None]
        out = self._local(unit_ids(flat, shifted_spans([segment(t) for t in texts], shifts)), counts, "word_ids")
        if self.lexicons:
            lexicon = cached_lexicon(self.lexicons)
            ids = entity_ids(flat, shifted_spans([lexicon.spans(t) for t in texts], shifts))
            out.update(self._local(ids, counts, "entity_ids"))
        return out

    @staticmethod
    def _local(ids: np.ndarray, counts: np.ndarray, name: str) -> dict[str, list]:
        """Batch-wide ids (increasing, -1 for none) split per text and renumbered from 0 within each text."""
        starts = np.concatenate([[0], np.cumsum(counts)])
        seen = np.maximum.accumulate(np.concatenate([[-1], ids]))  # highest id before each position
        first = seen[starts[:-1]] + 1  # the first id each text can hold
        local = [
            np.where(ids[a:b] >= 0, ids[a:b] - f, -1) for a, b, f in zip(starts[:-1], starts[1:], first, strict=True)
        ]
        totals = (seen[starts[1:]] + 1 - first).tolist()
        return {name: local, BOUNDARY_COUNTS[name]: totals}


def flatten_pairs(pairs: list[list[tuple[int, int]]], total: int) -> np.ndarray:
    """Lists of (start, end) pairs as one (total, 2) array, without a Python loop per pair."""
    return np.fromiter(
        itertools.chain.from_iterable(itertools.chain.from_iterable(pairs)), dtype=np.int64, count=2 * total
    ).reshape(total, 2)


def shifted_spans(spans_per_text: list[Spans], shifts: np.ndarray) -> np.ndarray:
    counts = np.fromiter(map(len, spans_per_text), dtype=np.int64, count=len(spans_per_text))
    return flatten_pairs(spans_per_text, int(counts.sum())) + np.repeat(shifts, counts)[:, None]


@functools.lru_cache(maxsize=8)
def cached_segmenter(name: str, user_dicts: tuple[str, ...]) -> Callable[[str], Spans]:
    return make_segmenter(name, list(user_dicts))


@functools.lru_cache(maxsize=8)
def cached_lexicon(paths: tuple[str, ...]) -> Lexicon:
    return Lexicon(list(paths))
