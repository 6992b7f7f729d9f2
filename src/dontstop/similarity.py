"""Domain similarity: the words of each corpus, how much their vocabularies overlap, and how a tokenizer splits them.

The overlap follows Gururangan et al. (2020, §3.1 and Figure 2): the share of the K most frequent words (K = 10,000,
stopwords excluded) that two corpora have in common, |top_K(A) ∩ top_K(B)| / K. Their reported figures against
RoBERTa's pretraining text: news 54.1%, reviews 34.5%, biomedical 27.3%, computer science 19.2%. The paper's own
repository computes something else, the Jaccard index of all words with document frequency >= 3; it is offered here
under its own name (`jaccard`), not as the paper's measure.

Words are runs of letters, lower-cased (digits and punctuation split them); single letters ("s" of "it's", "n." of
a dictionary) are dropped, single Han characters kept. Chinese has no spaces, so a corpus in which at least 30% of
the letters are Han characters is segmented into words with jieba first. Stopwords:
scikit-learn's English list (318 words, from the Glasgow Information Retrieval Group) and the Chinese list of
stopwords-iso (794 words).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

LETTERS = re.compile(r"[^\W\d_]+")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# A corpus is treated as Chinese when at least this share of its letters are Han characters.
HAN_SHARE = 0.3


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    import stopwordsiso
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | frozenset(stopwordsiso.stopwords("zh"))


def detect_segmenter(texts: list[str]) -> str:
    """jieba when Han characters make up at least HAN_SHARE of the letters in `texts`, else whitespace."""
    letters = han = 0
    for text in texts:
        letters += sum(len(m) for m in LETTERS.findall(text))
        han += len(HAN.findall(text))
    return "jieba" if letters and han / letters >= HAN_SHARE else "whitespace"


def surface_words(text: str, segmenter: str) -> list[str]:
    """The words of `text` as written (case kept), in order."""
    if segmenter == "jieba":
        from .segment import cached_segmenter

        spans = cached_segmenter("jieba", ())(text)
        return [w for start, end in spans for w in LETTERS.findall(text[start:end])]
    return LETTERS.findall(text)


@dataclass
class Vocabulary:
    """Word statistics of one corpus sample."""

    name: str
    segmenter: str
    documents: int = 0
    counts: Counter = field(default_factory=Counter)  # lower-cased words, stopwords and single letters excluded
    document_frequency: Counter = field(default_factory=Counter)  # the same words: documents holding each
    surface: Counter = field(default_factory=Counter)  # every word as written, stopwords included

    @property
    def tokens(self) -> int:
        return sum(self.surface.values())

    def top(self, k: int) -> list[str]:
        """The k most frequent words; ties broken alphabetically, so the set is deterministic."""
        return [w for w, _ in sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))[:k]]


def count_words(
    name: str, texts: list[str], segmenter: str = "auto", stop: frozenset[str] | None = None, progress: bool = False
) -> Vocabulary:
    from tqdm.auto import tqdm

    if segmenter == "auto":
        segmenter = detect_segmenter(texts[:1000])
    stop = stopwords() if stop is None else stop
    vocab = Vocabulary(name, segmenter)
    for text in tqdm(texts, desc=f"words: {name}", unit="doc", disable=not progress):
        words = surface_words(text, segmenter)
        vocab.surface.update(words)
        kept = [w for w in (w.lower() for w in words) if w not in stop and (len(w) > 1 or HAN.match(w))]
        vocab.counts.update(kept)
        vocab.document_frequency.update(set(kept))
        vocab.documents += 1
    return vocab


def topk_overlap(a: Vocabulary, b: Vocabulary, k: int) -> float:
    """|top_k(a) ∩ top_k(b)| / k, the paper's measure, as a fraction. When a corpus has fewer than k distinct words,
    k shrinks to the smaller vocabulary, so that a corpus against itself is always 1."""
    top_a, top_b = set(a.top(k)), set(b.top(k))
    denominator = min(k, len(top_a), len(top_b))
    return len(top_a & top_b) / denominator if denominator else 0.0


def jaccard(a: Vocabulary, b: Vocabulary, min_df: int = 3) -> float:
    """|A ∩ B| / |A ∪ B| over the words in at least `min_df` documents (the paper repository's measure)."""
    set_a = {w for w, df in a.document_frequency.items() if df >= min_df}
    set_b = {w for w, df in b.document_frequency.items() if df >= min_df}
    union = set_a | set_b
    return len(set_a & set_b) / len(union) if union else 0.0


OVERLAPS = {
    "topk": lambda a, b, options: topk_overlap(a, b, options["top_k"]),
    "jaccard": lambda a, b, options: jaccard(a, b, options["min_df"]),
}


def overlap_matrix(vocabularies: list[Vocabulary], method: str = "topk", top_k: int = 10_000, min_df: int = 3):
    """Symmetric matrix of overlaps in percent (rows and columns in the order given)."""
    measure = OVERLAPS[method]
    options = {"top_k": top_k, "min_df": min_df}
    n = len(vocabularies)
    matrix = np.zeros((n, n))
    for i in range(n):
        for j in range(i, n):
            matrix[i, j] = matrix[j, i] = 100.0 * measure(vocabularies[i], vocabularies[j], options)
    return matrix


def fragmentation(tokenizer, vocab: Vocabulary) -> dict[str, float]:
    """How `tokenizer` splits the corpus's words, weighted by how often each occurs: mean sub-tokens per word, the
    share of words split into 3 or more pieces, and the share holding the unknown token."""
    words = list(vocab.surface)
    if not words:
        return {"subtokens_per_word": 0.0, "split_3plus": 0.0, "unknown_rate": 0.0}
    counts = np.array([vocab.surface[w] for w in words], dtype=np.float64)
    # A leading space gives byte-level BPE and SentencePiece tokenizers the word-initial form used in running text.
    encoded = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    pieces = np.array([len(ids) for ids in encoded], dtype=np.float64)
    unk = tokenizer.unk_token_id
    unknown = np.array([unk is not None and unk in ids for ids in encoded], dtype=np.float64)
    total = counts.sum()
    return {
        "subtokens_per_word": float((pieces * counts).sum() / total),
        "split_3plus": float(((pieces >= 3) * counts).sum() / total),
        "unknown_rate": float((unknown * counts).sum() / total),
    }
