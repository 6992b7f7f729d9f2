"""`bow`: hashed bag of words, TF-IDF weighted, reduced by truncated SVD (latent semantic analysis).

Light and fast, in the spirit of the bag-of-words VAMPIRE embeddings that Gururangan et al. (2020) use for kNN-TAPT,
without training a model. Words are hashed into `--hash_features` buckets, so no vocabulary is built over the pool;
the IDF weights and the SVD basis are fitted on the task texts plus a uniform sample of the pool (`--fit_docs`), and
only buckets seen in at least `--min_df` of those documents are kept (rarer ones are noise to the SVD and would make
its basis huge). Weights are sublinear: (1 + log tf) * idf, rows L2-normalised, as scikit-learn's TfidfTransformer
with `sublinear_tf=True, smooth_idf=True`.

English-like text is split into words (two or more word characters; scikit-learn's English stopwords dropped).
Chinese, Japanese or Korean text has no spaces, so a corpus whose letters are mostly Han uses single characters and
character bigrams instead (decided on the fit texts, `--bow_analyzer` overrides).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from ..errors import UsageError
from . import Embedder, normalize_rows

logger = logging.getLogger(__name__)

# One Han (or kana/hangul) character is a token; runs of other word characters of length >= 2 are words.
CJK_TOKENS = (
    r"(?u)[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]{2,}"
)
WORD_TOKENS = r"(?u)\b\w\w+\b"


class BowEmbedder(Embedder):
    name = "bow"
    needs_fit = True

    def __init__(self, dim: int = 256, hash_features: int = 2**20, min_df: int = 2, analyzer: str = "auto", seed=0):
        self.dim, self.hash_features, self.min_df, self.analyzer, self.seed = (
            dim,
            hash_features,
            min_df,
            analyzer,
            seed,
        )
        self.vectorizer = None

    def _vectorizer(self, analyzer: str):
        from sklearn.feature_extraction.text import HashingVectorizer

        common = dict(n_features=self.hash_features, alternate_sign=False, norm=None, dtype=np.float32)
        if analyzer == "cjk":
            return HashingVectorizer(token_pattern=CJK_TOKENS, ngram_range=(1, 2), **common)
        return HashingVectorizer(token_pattern=WORD_TOKENS, stop_words="english", **common)

    def fit(self, texts: list[str]) -> None:
        from sklearn.decomposition import TruncatedSVD
        from threadpoolctl import threadpool_limits

        from ..similarity import detect_segmenter

        if len(texts) < 2:
            raise UsageError("bow embedder: fewer than 2 texts to fit on (task examples plus pool documents)")
        analyzer = self.analyzer
        if analyzer == "auto":
            analyzer = "cjk" if detect_segmenter(texts[:2000]) == "jieba" else "words"
        self.analyzer = analyzer
        self.vectorizer = self._vectorizer(analyzer)
        counts = self.vectorizer.transform(texts)
        df = np.bincount(counts.indices, minlength=self.hash_features)
        kept = np.flatnonzero(df >= self.min_df)
        if len(kept) < 2:
            raise UsageError(f"bow embedder: fewer than 2 words occur in {self.min_df}+ documents; lower --min_df")
        # Column remapping: hashed bucket -> kept column (or -1), applied to every batch by one array lookup.
        self.column = np.full(self.hash_features, -1, dtype=np.int64)
        self.column[kept] = np.arange(len(kept))
        self.idf = (np.log((1 + len(texts)) / (1 + df[kept])) + 1).astype(np.float32)
        weights = self._tfidf(counts)
        dim = min(self.dim, len(kept) - 1, len(texts) - 1)
        if dim < self.dim:
            logger.warning("bow embedder: %d dimensions, not %d (only %d documents and %d words to fit on)",
                           dim, self.dim, len(texts), len(kept))  # fmt: skip
        self.dim = dim
        svd = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=5, random_state=self.seed)
        # One BLAS thread: a multi-threaded BLAS sums in an order that depends on the thread count, and the last bits
        # of the basis would decide near-ties between neighbours; the selection must not depend on the machine.
        with threadpool_limits(limits=1, user_api="blas"):
            svd.fit(weights)
        self.basis = np.ascontiguousarray(svd.components_.T, dtype=np.float32)  # (kept words, dim)
        self.explained_variance = float(svd.explained_variance_ratio_.sum())
        logger.info(
            "bow embedder: %s tokens, %d words kept of %d seen, %d dimensions (%.0f%% of the TF-IDF variance)",
            analyzer, len(kept), int((df > 0).sum()), dim, 100 * self.explained_variance,
        )  # fmt: skip

    def _tfidf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        columns = self.column[counts.indices]
        known = columns >= 0
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))[known]
        columns = columns[known]
        values = (1 + np.log(counts.data[known])) * self.idf[columns]
        weights = sp.csr_matrix((values, (rows, columns)), shape=(counts.shape[0], len(self.idf)), dtype=np.float32)
        norms = np.sqrt(np.asarray(weights.multiply(weights).sum(axis=1)).ravel())
        return sp.diags(1 / np.maximum(norms, 1e-12)).astype(np.float32) @ weights

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.vectorizer is None:
            raise RuntimeError("fit the bow embedder before embedding")
        return normalize_rows(self._tfidf(self.vectorizer.transform(texts)) @ self.basis)

    def describe(self) -> dict:
        return {
            "embedder": self.name,
            "dim": self.dim,
            "analyzer": self.analyzer,
            "hash_features": self.hash_features,
            "min_df": self.min_df,
            "words_kept": int(len(self.idf)) if self.vectorizer is not None else None,
            "explained_variance": getattr(self, "explained_variance", None),
        }


def build(args) -> BowEmbedder:
    return BowEmbedder(args.dim, args.hash_features, args.min_df, args.bow_analyzer, args.seed)
