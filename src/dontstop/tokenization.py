"""Tokenize a corpus once, cache it, and cut it into training examples.

A tokenized corpus is two arrays, kept as `.npy` files under the cache directory and memory-mapped on reuse:
`ids` (every document's tokens, concatenated, no special tokens) and `offsets` (where each document starts).
The cache key covers the file's identity (path, size, mtime), the tokenizer's full serialisation and the text column,
so a second run over the same file with the same tokenizer skips tokenization, whatever the block size or mode.

Two ways to cut it:
- packed (the default): documents joined with a separator token into one stream, cut into blocks of exactly
  `max_seq_length` tokens including the model's own framing ([CLS] ... [SEP] for BERT, <s> ... </s> for RoBERTa,
  nothing for GPT-2); the last block keeps the tail, shorter, instead of dropping it.
- line by line: each document is one example (a long one is split into several, never truncated), for short texts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cached arrays change meaning


def default_cache_dir() -> str:
    return os.environ.get("DONTSTOP_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "dontstop"))


@dataclass(frozen=True)
class Framing:
    """The special tokens a model wraps around one sequence, and the one that separates packed documents."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    separator: int

    @classmethod
    def from_tokenizer(cls, tokenizer) -> Framing:
        plain = tokenizer("a", add_special_tokens=False)["input_ids"]
        framed = tokenizer("a", add_special_tokens=True)["input_ids"]
        start = next(i for i in range(len(framed)) if framed[i : i + len(plain)] == plain)
        separator = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        if separator is None:
            raise ValueError(
                f"{tokenizer.name_or_path}: the tokenizer has neither a sep nor an eos token to separate documents"
            )
        return cls(tuple(framed[:start]), tuple(framed[start + len(plain) :]), separator)

    @property
    def overhead(self) -> int:
        return len(self.prefix) + len(self.suffix)


@dataclass
class TokenizedCorpus:
    ids: np.ndarray  # int32, all documents' tokens concatenated
    offsets: np.ndarray  # int64, len = documents + 1

    @property
    def num_documents(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def document(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def select(self, indices: np.ndarray) -> TokenizedCorpus:
        """A new corpus holding the given documents, in the given order."""
        lengths = np.diff(self.offsets)[indices]
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.concatenate([self.document(i) for i in indices]) if len(indices) else np.zeros(0, np.int32)
        return TokenizedCorpus(ids.astype(np.int32, copy=False), offsets)

    @classmethod
    def concatenate(cls, corpora: list[TokenizedCorpus]) -> TokenizedCorpus:
        if len(corpora) == 1:
            return corpora[0]
        ids = np.concatenate([c.ids for c in corpora])
        shifts = np.cumsum([0] + [c.num_tokens for c in corpora[:-1]])
        offsets = np.concatenate([[0]] + [c.offsets[1:] + s for c, s in zip(corpora, shifts, strict=True)])
        return cls(ids, offsets.astype(np.int64))


def tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    blob = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_identity(path: str) -> dict:
    """What makes a corpus file the same file: its path, size and modification time (a directory: all its files)."""
    path = os.path.abspath(path)
    files = [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(root, f) for root, _, names in os.walk(path) for f in names)
    return {"path": path, "files": [(f, os.path.getsize(f), os.stat(f).st_mtime_ns) for f in files]}


def tokenize_corpus(
    path: str,
    tokenizer,
    text_column: str = "text",
    num_proc: int | None = None,
    cache_dir: str | None = None,
) -> TokenizedCorpus:
    """Tokenize one corpus file (without special tokens), or load it from the cache."""
    from .corpus import load_corpus  # datasets is slow to import; only needed on a cache miss

    cache_dir = cache_dir or default_cache_dir()
    key_material = {
        "format": CACHE_FORMAT,
        "file": file_identity(path),
        "text_column": text_column,
        "tokenizer": tokenizer_fingerprint(tokenizer),
    }
    key = hashlib.sha256(json.dumps(key_material, sort_keys=True).encode()).hexdigest()[:24]
    entry = os.path.join(cache_dir, "tokenized", key)
    if os.path.exists(os.path.join(entry, "done")):
        logger.info("%s: tokenized corpus found in the cache (%s)", path, entry)
        return TokenizedCorpus(
            np.load(os.path.join(entry, "ids.npy"), mmap_mode="r"), np.load(os.path.join(entry, "offsets.npy"))
        )

    dataset = load_corpus(path, text_column)

    def encode(batch):
        return {"input_ids": tokenizer(batch["text"], add_special_tokens=False)["input_ids"]}

    dataset = dataset.map(
        encode,
        batched=True,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        remove_columns=["text"],
        desc=f"Tokenizing {os.path.basename(path)}",
    )
    column = dataset.data.column("input_ids").combine_chunks()
    ids = column.flatten().to_numpy(zero_copy_only=False).astype(np.int32)
    offsets = column.offsets.to_numpy().astype(np.int64)
    offsets = offsets - offsets[0]
    corpus = TokenizedCorpus(ids, offsets)

    # Write to a temporary directory and rename, so an interrupted run never leaves a half-written cache entry.
    tmp = f"{entry}.tmp{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    np.save(os.path.join(tmp, "ids.npy"), ids)
    np.save(os.path.join(tmp, "offsets.npy"), offsets)
    with open(os.path.join(tmp, "key.json"), "w") as f:
        json.dump(key_material, f, indent=1)
    open(os.path.join(tmp, "done"), "w").close()
    try:
        os.replace(tmp, entry)
    except OSError:  # another process won the race; its entry is as good as ours
        pass
    logger.info("%s: %d documents, %d tokens", path, corpus.num_documents, corpus.num_tokens)
    return corpus


def split_documents(corpus: TokenizedCorpus, percentage: float, seed: int) -> tuple[TokenizedCorpus, TokenizedCorpus]:
    """Hold out `percentage`% of the documents (at least one), chosen with a seeded shuffle; split by document so no
    held-out text leaks into a training block."""
    n = corpus.num_documents
    held = max(1, round(n * percentage / 100))
    if held >= n:
        raise ValueError(f"cannot hold out {percentage}% of {n} documents and keep any for training")
    order = np.random.default_rng(seed).permutation(n)
    return corpus.select(np.sort(order[held:])), corpus.select(np.sort(order[:held]))


class PackedBlocks(torch.utils.data.Dataset):
    """Documents joined by the separator and cut into full blocks; only the last block may be shorter."""

    def __init__(self, corpus: TokenizedCorpus, framing: Framing, max_seq_length: int):
        self.framing = framing
        self.content = max_seq_length - framing.overhead
        if self.content < 1:
            raise ValueError(
                f"max_seq_length {max_seq_length} leaves no room beside {framing.overhead} special tokens"
            )
        # Insert the separator after every document: one vectorised pass, then blocks are plain slices.
        docs = corpus.num_documents
        lengths = np.diff(corpus.offsets)
        stream = np.empty(corpus.num_tokens + docs, dtype=np.int32)
        sep_positions = np.cumsum(lengths + 1) - 1
        is_sep = np.zeros(len(stream), dtype=bool)
        is_sep[sep_positions] = True
        stream[is_sep] = framing.separator
        stream[~is_sep] = corpus.ids
        # With no suffix (GPT-2 style), the final separator is the end-of-text marker; with a suffix it is redundant.
        if framing.suffix and len(stream):
            stream = stream[:-1]
        self.stream = stream
        self.prefix = np.asarray(framing.prefix, dtype=np.int32)
        self.suffix = np.asarray(framing.suffix, dtype=np.int32)

    def __len__(self) -> int:
        return -(-len(self.stream) // self.content)

    def __getitem__(self, i: int) -> dict:
        chunk = self.stream[i * self.content : (i + 1) * self.content]
        return {"input_ids": np.concatenate([self.prefix, chunk, self.suffix])}

    def lengths(self) -> np.ndarray:
        full = np.full(len(self), self.content + self.framing.overhead)
        if len(self):
            full[-1] = len(self.stream) - (len(self) - 1) * self.content + self.framing.overhead
        return full

    @property
    def num_tokens(self) -> int:
        return int(self.lengths().sum())


class LineByLine(torch.utils.data.Dataset):
    """One example per document; a document longer than a block becomes several consecutive examples."""

    def __init__(self, corpus: TokenizedCorpus, framing: Framing, max_seq_length: int):
        self.corpus = corpus
        self.framing = framing
        content = max_seq_length - framing.overhead
        lengths = np.diff(corpus.offsets)
        pieces = np.maximum(1, -(-lengths // content))
        doc_of_piece = np.repeat(np.arange(len(lengths)), pieces)
        first_piece = np.repeat(np.cumsum(pieces) - pieces, pieces)
        self.starts = corpus.offsets[doc_of_piece] + (np.arange(len(doc_of_piece)) - first_piece) * content
        self.ends = np.minimum(self.starts + content, corpus.offsets[doc_of_piece + 1])
        self.prefix = np.asarray(framing.prefix, dtype=np.int32)
        self.suffix = np.asarray(framing.suffix, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        chunk = self.corpus.ids[self.starts[i] : self.ends[i]]
        return {"input_ids": np.concatenate([self.prefix, chunk, self.suffix])}

    def lengths(self) -> np.ndarray:
        return (self.ends - self.starts) + self.framing.overhead

    @property
    def num_tokens(self) -> int:
        return int(self.lengths().sum())


class StreamingBlocks(torch.utils.data.IterableDataset):
    """Packed blocks from a streamed corpus, tokenized on the fly, for corpora larger than memory.

    Each yielded block carries its running index and the epoch, so masks stay a pure function of (seed, epoch, index).
    With several dataloader workers, worker w yields the blocks of batches w, w + W, ...: the DataLoader takes batches
    from workers in turn, so the batches are the same whatever the number of workers.
    """

    def __init__(
        self,
        paths: list[str],
        tokenizer,
        framing: Framing,
        max_seq_length: int,
        batch_size: int,
        text_column: str = "text",
    ):
        self.paths = paths
        self.tokenizer = tokenizer
        self.framing = framing
        self.content = max_seq_length - framing.overhead
        self.batch_size = batch_size
        self.text_column = text_column
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _blocks(self):
        from .corpus import load_corpus

        buffer: list[int] = []
        for path in self.paths:
            stream = load_corpus(path, self.text_column, streaming=True)
            # `.iter()` rather than `for record in stream`: inside a dataloader worker, datasets would otherwise hand
            # each worker a different shard, while every worker here must see the whole stream to cut it the same way.
            for batch in stream.iter(batch_size=256):
                for ids in self.tokenizer(batch["text"], add_special_tokens=False)["input_ids"]:
                    if buffer and self.framing.suffix:
                        buffer.append(self.framing.separator)
                    buffer.extend(ids)
                    if not self.framing.suffix:
                        buffer.append(self.framing.separator)
                    while len(buffer) >= self.content:
                        yield buffer[: self.content]
                        del buffer[: self.content]
        if buffer:
            yield buffer

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        prefix, suffix = list(self.framing.prefix), list(self.framing.suffix)
        for index, chunk in enumerate(tqdm(self._blocks(), desc="Streaming blocks", disable=worker != 0, leave=False)):
            if (index // self.batch_size) % workers == worker:
                yield {
                    "input_ids": np.asarray(prefix + chunk + suffix, dtype=np.int32),
                    "idx": index,
                    "epoch": self.epoch,
                }
