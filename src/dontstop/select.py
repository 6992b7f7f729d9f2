"""What unlabeled text looks like my task? Select it from a large pool: kNN-TAPT, its random control, curated text.

    dontstop select --task_file train.jsonl --pool software=docs.jsonl --pool debian=unlabeled.jsonl --k 50 \\
        --output_dir runs/knn50

Gururangan et al. (2020, §5) embed every task example and every pool document with light embeddings, take each
task example's k nearest pool documents, and run TAPT on the union plus the task text (kNN-TAPT); a random sample of
the same size is the control. Here, in one command:

1. the pools are streamed (only a batch of text is ever in memory); a document whose normalised text equals a task
   train/dev/test text is excluded and counted (leakage), and so is a repeat of a document already indexed;
2. an embedder (`embedders/`: `bow` by default) turns each batch into unit vectors, added to a faiss index (exact
   inner product, or IVF/HNSW for pools of millions); `bow` is first fitted on the task texts plus a uniform sample
   of the pool;
3. `--strategy knn` takes each task example's k nearest documents (union, deduplicated, with the task examples that
   chose each); `--strategy random` draws the same number at random (seeded); `--curated` files are merged in;
4. the selected texts are read back from the pools and written as `selected.jsonl`, which `dontstop pretrain
   --train_file` reads as is, with `selection.json` (statistics), `distances.png` and `README.md`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
import unicodedata
from dataclasses import asdict, dataclass, field

import numpy as np

from .corpus import NamedPath, check_corpus_file, iter_corpus_batches, parse_named_path
from .errors import UsageError
from .outputs import check_output_dir, write_json

logger = logging.getLogger(__name__)

STRATEGIES = ("knn", "random")
INDEXES = ("flat", "ivf", "hnsw")
# Fields every output record may carry; a --metadata_columns name may not shadow one of them.
RECORD_FIELDS = ("text", "origin", "pool", "row", "line", "similarity", "distance", "selected_by", "file")


@dataclass
class SelectArguments:
    task_file: str | None = field(
        default=None,
        metadata={"help": "The task's training examples (.jsonl/.csv/.tsv, or .txt one per line): the queries."},
    )
    pool: list[str] | None = field(
        default=None,
        metadata={
            "help": "A pool to select from, NAME=PATH (any corpus format); repeat for more.",
            "action": "extend",
        },
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where selected.jsonl and the report go."})
    k: int = field(default=50, metadata={"help": "knn: documents taken per task example (before the union)."})
    strategy: str = field(
        default="knn",
        metadata={
            "help": "knn: each task example's k nearest pool documents; random: a seeded random sample of the "
            "same size as knn's selection (or --size), the paper's control.",
            "choices": list(STRATEGIES),
        },
    )
    size: int | None = field(
        default=None, metadata={"help": "random: documents to draw (default: as many as knn with this k selects)."}
    )
    curated: list[str] | None = field(
        default=None,
        metadata={
            "help": "Task-related unlabeled text you curated (any corpus format), merged into the selection "
            "(leakage-checked and deduplicated like the pool); repeat for more.",
            "action": "extend",
        },
    )
    include_task_text: bool = field(
        default=True,
        metadata={"help": "Also write the task's training texts into selected.jsonl (kNN-TAPT trains on both)."},
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "The task's dev examples: pool documents identical to one are excluded."}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "The task's test examples: pool documents identical to one are excluded."}
    )
    exclude_file: list[str] | None = field(
        default=None,
        metadata={"help": "More texts no selected document may equal (any task file format).", "action": "extend"},
    )
    text_column: str = field(default="text", metadata={"help": "Column of the text in the task files."})
    pool_text_column: str = field(default="text", metadata={"help": "Column of the text in the pools."})
    metadata_columns: str = field(
        default="id,source",
        metadata={"help": "Pool columns copied into selected.jsonl when a pool has them (comma-separated)."},
    )
    embedder: str = field(
        default="bow",
        metadata={
            "help": "bow: hashed TF-IDF bag of words reduced by SVD (fast, no model); model: mean-pooled hidden "
            "states of --embedding_model; sentence-transformers: a sentence-embedding model.",
            "choices": ["bow", "model", "sentence-transformers"],
        },
    )
    embedding_model: str | None = field(
        default=None, metadata={"help": "model / sentence-transformers: a hub id, local checkpoint or pkg:NAME."}
    )
    dim: int = field(default=256, metadata={"help": "bow: dimensions kept by the truncated SVD."})
    hash_features: int = field(default=2**20, metadata={"help": "bow: hash buckets for words."})
    min_df: int = field(default=2, metadata={"help": "bow: keep words in at least this many fit documents."})
    bow_analyzer: str = field(
        default="auto",
        metadata={
            "help": "bow: words (space-delimited text), cjk (characters and character bigrams), or auto "
            "(cjk when most letters of the fit texts are Han).",
            "choices": ["auto", "words", "cjk"],
        },
    )
    fit_docs: int = field(
        default=100_000,
        metadata={"help": "Pool documents sampled (uniformly, seeded) to fit bow and to train an IVF index."},
    )
    embed_batch_size: int = field(default=64, metadata={"help": "model / sentence-transformers: texts per batch."})
    max_seq_length: int = field(default=256, metadata={"help": "model / sentence-transformers: tokens per text."})
    read_batch_size: int = field(default=8192, metadata={"help": "Pool documents read and embedded at a time."})
    index: str = field(
        default="flat",
        metadata={
            "help": "flat: exact inner product; ivf: inverted lists (approximate; for millions of documents); "
            "hnsw: a graph (approximate; fast queries, slow to build).",
            "choices": list(INDEXES),
        },
    )
    nlist: int | None = field(default=None, metadata={"help": "ivf: lists (default: 4·sqrt(pool size))."})
    nprobe: int = field(default=32, metadata={"help": "ivf: lists searched per query."})
    hnsw_m: int = field(default=32, metadata={"help": "hnsw: neighbours per node."})
    ef_search: int = field(default=256, metadata={"help": "hnsw: search breadth (at least k is used)."})
    seed: int = field(default=42, metadata={"help": "Seed of the fit sample, the SVD and the random strategy."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into a non-empty --output_dir (never done without this flag)."}
    )


def fingerprint(text: str) -> int:
    """The identity used for leakage and duplicates: NFKC, case-folded, whitespace collapsed, then a 64-bit hash."""
    normal = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return int.from_bytes(hashlib.blake2b(normal.encode("utf-8"), digest_size=8).digest(), "little")


@dataclass
class PoolStats:
    name: str
    path: str
    documents: int = 0  # records read, empty ones included
    empty: int = 0
    leaked: dict = field(default_factory=dict)  # task split -> documents equal to one of its texts
    duplicates: int = 0
    indexed: int = 0  # (curated files are not indexed: all they admit is selected)
    selected: int = 0


class Guard:
    """Texts nothing selected may equal (the task's splits), and texts already taken (so nothing is taken twice)."""

    def __init__(self):
        self.forbidden: dict[int, str] = {}  # fingerprint -> the task split it belongs to
        self.taken: set[int] = set()

    def forbid(self, texts, split: str) -> None:
        for text in texts:
            self.forbidden.setdefault(fingerprint(text), split)

    def admit(self, text: str, stats: PoolStats) -> bool:
        """True if `text` may be taken (and mark it taken); otherwise count why not in `stats`."""
        key = fingerprint(text)
        split = self.forbidden.get(key)
        if split is not None:
            stats.leaked[split] = stats.leaked.get(split, 0) + 1
            return False
        if key in self.taken:
            stats.duplicates += 1
            return False
        self.taken.add(key)
        return True


def progress(total: int | None, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="doc", unit_scale=True, smoothing=0.1)


def sample_pools(pools: list[NamedPath], args: SelectArguments) -> tuple[list[str], int]:
    """A uniform sample of up to --fit_docs non-empty pool documents (random keys, the smallest kept), and the
    number of records read, in one streaming pass with memory bounded by twice the sample."""
    rng = np.random.default_rng(args.seed)
    keys, texts, records = np.empty(0), [], 0
    bar = progress(None, "sampling pools")
    for pool in pools:
        for batch in iter_corpus_batches(pool.path, args.pool_text_column, (), args.read_batch_size, check=False):
            records += len(batch["text"])
            bar.update(len(batch["text"]))
            batch_texts = [t for t in batch["text"] if t.strip()]
            keys = np.concatenate([keys, rng.random(len(batch_texts))])
            texts += batch_texts
            if len(texts) > 2 * args.fit_docs:
                keep = np.argpartition(keys, args.fit_docs)[: args.fit_docs]
                keys, texts = keys[keep], [texts[i] for i in keep]
    bar.close()
    if len(texts) > args.fit_docs:
        keep = np.argpartition(keys, args.fit_docs)[: args.fit_docs]
        texts = [texts[i] for i in keep]
    return texts, records


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


def pool_spec(spec: str) -> str:
    """NAME=PATH as given, or a bare PATH named after its file (`--pool docs/software.jsonl` is `software`)."""
    if "=" in spec:
        return spec
    stem = os.path.splitext(os.path.basename(spec.rstrip("/")))[0]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', stem) or 'pool'}={spec}"


def validate(args: SelectArguments) -> list[NamedPath]:
    if not args.task_file:
        raise UsageError("--task_file is required (the task's training examples)")
    if not args.pool:
        raise UsageError("--pool NAME=PATH is required (repeat it for several pools)")
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    pools = [parse_named_path(pool_spec(spec), "--pool") for spec in args.pool]
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise UsageError(f"--pool names must be distinct (got {', '.join(names)})")
    for p in pools:
        if not os.path.exists(p.path):
            raise UsageError(f"--pool {p.name}={p.path}: no such file or directory")
    for path in args.curated or []:
        if not os.path.exists(path):
            raise UsageError(f"--curated {path}: no such file or directory")
    for option in ("k", "dim", "hash_features", "min_df", "fit_docs", "embed_batch_size", "read_batch_size"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option} must be at least 1")
    if args.size is not None and args.size < 0:
        raise UsageError("--size must be 0 or more")
    if args.size is not None and args.strategy != "random":
        raise UsageError("--size applies to --strategy random only (knn's size follows from --k)")
    for option in ("nlist", "nprobe", "hnsw_m", "ef_search"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UsageError(f"--{option} must be at least 1")
    clash = set(metadata_columns(args)) & set(RECORD_FIELDS)
    if clash:
        raise UsageError(f"--metadata_columns: {', '.join(sorted(clash))} would overwrite a field of the output")
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    # Read whole once, here: a bad line is reported before any work (the passes below then skip the check).
    for path in [p.path for p in pools] + list(args.curated or []):
        check_corpus_file(path, args.pool_text_column)
    return pools


def metadata_columns(args: SelectArguments) -> list[str]:
    return [c.strip() for c in args.metadata_columns.split(",") if c.strip()]


def read_task(args: SelectArguments):
    """The queries (the task's training texts), and a guard that forbids every task text and has taken the
    training texts (a pool copy of one adds nothing to a TAPT corpus that holds them already)."""
    from .tasks import read_texts

    task = read_texts(args.task_file, args.text_column)
    guard = Guard()
    guard.forbid(task.texts, "train")
    for split, path in (("dev", args.validation_file), ("test", args.test_file)):
        if path:
            guard.forbid(read_texts(path, args.text_column).texts, split)
    for path in args.exclude_file or []:
        guard.forbid(read_texts(path, args.text_column).texts, "excluded")
    task_records = []
    for text, line in zip(task.texts, task.lines, strict=True):
        key = fingerprint(text)
        if key not in guard.taken:
            guard.taken.add(key)
            task_records.append({"text": text, "origin": "task", "file": args.task_file, "line": line})
    return task, guard, task_records


def take_curated(args: SelectArguments, guard: Guard) -> tuple[list[dict], list[PoolStats]]:
    """Every curated text the guard admits. Taken before the pools, so a pool copy of one is a duplicate."""
    records, all_stats = [], [PoolStats("curated", path) for path in args.curated or []]
    for stats in all_stats:
        for batch in iter_corpus_batches(stats.path, args.pool_text_column, (), args.read_batch_size, check=False):
            for offset, text in enumerate(batch["text"]):
                if not text.strip():
                    stats.empty += 1
                elif guard.admit(text, stats):
                    records.append(
                        {"text": text, "origin": "curated", "file": stats.path, "row": stats.documents + offset}
                    )
                    stats.selected += 1
            stats.documents += len(batch["text"])
    return records, all_stats


def index_pools(pools, args: SelectArguments, embedder, index, guard: Guard, expected: int | None):
    """Stream the pools into the index, batch by batch. Only where each indexed document came from is kept: its
    pool (`owner`) and its record number there (`rows`), both indexed by faiss id."""
    all_stats = [PoolStats(p.name, p.path) for p in pools]
    owner, rows = [np.zeros(0, dtype=np.int32)], [np.zeros(0, dtype=np.int64)]
    bar = progress(expected, f"embedding pools ({embedder.name})")
    for p, stats in enumerate(all_stats):
        for batch in iter_corpus_batches(stats.path, args.pool_text_column, (), args.read_batch_size, check=False):
            texts, positions = [], []
            for offset, text in enumerate(batch["text"]):
                if not text.strip():
                    stats.empty += 1
                elif guard.admit(text, stats):
                    texts.append(text)
                    positions.append(stats.documents + offset)
            stats.documents += len(batch["text"])
            if texts:
                index.add(embedder.embed(texts))
                owner.append(np.full(len(texts), p, dtype=np.int32))
                rows.append(np.asarray(positions, dtype=np.int64))
                stats.indexed += len(texts)
            bar.update(len(batch["text"]))
    bar.close()
    return all_stats, np.concatenate(owner), np.concatenate(rows)


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


def read_back(args, pool_stats, chosen, ids, owner, rows, similarity, task_lines) -> list[dict]:
    """The selected documents' records, most similar first, read in one more pass over the pools that hold any."""
    order = np.argsort(-similarity, kind="stable")
    wanted = [{} for _ in pool_stats]  # per pool: record number -> output position
    for position, i in enumerate(order):
        wanted[owner[ids[i]]][int(rows[ids[i]])] = position
    records: list[dict | None] = [None] * len(ids)
    columns = metadata_columns(args)
    for p, stats in enumerate(pool_stats):
        stats.selected = len(wanted[p])
        if not wanted[p]:
            continue
        row = 0
        for batch in iter_corpus_batches(
            stats.path, args.pool_text_column, columns, args.read_batch_size, check=False
        ):
            for offset in range(len(batch["text"])):
                position = wanted[p].get(row + offset)
                if position is None:
                    continue
                i = order[position]
                record = {"text": batch["text"][offset], "origin": "pool", "pool": stats.name, "row": row + offset}
                record["similarity"] = round(float(similarity[i]), 6)
                record["distance"] = round(1.0 - float(similarity[i]), 6)
                if args.strategy == "knn":
                    record["selected_by"] = [task_lines[q] for q in chosen[int(ids[i])]]
                record.update({c: batch[c][offset] for c in columns if batch[c][offset] is not None})
                records[position] = record
            row += len(batch["text"])
    return records


def run_select(args: SelectArguments) -> dict:
    """Select, write the output directory, and return the statistics written to selection.json."""
    import faiss

    from .embedders import build_embedder

    pools = validate(args)
    started = tick = time.perf_counter()
    timings: dict[str, float] = {}
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    task, guard, task_records = read_task(args)
    embedder = build_embedder(args)

    # Fit (bow) and train (ivf) on a uniform sample of the pools; this pass also counts the records.
    sample, expected = [], None
    if embedder.needs_fit or args.index == "ivf":
        sample, expected = sample_pools(pools, args)
        if embedder.needs_fit:
            embedder.fit(task.texts + sample)
        timings["fit_s"], tick = time.perf_counter() - tick, time.perf_counter()
    queries = embed_all(embedder, task.texts, args.read_batch_size, "embedding task examples")
    train = (
        embed_all(embedder, sample, args.read_batch_size, "embedding the IVF sample") if args.index == "ivf" else None
    )
    index = build_index(args, embedder.dim, expected or 0, train)
    del sample, train
    curated, curated_stats = take_curated(args, guard)
    pool_stats, owner, rows = index_pools(pools, args, embedder, index, guard, expected)
    if index.ntotal == 0:
        raise UsageError("no pool document is left to select from (all empty, leaked or duplicate)")
    timings["embed_s"], tick = time.perf_counter() - tick, time.perf_counter()

    chosen, k = choose(args, index, queries)
    ids = np.array(sorted(chosen), dtype=np.int64)
    similarity = nearest_query_similarity(index, ids, queries)
    timings["search_s"], tick = time.perf_counter() - tick, time.perf_counter()
    selected = read_back(args, pool_stats, chosen, ids, owner, rows, similarity, task.lines)
    records = (task_records if args.include_task_text else []) + curated + selected
    timings["read_back_s"] = time.perf_counter() - tick
    timings["total_s"] = time.perf_counter() - started

    report = statistics(args, task, pool_stats, curated_stats, chosen, similarity, k, embedder, index, records)
    report["timings"] = {key: round(value, 2) for key, value in timings.items()}
    write_outputs(args, records, report, similarity, owner[ids], pool_stats)
    logger.info(
        "selected %d pool documents (%s) for %d task examples in %.0f s; wrote %s",
        len(ids), ", ".join(f"{s.name} {s.selected}" for s in pool_stats), len(task), timings["total_s"],
        os.path.join(args.output_dir, "selected.jsonl"),
    )  # fmt: skip
    return report


def statistics(args, task, pool_stats, curated_stats, chosen, similarity, k, embedder, index, records) -> dict:
    total_selected = sum(s.selected for s in pool_stats)
    total_indexed = sum(s.indexed for s in pool_stats)
    pools = []
    for s in pool_stats:
        entry = asdict(s)
        entry["share_of_selected"] = round(100 * s.selected / total_selected, 2) if total_selected else 0.0
        entry["share_of_indexed"] = round(100 * s.indexed / total_indexed, 2) if total_indexed else 0.0
        pools.append(entry)
    report = {
        "strategy": args.strategy,
        "k": k if args.strategy == "knn" else None,
        "task_file": args.task_file,
        "task_examples": len(task),
        "task_sha256": task.sha256,
        "selected_pool_documents": total_selected,
        "records_written": len(records),
        "records_by_origin": {o: sum(r["origin"] == o for r in records) for o in ("task", "curated", "pool")},
        "pools": pools,
        "curated": [asdict(s) for s in curated_stats],
        "leaked": {  # pools and curated files together
            split: sum(s.leaked.get(split, 0) for s in pool_stats + curated_stats)
            for split in sorted({split for s in pool_stats + curated_stats for split in s.leaked})
        },
        "duplicates": sum(s.duplicates for s in pool_stats),
        "embedder": embedder.describe(),
        "index": {"kind": args.index, "documents": int(index.ntotal)},
        "settings": asdict(args),
    }
    if len(similarity):
        distance = 1.0 - similarity
        report["distance_to_nearest_task_example"] = {
            "mean": round(float(distance.mean()), 4),
            **{f"p{q}": round(float(np.percentile(distance, q)), 4) for q in (10, 50, 90)},
        }
    if args.strategy == "knn":
        votes = np.array([len(v) for v in chosen.values()])
        report["task_examples_per_document"] = {
            "mean": round(float(votes.mean()), 2) if len(votes) else 0.0,
            "max": int(votes.max()) if len(votes) else 0,
        }
        report["overlap_between_neighbourhoods"] = (
            round(1 - len(chosen) / (k * len(task)), 4) if len(task) and k else 0.0
        )
    return report


def write_outputs(args, records, report, similarity, owners, pool_stats) -> None:
    import json

    from .outputs import staged

    with staged(args.output_dir) as path:
        with open(path("selected.jsonl"), "w", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        histogram(path("distances.png"), 1.0 - similarity, owners, [s.name for s in pool_stats])
        write_json(path("selection.json"), report)
        write_json(path("dontstop_config.json"), asdict(args))
        write_readme(path("README.md"), report)


def histogram(path: str, distance: np.ndarray, owners: np.ndarray, names: list[str]) -> None:
    """Distances of the selected documents to their nearest task example, stacked by pool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    present = [p for p in range(len(names)) if (owners == p).any()]
    if present:
        ax.hist([distance[owners == p] for p in present], bins=40, stacked=True, label=[names[p] for p in present])
        ax.legend(title="pool")
    ax.set_xlabel("cosine distance to the nearest task example")
    ax.set_ylabel("selected documents")
    ax.set_title("Selected documents by distance")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def write_readme(path: str, report: dict) -> None:
    s = report["settings"]
    what = (
        f"each task example's {report['k']} nearest pool documents (union, deduplicated)"
        if report["strategy"] == "knn"
        else "a seeded random sample of the pool (the control for kNN selection)"
    )
    lines = [
        "# Selected text for task-adaptive pretraining",
        "",
        f"Made by `dontstop select`: {what}, for the {report['task_examples']:,} task examples of "
        f"`{report['task_file']}`, embedded with `{report['embedder']['embedder']}` "
        f"({report['embedder']['dim']} dimensions) and searched with a `{report['index']['kind']}` faiss index.",
        "",
        f"`selected.jsonl` holds {report['records_written']:,} records: "
        + ", ".join(f"{n:,} {origin}" for origin, n in report["records_by_origin"].items() if n)
        + ". Pretrain on it with:",
        "",
        "```sh",
        f"dontstop pretrain --model_name_or_path MODEL --train_file {os.path.join(s['output_dir'], 'selected.jsonl')}"
        " --output_dir runs/tapt",
        "```",
        "",
        "| pool | documents | leaked (excluded) | duplicates | indexed | selected | share of selected "
        "| share of all indexed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in report["pools"]:
        leaked = sum(p["leaked"].values())
        lines.append(
            f"| {p['name']} | {p['documents']:,} | {leaked:,} | {p['duplicates']:,} | {p['indexed']:,} | "
            f"{p['selected']:,} | {p['share_of_selected']:.1f}% | {p['share_of_indexed']:.1f}% |"
        )
    lines += [""]
    if report["leaked"]:
        lines.append(
            "Leakage guard: pool documents whose text equals a task text (after NFKC, case folding and whitespace "
            "collapsing) were excluded: " + ", ".join(f"{n:,} from {split}" for split, n in report["leaked"].items())
            + "."
        )  # fmt: skip
        lines.append("")
    distance = report.get("distance_to_nearest_task_example")
    if distance:
        lines += [
            f"Cosine distance of the selected documents to their nearest task example: mean {distance['mean']:.3f}, "
            f"10th/50th/90th percentile {distance['p10']:.3f} / {distance['p50']:.3f} / {distance['p90']:.3f}.",
            "",
            "![distances](distances.png)",
            "",
        ]
    t = report["timings"]
    lines.append(f"Time: {t['total_s']:.0f} s (" + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in t.items()) + ").")
    lines.append("")
    lines.append("Every setting is in `selection.json` and `dontstop_config.json`.")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


EXAMPLES = """examples:
  # kNN-TAPT: each task example's 50 nearest documents from two pools, task dev/test texts guarded against
  dontstop select --task_file train.jsonl --validation_file dev.jsonl --test_file test.jsonl \\
      --pool software=software.jsonl --pool debian=unlabeled.jsonl --k 50 --output_dir runs/knn50
  dontstop pretrain --model_name_or_path roberta-base --train_file runs/knn50/selected.jsonl --output_dir runs/tapt

  # the paper's control: a random sample of the same size
  dontstop select --task_file train.jsonl --pool software=software.jsonl --pool debian=unlabeled.jsonl --k 50 \\
      --strategy random --output_dir runs/random50

  # millions of documents: an approximate index; or a real encoder for the embeddings
  dontstop select --task_file train.jsonl --pool web=web.jsonl --index ivf --output_dir runs/knn-web
  dontstop select --task_file train.jsonl --pool web=web.jsonl --embedder sentence-transformers \\
      --embedding_model all-MiniLM-L6-v2 --output_dir runs/knn-sbert
"""


def make_parser():
    from .cli import stage_parser

    return stage_parser(
        (SelectArguments,), prog="dontstop select", description=__doc__.split("\n\n")[0], epilog=EXAMPLES
    )


def main(argv: list[str]) -> int:
    from .cli import parse_with_config

    (args,) = parse_with_config(make_parser(), argv)
    run_select(args)
    return 0
