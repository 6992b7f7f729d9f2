"""Tokenize a corpus once, cache it, and cut it into training examples.

A tokenized corpus is two arrays, kept as `.npy` files under the cache directory and memory-mapped on reuse:
`ids` (every document's tokens, concatenated, no special tokens) and `offsets` (where each document starts).
The cache key covers the file's content (sha256), the tokenizer's full serialisation and the text column,
so a second run over the same file with the same tokenizer skips tokenization, whatever the block size or mode.

Two ways to cut it:
- packed (the default): documents joined with a separator token into one stream, cut into blocks of exactly
  `max_seq_length` tokens including the model's own framing ([CLS] ... [SEP] for BERT, <s> ... </s> for RoBERTa,
  nothing for GPT-2); the last block keeps the tail, shorter, instead of dropping it. Blocks are read from the
  (memory-mapped) arrays on demand; with `documents`, each also lists where its documents start (`segments`), so that
  attention can stay inside each one (`--packing documents`, see attention.py).
- line by line: each document is one example (a long one is split into several, never truncated), for short texts.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .fingerprint import content_hash, hash_json, tokenizer_hash
from .outputs import default_cache_dir
from .segment import BOUNDARY_COUNTS, Boundaries

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1  # bump when the cached arrays change meaning


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
    # Per-token boundary columns aligned with `ids` (unit ids unique in the whole corpus, -1 for none).
    columns: dict[str, np.ndarray] = field(default_factory=dict)

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

        def gather(array):
            parts = [array[self.offsets[i] : self.offsets[i + 1]] for i in indices]
            return np.concatenate(parts).astype(array.dtype, copy=False) if parts else array[:0]

        return TokenizedCorpus(gather(self.ids), offsets, {k: gather(v) for k, v in self.columns.items()})

    @classmethod
    def from_texts(cls, tokenizer, texts: list[str]) -> TokenizedCorpus:
        """A small corpus tokenized in memory, as `tokenize_corpus` tokenizes a file (no special tokens, no cache)."""
        lists = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum([len(ids) for ids in lists], out=offsets[1:])
        ids = np.fromiter((i for ids in lists for i in ids), dtype=np.int32, count=int(offsets[-1]))
        return cls(ids, offsets)

    @classmethod
    def concatenate(cls, corpora: list[TokenizedCorpus]) -> TokenizedCorpus:
        if len(corpora) == 1:
            return corpora[0]
        ids = np.concatenate([c.ids for c in corpora])
        shifts = np.cumsum([0] + [c.num_tokens for c in corpora[:-1]])
        offsets = np.concatenate([[0]] + [c.offsets[1:] + s for c, s in zip(corpora, shifts, strict=True)])
        columns = {}
        for name in set.intersection(*(set(c.columns) for c in corpora)):
            parts, base = [], 0
            for c in corpora:  # keep unit ids unique across files
                column = np.asarray(c.columns[name])
                parts.append(np.where(column >= 0, column + base, -1).astype(np.int32))
                base += int(column.max()) + 1 if len(column) else 0
            columns[name] = np.concatenate(parts)
        return cls(ids, offsets.astype(np.int64), columns)


def tokenize_corpus(
    path: str,
    tokenizer,
    text_column: str = "text",
    num_proc: int | None = None,
    cache_dir: str | None = None,
    boundaries: Boundaries | None = None,
) -> TokenizedCorpus:
    """Tokenize one corpus file (without special tokens), with word/entity boundaries if asked, or load it from the
    cache."""
    from .corpus import load_corpus  # datasets is slow to import; only needed on a cache miss

    cache_dir = cache_dir or default_cache_dir()
    key_material = {
        "format": CACHE_FORMAT,
        "file": content_hash(path),  # the content, never size and time: a rewritten file is tokenized anew
        "text_column": text_column,
        "tokenizer": tokenizer_hash(tokenizer),
        "boundaries": boundaries.fingerprint() if boundaries else None,
    }
    key = hash_json(key_material)[:24]
    entry = os.path.join(cache_dir, "tokenized", key)
    if os.path.exists(os.path.join(entry, "done")):
        logger.debug("%s: tokenized corpus found in the cache (%s)", path, entry)  # routine: --verbose shows it
        return read_cache_entry(entry)
    if boundaries is not None:
        check_offsets(tokenizer)

    dataset = load_corpus(path, text_column)

    def encode(batch):
        if boundaries is None:
            return {"input_ids": tokenizer(batch["text"], add_special_tokens=False)["input_ids"]}
        ids, offsets = encode_with_offsets(tokenizer, batch["text"])
        return {"input_ids": ids, **boundaries.annotate(batch["text"], offsets)}

    dataset = dataset.map(
        encode,
        batched=True,
        num_proc=num_proc if num_proc and num_proc > 1 else None,
        remove_columns=["text"],
        desc=f"Tokenizing {os.path.basename(path)}" + (f" ({boundaries.segmenter} words)" if boundaries else ""),
    )
    ids, offsets = flat_column(dataset, "input_ids")
    columns = {}
    for name, count in BOUNDARY_COUNTS.items():
        if name in dataset.column_names:
            local, _ = flat_column(dataset, name)
            # document-local unit ids -> ids unique in the corpus, so units never join across documents
            per_document = np.asarray(dataset[count])
            base = np.cumsum(per_document) - per_document
            doc_of_token = np.repeat(np.arange(len(base)), np.diff(offsets))
            columns[name] = np.where(local >= 0, local + base[doc_of_token], -1).astype(np.int32)
    corpus = TokenizedCorpus(ids.astype(np.int32), offsets, columns)

    write_cache_entry(entry, corpus, key_material)
    logger.info("%s: %d documents, %d tokens", path, corpus.num_documents, corpus.num_tokens)
    return corpus


def read_cache_entry(entry: str) -> TokenizedCorpus:
    columns = {
        name: np.load(os.path.join(entry, f"{name}.npy"), mmap_mode="r")
        for name in BOUNDARY_COUNTS
        if os.path.exists(os.path.join(entry, f"{name}.npy"))
    }
    ids = np.load(os.path.join(entry, "ids.npy"), mmap_mode="r")
    return TokenizedCorpus(ids, np.load(os.path.join(entry, "offsets.npy")), columns)


def write_cache_entry(entry: str, corpus: TokenizedCorpus, key_material: dict) -> None:
    """Write to a temporary directory and rename, so an interrupted run never leaves a half-written cache entry."""
    tmp = f"{entry}.tmp{os.getpid()}"
    os.makedirs(tmp, exist_ok=True)
    np.save(os.path.join(tmp, "ids.npy"), corpus.ids)
    np.save(os.path.join(tmp, "offsets.npy"), corpus.offsets)
    for name, column in corpus.columns.items():
        np.save(os.path.join(tmp, f"{name}.npy"), column)
    with open(os.path.join(tmp, "key.json"), "w") as f:
        json.dump(key_material, f, indent=1)
    open(os.path.join(tmp, "done"), "w").close()
    try:
        os.replace(tmp, entry)
    except OSError:  # another process won the race; its entry is as good as ours, and ours goes
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def flat_column(dataset, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (all values concatenated, offsets), straight from Arrow."""
    column = dataset.data.column(name).combine_chunks()
    offsets = column.offsets.to_numpy().astype(np.int64)
    return column.flatten().to_numpy(zero_copy_only=False), offsets - offsets[0]


def encode_with_offsets(tokenizer, texts: list[str]) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """(ids, character offsets) per text, without special tokens: straight from the Rust backend when there is one
    (what the wrapper calls anyway, minus its per-token Python conversions), else through the wrapper."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        encodings = backend.encode_batch(texts, add_special_tokens=False)
        return [e.ids for e in encodings], [e.offsets for e in encodings]
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return encoded["input_ids"], encoded["offset_mapping"]


def check_offsets(tokenizer) -> None:
    """Word boundaries come from character offsets; a tokenizer that cannot give them is an error, not a fallback."""
    from .errors import UsageError

    try:
        encoded = tokenizer("ab cd", add_special_tokens=False, return_offsets_mapping=True)
        ok = len(encoded["offset_mapping"]) == len(encoded["input_ids"])
    except (NotImplementedError, ValueError, TypeError):
        ok = False
    if not ok:
        raise UsageError(
            f"{tokenizer.name_or_path}: the tokenizer gives no character offsets, which word boundaries "
            "need (use a fast tokenizer, or --masking token)"
        )


def split_documents(corpus: TokenizedCorpus, percentage: float, seed: int) -> tuple[TokenizedCorpus, TokenizedCorpus]:
    """Hold out `percentage`% of the documents (at least one), chosen with a seeded shuffle; split by document so no
    held-out text leaks into a training block."""
    n = corpus.num_documents
    held = max(1, round(n * percentage / 100))
    if held >= n:
        raise ValueError(f"cannot hold out {percentage}% of {n} documents and keep any for training")
    order = np.random.default_rng(seed).permutation(n)
    return corpus.select(np.sort(order[held:])), corpus.select(np.sort(order[:held]))


def framed(framing: Framing):
    """frame(column, values): values wrapped in the model's special tokens (boundary columns: -1 around them)."""
    prefix, suffix = np.asarray(framing.prefix, dtype=np.int32), np.asarray(framing.suffix, dtype=np.int32)
    none_before, none_after = np.full(len(prefix), -1, dtype=np.int32), np.full(len(suffix), -1, dtype=np.int32)

    def frame(column: str, values: np.ndarray) -> np.ndarray:
        if column == "input_ids":
            return np.concatenate([prefix, values, suffix])
        return np.concatenate([none_before, values, none_after])

    return frame


def document_starts(document: np.ndarray, prefix: int) -> np.ndarray:
    """Where each document of a framed example starts, from the document of every content token: the first holds the
    prefix ([CLS]), every document its separator, the last the suffix."""
    changes = np.flatnonzero(document[1:] != document[:-1]) + 1 + prefix
    return np.concatenate([[0], changes]).astype(np.int32)


class PackedBlocks(torch.utils.data.Dataset):
    """Documents joined by the separator and cut into full blocks; only the last block may be shorter.

    Blocks are read straight from the corpus arrays (memory-mapped when they come from the cache): nothing is copied
    when the dataset is built, and dataloader workers share the pages. With `documents`, each block also says where its
    documents start (`segments`), for attention that stays inside each document (`--packing documents`).
    """

    def __init__(self, corpus: TokenizedCorpus, framing: Framing, max_seq_length: int, documents: bool = False):
        self.corpus = corpus
        self.framing = framing
        self.documents = documents
        self.content = max_seq_length - framing.overhead
        if self.content < 1:
            raise ValueError(
                f"max_seq_length {max_seq_length} leaves no room beside {framing.overhead} special tokens"
            )
        # The stream: every document followed by the separator, except that with a suffix the last separator is
        # redundant (with none, it ends the text). Document d starts at its offset + d in it.
        n = corpus.num_documents
        self.offsets = np.asarray(corpus.offsets)
        self.starts = self.offsets[:-1] + np.arange(n)
        self.size = corpus.num_tokens + n - (1 if framing.suffix and n else 0)
        self.frame = framed(framing)

    def __len__(self) -> int:
        return -(-self.size // self.content)

    def __getitem__(self, i: int) -> dict:
        positions = np.arange(i * self.content, min((i + 1) * self.content, self.size))
        document = np.searchsorted(self.starts, positions, side="right") - 1
        within = positions - self.starts[document]
        separator = within == self.offsets[document + 1] - self.offsets[document]
        source = np.where(separator, 0, self.offsets[document] + within)

        def read(array, filler):
            return np.where(separator, filler, np.asarray(array[source])).astype(np.int32, copy=False)

        item = {"input_ids": self.frame("input_ids", read(self.corpus.ids, self.framing.separator))}
        # Boundary columns hold -1 at separators: never part of a unit.
        item.update({name: self.frame(name, read(column, -1)) for name, column in self.corpus.columns.items()})
        if self.documents:
            item["segments"] = document_starts(document, len(self.framing.prefix))
        return item

    def lengths(self) -> np.ndarray:
        full = np.full(len(self), self.content + self.framing.overhead)
        if len(self):
            full[-1] = self.size - (len(self) - 1) * self.content + self.framing.overhead
        return full


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
        self.frame = framed(framing)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i: int) -> dict:
        piece = slice(self.starts[i], self.ends[i])
        item = {"input_ids": self.frame("input_ids", self.corpus.ids[piece])}
        item.update({name: self.frame(name, column[piece]) for name, column in self.corpus.columns.items()})
        return item

    def lengths(self) -> np.ndarray:
        return (self.ends - self.starts) + self.framing.overhead


class StreamingBlocks(torch.utils.data.IterableDataset):
    """Packed blocks from a streamed corpus, tokenized on the fly, for corpora larger than memory.

    Each yielded block carries its running index and the epoch, so masks stay a pure function of (seed, epoch, index).
    With several dataloader workers, worker w yields the blocks of batches w, w + W, ...: the DataLoader takes batches
    from workers in turn, so the batches are the same whatever the number of workers. With `documents`, blocks list
    where their documents start, as `PackedBlocks` do.
    """

    def __init__(
        self,
        paths: list[str],
        tokenizer,
        framing: Framing,
        max_seq_length: int,
        batch_size: int,
        text_column: str = "text",
        boundaries: Boundaries | None = None,
        documents: bool = False,
    ):
        self.paths = paths
        self.tokenizer = tokenizer
        self.framing = framing
        self.content = max_seq_length - framing.overhead
        self.batch_size = batch_size
        self.text_column = text_column
        self.boundaries = boundaries
        self.documents = documents
        self.epoch = 0
        if boundaries is not None:
            check_offsets(tokenizer)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _documents(self):
        """(token ids, {boundary column: corpus-unique unit ids}) per document, in corpus order."""
        from .corpus import load_corpus

        bases = dict.fromkeys(BOUNDARY_COUNTS, 0)
        for path in self.paths:
            stream = load_corpus(path, self.text_column, streaming=True)
            # `.iter()` rather than `for record in stream`: inside a dataloader worker, datasets would otherwise hand
            # each worker a different shard, while every worker here must see the whole stream to cut it the same way.
            for batch in stream.iter(batch_size=256):
                texts = batch["text"]
                if self.boundaries is None:
                    all_ids, notes = self.tokenizer(texts, add_special_tokens=False)["input_ids"], {}
                else:
                    all_ids, offsets = encode_with_offsets(self.tokenizer, texts)
                    notes = self.boundaries.annotate(texts, offsets)
                for d, ids in enumerate(all_ids):
                    columns = {}
                    for name, count in BOUNDARY_COUNTS.items():
                        if name in notes:
                            local = np.asarray(notes[name][d])
                            columns[name] = np.where(local >= 0, local + bases[name], -1)
                            bases[name] += notes[count][d]
                    yield ids, columns

    def _blocks(self):
        buffers: dict[str, list[int]] = {}
        for number, (ids, columns) in enumerate(self._documents()):
            pieces = {"input_ids": ids, **{k: v.tolist() for k, v in columns.items()}}
            # With --packing documents, the document of every token (a separator goes with the document it ends).
            ends = number - 1 if self.framing.suffix else number  # the document a separator added now ends
            separators = {"input_ids": self.framing.separator, "document": ends}
            if self.documents:
                pieces["document"] = [number] * len(ids)
            for name, values in pieces.items():
                buffer = buffers.setdefault(name, [])
                if buffer and self.framing.suffix:
                    buffer.append(separators.get(name, -1))
                buffer.extend(values)
                if not self.framing.suffix:
                    buffer.append(separators.get(name, -1))
            while len(buffers["input_ids"]) >= self.content:
                yield {name: buffer[: self.content] for name, buffer in buffers.items()}
                for buffer in buffers.values():
                    del buffer[: self.content]
        if buffers.get("input_ids"):
            yield buffers

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        frame = framed(self.framing)
        for index, block in enumerate(tqdm(self._blocks(), desc="Streaming blocks", disable=worker != 0, leave=False)):
            if (index // self.batch_size) % workers == worker:
                document = np.asarray(block.pop("document", []))
                item = {name: frame(name, np.asarray(values, dtype=np.int32)) for name, values in block.items()}
                if self.documents:
                    item["segments"] = document_starts(document, len(self.framing.prefix))
                yield {**item, "idx": index, "epoch": self.epoch}


# Above this share of unknown tokens in the first batch, a tokenizer does not fit the text (a Chinese text through
# an English vocabulary, say): training would learn to predict [UNK], with a loss that looks perfect.
UNKNOWN_LIMIT = 0.5


def check_unknown_tokens(batches: list[list[int]], tokenizer, allowed: bool, option: str) -> float:
    """The share of unknown tokens among the non-special tokens of the first batch; a UsageError above
    `UNKNOWN_LIMIT` unless `allowed` (the `option` that allows it is named)."""
    from .errors import UsageError

    unknown, special = tokenizer.unk_token_id, set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}
    tokens = [t for ids in batches for t in ids if t not in special]
    share = sum(t == unknown for t in tokens) / len(tokens) if tokens and unknown is not None else 0.0
    if share > UNKNOWN_LIMIT and not allowed:
        raise UsageError(
            f"{share:.0%} of the first batch's tokens are the unknown token {tokenizer.unk_token!r}: the tokenizer "
            f"does not fit this text (pass {option} to train anyway)"
        )
    return share
