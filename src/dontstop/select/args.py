"""The options of `dontstop select`."""

from __future__ import annotations

from dataclasses import dataclass, field

STRATEGIES = ("knn", "random")
INDEXES = ("flat", "ivf", "hnsw")


@dataclass
class SelectArguments:
    task_file: str | None = field(
        default=None,
        metadata={
            "help": "The task's training examples (.jsonl/.csv/.tsv, or .txt one per line): the queries.",
            "path": "file",
        },
    )
    pool: list[str] | None = field(
        default=None,
        metadata={
            "help": "A pool to select from, NAME=PATH (any corpus format); repeat for more.",
            "action": "extend",
            "path": "named",
        },
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Where selected.jsonl and the report go.", "fingerprint": False}
    )
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
            "path": "file",
            "action": "extend",
        },
    )
    include_task_text: bool = field(
        default=True,
        metadata={"help": "Also write the task's training texts into selected.jsonl (kNN-TAPT trains on both)."},
    )
    validation_file: str | None = field(
        default=None,
        metadata={"help": "The task's dev examples: pool documents identical to one are excluded.", "path": "file"},
    )
    test_file: str | None = field(
        default=None,
        metadata={"help": "The task's test examples: pool documents identical to one are excluded.", "path": "file"},
    )
    exclude_file: list[str] | None = field(
        default=None,
        metadata={
            "help": "More texts no selected document may equal (any task file format).",
            "action": "extend",
            "path": "file",
        },
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
        default=None,
        metadata={"help": "model / sentence-transformers: a hub id, local checkpoint or pkg:NAME.", "path": "model"},
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
        default=False,
        metadata={"help": "Write into a non-empty --output_dir (never done without this flag).", "fingerprint": False},
    )
