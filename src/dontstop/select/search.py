"""The search of `dontstop select`: embedding in batches, the faiss index, each task example's k nearest documents or
a random draw of the same size, and each chosen document's similarity to its nearest task example."""

from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import UsageError
from .args import SelectArguments
from .pools import progress

logger = logging.getLogger(__name__)


def embed_all(embedder, texts: list[str], batch_size: int, desc: str) -> np.ndarray:
    """Embed in batches under a progress bar (a model embedder takes minutes over thousands of texts)."""
    bar = progress(len(texts), desc)
    vectors = []
    for start in range(0, len(texts), batch_size):
        vectors.append(embedder.embed(texts[start : start + batch_size]))
        bar.update(len(vectors[-1]))
    bar.close()
    return np.concatenate(vectors) if vectors else np.zeros((0, embedder.dim), dtype=np.float32)


def build_index(args: SelectArguments, dim: int, expected: int, train: np.ndarray | None):
    import faiss

    if args.index == "flat":
        return faiss.IndexFlatIP(dim)
    if args.index == "hnsw":
        index = faiss.IndexHNSWFlat(dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(args.ef_search, args.k)
        return index
    if len(train) == 0:
        raise UsageError("--index ivf: the pools hold no text to train the index on")
    # IVF: faiss wants at least 39 training points per list; the lists default to the usual 4·sqrt(n).
    nlist = args.nlist or int(4 * math.sqrt(max(expected, 1)))
    nlist = max(1, min(nlist, len(train) // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(train)
    index.nprobe = min(args.nprobe, nlist)
    index.make_direct_map()  # to read back the selected documents' vectors
    logger.info("IVF index: %d lists, %d probed per query", nlist, index.nprobe)
    return index


def knn_select(index, queries: np.ndarray, k: int) -> dict[int, list[int]]:
    """{document id: [query positions that chose it]} for each query's k nearest documents."""
    _, ids = index.search(queries, k)
    chosen: dict[int, list[int]] = {}
    for query, row in enumerate(ids):
        for doc in row:
            if doc >= 0:  # approximate indexes return -1 when they find fewer than k
                chosen.setdefault(int(doc), []).append(query)
    return chosen


def nearest_query_similarity(index, ids: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Cosine similarity of each selected document to its nearest task example (exact, whatever the index)."""
    import faiss

    if len(ids) == 0:
        return np.zeros(0, dtype=np.float32)
    by_query = faiss.IndexFlatIP(queries.shape[1])
    by_query.add(queries)
    vectors = index.reconstruct_batch(ids.astype(np.int64))
    similarity, _ = by_query.search(np.ascontiguousarray(vectors, dtype=np.float32), 1)
    return similarity[:, 0]


def choose(args: SelectArguments, index, queries: np.ndarray) -> tuple[dict[int, list[int]], int]:
    """{faiss id: [query positions that chose it]} (empty lists for random), and the k used."""
    k = min(args.k, index.ntotal)
    if k < args.k:
        logger.warning("--k %d is more than the %d documents indexed; using k=%d", args.k, index.ntotal, k)
    chosen: dict[int, list[int]] = {}
    if args.strategy == "knn" or args.size is None:  # random's default size is knn's
        chosen = knn_select(index, queries, k)
    if args.strategy == "random":
        size = min(len(chosen) if args.size is None else args.size, index.ntotal)
        picked = np.random.default_rng(args.seed).choice(index.ntotal, size=size, replace=False)
        chosen = {int(doc): [] for doc in picked}
    return chosen, k
