"""Reading the pools for `dontstop select`: the leakage guard, a uniform sample to fit on, streaming the pools into the
index, and reading the chosen documents back."""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from ..corpus import NamedPath, iter_corpus_batches
from .args import SelectArguments


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


def read_task(args: SelectArguments):
    """The queries (the task's training texts), and a guard that forbids every task text and has taken the
    training texts (a pool copy of one adds nothing to a TAPT corpus that holds them already)."""
    from ..tasks import read_texts

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


def metadata_columns(args: SelectArguments) -> list[str]:
    return [c.strip() for c in args.metadata_columns.split(",") if c.strip()]


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
