"""The examples `dontstop pretrain` trains and evaluates on: tokenized (cached) corpora cut into packed blocks or
line-by-line examples, held-out sets split off by document, a streamed corpus, or domain text with general text
replayed into it; and what the model card says of each corpus."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch

from ..errors import UsageError
from ..masking import EpochIndexed
from ..replay import ReplayMix
from ..tokenization import LineByLine, PackedBlocks, StreamingBlocks, TokenizedCorpus, split_documents, tokenize_corpus
from .args import DataArguments
from .prompted import templated_corpus

logger = logging.getLogger(__name__)


@dataclass
class Datasets:
    train: object  # EpochIndexed, ReplayMix or StreamingBlocks
    eval: dict[str, EpochIndexed]  # held-out set name -> examples
    stats: dict = field(default_factory=lambda: {"train": [], "eval": {}})  # corpora, for the model card

    def describe(self, role: str, name: str | None, path: str, corpus: TokenizedCorpus | None) -> None:
        entry = {"path": path, "documents": corpus.num_documents if corpus else None,
                 "tokens": corpus.num_tokens if corpus else None}  # fmt: skip
        if role == "train":
            self.stats["train"].append(entry)
        elif role == "eval":
            self.stats["eval"][name] = entry
        else:
            self.stats[role] = entry


class DatasetBuilder:
    """Builds the `Datasets` of one run from its data options, the tokenizer and the block layout."""

    def __init__(self, data_args: DataArguments, tokenizer, framing, max_seq_length: int, seed: int, boundaries=None,
                 knowledge=None):  # fmt: skip
        self.args = data_args
        self.knowledge = knowledge  # knowledge.expand.Knowledge: appended to the training examples
        self.tokenizer = tokenizer
        self.framing = framing
        self.max_seq_length = max_seq_length
        self.seed = seed
        self.boundaries = boundaries
        self.documents = data_args.packing == "documents"
        self.kind = LineByLine if data_args.line_by_line else partial(PackedBlocks, documents=self.documents)

    def tokenize(self, path: str, text_column: str | None = None) -> TokenizedCorpus:
        a = self.args
        return tokenize_corpus(
            path, self.tokenizer, text_column or a.text_column, a.preprocessing_num_workers, a.data_cache_dir,
            self.boundaries,
        )  # fmt: skip

    def examples(self, corpus: TokenizedCorpus, limit: bool = False, knowledge=None):
        """The examples of a corpus; with `knowledge`, each keeps --knowledge_tokens of room for it."""
        if knowledge is not None:
            from ..knowledge.expand import WithKnowledge

            text = self.max_seq_length - self.args.room(self.max_seq_length)
            return WithKnowledge(self.kind(corpus, self.framing, text), knowledge, self.max_seq_length)
        dataset = self.kind(corpus, self.framing, self.max_seq_length)
        if limit and self.args.max_eval_samples and len(dataset) > self.args.max_eval_samples:
            return torch.utils.data.Subset(dataset, range(self.args.max_eval_samples))
        return dataset

    def hold_out(self, datasets: Datasets, corpus: TokenizedCorpus, name: str, what: str, option: str):
        """Split off --validation_split_percentage of the corpus's documents (seeded) as the eval set `name`; the
        rest, to train on."""
        percentage = self.args.validation_split_percentage
        try:
            corpus, held_out = split_documents(corpus, percentage, self.seed)
        except ValueError as e:
            raise UsageError(f"{option}: {e}") from None
        datasets.eval[name] = EpochIndexed(self.examples(held_out, limit=True))
        datasets.describe("eval", name, f"{percentage}% of the {what} documents", held_out)
        return corpus

    def build(self, batch_size: int) -> Datasets:
        a = self.args
        datasets = Datasets(train=None, eval={})
        if a.streaming:
            datasets.train = StreamingBlocks(
                a.train_file, self.tokenizer, self.framing, self.max_seq_length, batch_size, a.text_column,
                self.boundaries, documents=self.documents,
            )  # fmt: skip
            for path in a.train_file:
                datasets.describe("train", None, path, None)
        else:
            datasets.train = self.in_memory_training_set(datasets, batch_size)
        named = [("validation", a.validation_file)] if a.validation_file else []
        for name, path in named + [(n.name, n.path) for n in a.named_eval_files]:
            corpus = self.tokenize(path)
            datasets.eval[name] = EpochIndexed(self.examples(corpus, limit=True))
            datasets.describe("eval", name, path, corpus)
        return datasets

    def fitted_length(self, corpus: TokenizedCorpus, batch_size: int) -> int:
        """The default length, cut to what the longest document needs (rounded up to a multiple of 8) where longer
        blocks hold nothing more: one document per example (--line_by_line), or a corpus too small to fill one
        batch of default-length blocks. A 2,800-token file then trains in blocks of its longest document, not of
        512 tokens and a few GB of activations for a small model."""
        if corpus.num_documents == 0:
            return self.max_seq_length
        small = corpus.num_tokens < batch_size * self.max_seq_length
        if not (self.args.line_by_line or small):
            return self.max_seq_length
        longest = int(np.diff(corpus.offsets).max()) + self.framing.overhead
        fitted = min(self.max_seq_length, -(-longest // 8) * 8)
        if fitted < self.max_seq_length:
            logger.info("Blocks of %d tokens (the longest document needs %d; --max_seq_length sets it)", fitted,
                        longest)  # fmt: skip
        return fitted

    def in_memory_training_set(self, datasets: Datasets, batch_size: int):
        a = self.args
        corpora = []
        for path in a.train_file:
            corpora.append(self.tokenize(templated_corpus(path, a, self.tokenizer) if a.prompt else path))
            datasets.describe("train", None, path, corpora[-1])
        corpus = TokenizedCorpus.concatenate(corpora)
        if a.max_seq_length is None:
            self.max_seq_length = self.fitted_length(corpus, batch_size)
        if a.validation_file is None and a.validation_split_percentage > 0:
            corpus = self.hold_out(datasets, corpus, "validation", "training", "--validation_split_percentage")
        train = EpochIndexed(self.examples(corpus, knowledge=self.knowledge))
        if self.knowledge is not None:
            datasets.stats["knowledge"] = train.dataset.stats()
        if not a.replay_file:
            return train
        general = self.tokenize(a.replay_file, a.replay_text_column)
        # The forgetting measure: part of the general corpus held out by document, unless the user gave one.
        if "general" not in [n.name for n in a.named_eval_files] and a.validation_split_percentage > 0:
            general = self.hold_out(datasets, general, "general", "replay", f"--replay_file {a.replay_file}")
        datasets.describe("replay", None, a.replay_file, general)
        datasets.stats["replay"]["ratio"] = a.replay_ratio
        mix = ReplayMix(train.dataset, self.examples(general), a.replay_ratio, self.seed)
        mix.log_plan(a.replay_file)
        return mix
