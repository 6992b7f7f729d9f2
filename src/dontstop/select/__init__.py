"""What unlabeled text looks like my task? Select it from a large pool: kNN-TAPT, its random control, curated text.

    dontstop select --task_file train.jsonl --pool software=docs.jsonl --pool debian=unlabeled.jsonl --k 50 \
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

import logging
import os
import re
import time

import numpy as np

from ..corpus import NamedPath, check_corpus_file, parse_named_path
from ..errors import UsageError
from ..outputs import check_output_dir
from ..records import Selection
from .args import SelectArguments
from .output import statistics, write_outputs
from .pools import fingerprint, index_pools, metadata_columns, read_back, read_task, sample_pools, take_curated
from .search import build_index, choose, embed_all, nearest_query_similarity

logger = logging.getLogger(__name__)

# Fields every output record may carry; a --metadata_columns name may not shadow one of them.
RECORD_FIELDS = ("text", "origin", "pool", "row", "line", "similarity", "distance", "selected_by", "file")


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


def run_select(args: SelectArguments) -> Selection:
    """Select, write the output directory, and return the record written to selection.json."""
    import faiss

    from ..embedders import build_embedder

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
    report.timings = {key: round(value, 2) for key, value in timings.items()}
    write_outputs(args, records, report, similarity, owner[ids], pool_stats)
    logger.info(
        "selected %d pool documents (%s) for %d task examples in %.0f s; wrote %s",
        len(ids), ", ".join(f"{s.name} {s.selected}" for s in pool_stats), len(task), timings["total_s"],
        os.path.join(args.output_dir, "selected.jsonl"),
    )  # fmt: skip
    return report


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


ARGUMENTS = (SelectArguments,)
run = run_select
__all__ = ["SelectArguments", "fingerprint", "run_select"]
