"""Knowledge as text, visible only to its word: definitions (DictBERT, Yu et al. 2022) and facts (K-BERT, Liu et al.
2020) appended to an example after its text, for the glossary terms found in it.

    dontstop pretrain ... --glossary glossary.tsv [--triples facts.tsv] [--knowledge_terms runs/mine/long_tail.tsv]

An example's terms (`terms.py`; only those of `--knowledge_terms`, if given) are taken in the order they first occur,
each once; each term's text (its definition, then its facts; at most `--knowledge_tokens_per_term` tokens) is
appended behind the text with a separator token, while it fits in `--max_seq_length`. The text itself is cut to
`--max_seq_length` minus `--knowledge_tokens`, so every example keeps that room. An example is then laid out as

    [CLS] the kernel loads a module [SEP] | core of an operating system [SEP] | ...
    slot:  -1   0     -1    -1  1     -1  |  0    0  0  0   0         0    |  1 ...

`knowledge_slot` names, per token, the expanded term it belongs to (a term's occurrences in the text, and its
appended text) and `text_length` where the text ends; `visibility.py` turns both into the 4-D attention mask. An
example in which no term is expanded is returned unchanged: without a glossary, or with one that finds nothing,
every batch is what it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UsageError
from .terms import TermMatcher


@dataclass
class KnowledgeArguments:
    """The options that append knowledge to examples, mixed into the data options of `pretrain` and `finetune`."""

    glossary: str | None = field(
        default=None,
        metadata={
            "help": "Definitions to append to the examples that hold their term: TSV term<TAB>definition, or "
            ".jsonl with term and definition. The appended text attends only to itself and its term.",
            "path": "file",
        },
    )
    triples: str | None = field(
        default=None,
        metadata={
            "help": "Facts to append like definitions: TSV subject<TAB>relation<TAB>object, verbalised as "
            "'relation object' (K-BERT).",
            "path": "file",
        },
    )
    knowledge_terms: str | None = field(
        default=None,
        metadata={
            "help": "Expand only these terms: long_tail.tsv of `dontstop mine --long_tail`, a words.tsv, or one "
            "term per line (compared lower-cased).",
            "path": "file",
        },
    )
    knowledge_tokens: int | None = field(
        default=None,
        metadata={
            "bounds": "[1, inf)",
            "help": "Room kept in each example for appended knowledge, in tokens: the text is cut to "
            "--max_seq_length minus this. Default: a quarter of --max_seq_length.",
        },
    )
    knowledge_tokens_per_term: int = field(
        default=32,
        metadata={"bounds": "[1, inf)", "help": "Most tokens of one term's appended text (its separator included)."},
    )
    knowledge_attention: str = field(
        default="one_way",
        metadata={
            "help": "one_way: the appended text sees itself and its term, the text never sees it (DictBERT; the "
            "text's hidden states are those without knowledge). both_ways: the term also sees its appended text, "
            "so the knowledge reaches the rest through the term (K-BERT's visible matrix).",
            "choices": ["one_way", "both_ways"],
        },
    )

    @property
    def uses_knowledge(self) -> bool:
        return bool(self.glossary or self.triples)

    def check_knowledge(self, max_seq_length: int | None = None) -> None:
        """Every knowledge file read (a bad line is a UsageError naming it) and the room checked, before any work."""
        if not self.uses_knowledge:
            for option in ("knowledge_terms", "knowledge_tokens"):
                if getattr(self, option) is not None:
                    raise UsageError(f"--{option} needs --glossary or --triples")
            return
        from .sources import read_knowledge, read_terms

        read_knowledge(self.glossary, self.triples)
        if self.knowledge_terms:
            read_terms(self.knowledge_terms, "--knowledge_terms")
        if max_seq_length is not None and self.room(max_seq_length) >= max_seq_length - 2:
            raise UsageError(f"--knowledge_tokens {self.knowledge_tokens}: leaves no room for text in "
                             f"--max_seq_length {max_seq_length}")  # fmt: skip

    def room(self, max_seq_length: int) -> int:
        return self.knowledge_tokens or max_seq_length // 4

    def knowledge(self, tokenizer, separator: int) -> Knowledge | None:
        """The terms and their token ids, or None without --glossary and --triples."""
        if not self.uses_knowledge:
            return None
        from .sources import read_knowledge, read_terms

        texts = read_knowledge(self.glossary, self.triples)
        allowed = read_terms(self.knowledge_terms, "--knowledge_terms") if self.knowledge_terms else None
        return Knowledge(tokenizer, texts, allowed, separator, self.knowledge_tokens_per_term)


@dataclass
class Expansion:
    input_ids: np.ndarray  # the text, then the appended knowledge
    slots: np.ndarray  # per token: the expanded term it belongs to, or -1
    text_length: int
    terms: list[int]  # the expanded terms (indices into Knowledge.terms)
    found: int  # distinct terms found in the text (some may not have fitted)


class Knowledge:
    """The terms a glossary (and triples) define, each with the token ids of its appended text."""

    def __init__(self, tokenizer, texts: dict[str, str], allowed: set[str] | None, separator: int, per_term: int):
        self.terms = [term for term in texts if allowed is None or term.lower() in allowed]
        if not self.terms:
            raise UsageError("--knowledge_terms: none of its terms is defined in --glossary / --triples")
        self.matcher = TermMatcher(tokenizer, self.terms)
        encoded = tokenizer([texts[t] for t in self.terms], add_special_tokens=False)["input_ids"]
        self.appended = [np.asarray(ids[: per_term - 1] + [separator], dtype=np.int64) for ids in encoded]

    def expand(self, ids, max_length: int) -> Expansion:
        """The example `ids` with the knowledge of its terms appended while it fits in `max_length` tokens."""
        ids = np.asarray(ids, dtype=np.int64)
        occurrences = self.matcher.find(ids)
        order = list(dict.fromkeys(term for _, _, term in occurrences))
        room, chosen = max_length - len(ids), []
        for term in order:
            if len(self.appended[term]) <= room:
                chosen.append(term)
                room -= len(self.appended[term])
        slot_of = {term: slot for slot, term in enumerate(chosen)}
        slots = np.full(len(ids), -1, dtype=np.int64)
        for start, end, term in occurrences:
            if term in slot_of:
                slots[start:end] = slot_of[term]
        parts = [self.appended[term] for term in chosen]
        slots = np.concatenate([slots, *[np.full(len(p), s) for s, p in enumerate(parts)]])
        return Expansion(np.concatenate([ids, *parts]), slots, len(ids), chosen, len(order))

    def apply(self, item: dict, max_length: int) -> dict:
        """A dataset item with its knowledge (`input_ids` extended, `knowledge_slot`, `text_length`); unchanged when
        no term is expanded. Other per-token columns (word ids) keep the text's length."""
        expansion = self.expand(item["input_ids"], max_length)
        if not expansion.terms:
            return item
        dtype = np.asarray(item["input_ids"]).dtype
        return {**item, "input_ids": expansion.input_ids.astype(dtype, copy=False), "knowledge_slot": expansion.slots,
                "text_length": expansion.text_length}  # fmt: skip


class WithKnowledge(torch.utils.data.Dataset):
    """Examples with their terms' knowledge appended (see the module docstring); `stats()` counts what was
    expanded over all of them, once."""

    def __init__(self, dataset, knowledge: Knowledge, max_seq_length: int):
        self.dataset = dataset
        self.knowledge = knowledge
        self.max_seq_length = max_seq_length
        self.added: np.ndarray | None = None  # appended tokens per example, once stats() ran

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return self.knowledge.apply(self.dataset[i], self.max_seq_length)

    def lengths(self) -> np.ndarray:
        base = np.asarray(self.dataset.lengths())
        return base if self.added is None else base + self.added

    def stats(self) -> dict:
        from tqdm.auto import tqdm

        counts = np.zeros(len(self), dtype=np.int64)
        self.added = np.zeros(len(self), dtype=np.int64)
        distinct, found = set(), 0
        for i in tqdm(range(len(self)), desc="Finding glossary terms", leave=False):
            expansion = self.knowledge.expand(self.dataset[i]["input_ids"], self.max_seq_length)
            counts[i] = len(expansion.terms)
            self.added[i] = len(expansion.input_ids) - expansion.text_length
            distinct.update(expansion.terms)
            found += expansion.found
        return expansion_stats(counts, self.added, distinct, found, len(self.knowledge.terms))


def expansion_stats(counts, added, distinct: set, found: int, defined: int) -> dict:
    """What was expanded over a set of examples: for metrics.json, the model card and the report."""
    return {
        "examples": int(len(counts)),
        "examples_with_terms": int((counts > 0).sum()),
        "share_with_terms": float((counts > 0).mean()) if len(counts) else 0.0,
        "terms_expanded": int(counts.sum()),
        "distinct_terms": len(distinct),
        "terms_defined": defined,
        "terms_found": int(found),  # per example, distinct; more than expanded where the room ran out
        "appended_tokens": int(added.sum()),
    }


def expand_dataset(dataset, knowledge: Knowledge, max_length: int):
    """Tokenized task examples (a `datasets.Dataset` of framed `input_ids`, `attention_mask`, ...) with knowledge
    appended: `input_ids` extended, the other per-token columns continued (an attention mask of ones, the last token
    type), `knowledge_slot` and `text_length` added to every example (-1 slots where nothing was expanded). Returns
    (the dataset, what was expanded)."""
    import datasets

    columns = dataset.to_dict()
    per_token = [name for name in ("attention_mask", "token_type_ids", "special_tokens_mask") if name in columns]
    slots, lengths, counts, added, distinct, found = [], [], [], [], set(), 0
    for row, ids in enumerate(columns["input_ids"]):
        expansion = knowledge.expand(ids, max_length)
        extra = len(expansion.input_ids) - len(ids)
        columns["input_ids"][row] = expansion.input_ids.tolist()
        for name in per_token:
            columns[name][row] = (
                columns[name][row] + [1 if name == "attention_mask" else columns[name][row][-1]] * extra
            )
        slots.append(expansion.slots.tolist())
        lengths.append(expansion.text_length)
        counts.append(len(expansion.terms))
        added.append(extra)
        distinct.update(expansion.terms)
        found += expansion.found
    columns.update(knowledge_slot=slots, text_length=lengths)
    stats = expansion_stats(np.asarray(counts), np.asarray(added), distinct, found, len(knowledge.terms))
    return datasets.Dataset.from_dict(columns), stats
