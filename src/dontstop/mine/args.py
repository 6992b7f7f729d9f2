"""The options of `dontstop mine`."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ngrams import ENTRY_BYTES


@dataclass
class MineArguments:
    corpus: list[str] | None = field(
        default=None,
        metadata={"help": "The domain corpus NAME=PATH (any format pretrain reads); repeat to mine several together.",
                  "action": "extend", "path": "named"},
    )  # fmt: skip
    against: list[str] | None = field(
        default=None,
        metadata={"help": "General corpora NAME=PATH to rank against (domain specificity); repeatable.",
                  "action": "extend", "path": "named"},
    )  # fmt: skip
    output_dir: str | None = field(
        default=None, metadata={"help": "Where words.tsv and the dictionaries go.", "fingerprint": False}
    )
    language: str = field(
        default="auto",
        metadata={
            "help": "chinese: character n-grams; words: word n-grams (space-delimited text); auto: chinese when at "
            "least 30%% of the letters of a sample are Han.",
            "choices": ["auto", "chinese", "words"],
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text in jsonl/csv/parquet files."})
    max_len: int = field(default=6, metadata={"help": "chinese: longest candidate, in characters."})
    max_words: int = field(default=4, metadata={"help": "words: longest phrase, in words."})
    min_freq: int = field(default=5, metadata={"help": "Fewest occurrences of a candidate."})
    min_cohesion: float = field(
        default=3.0, metadata={"help": "Lowest cohesion: PMI of the weakest split, in nats (3.0 = 20x chance)."}
    )
    min_entropy: float = field(
        default=1.0, metadata={"help": "Lowest left and right branching entropy, in nats (1.0 = e neighbours)."}
    )
    cohesion_cap: float = field(
        default=8.0, metadata={"help": "Cohesion counts in the score up to this many nats (rare strings of rare "
                                       "characters have huge PMI)."}
    )  # fmt: skip
    length_penalty: float = field(
        default=0.5,
        metadata={
            "help": "The score is divided by the candidate's length (characters or words) to this power: longer "
            "strings gain cohesion and lose frequency by construction. 0 favours compounds and names."
        },
    )
    min_domain_ratio: float = field(
        default=1.0, metadata={"help": "With --against: drop candidates no more frequent here than there (ratio)."}
    )
    max_against_count: int | None = field(
        default=None,
        metadata={"help": "With --against: drop candidates that occur more than N times there; 0 keeps only words "
                  "absent from the --against corpora: the words new in --corpus (new text against old)."},
    )  # fmt: skip
    top: int | None = field(default=None, metadata={"help": "Write only the best N candidates (default: all)."})
    only_new: bool = field(
        default=False, metadata={"help": "Leave out the words already in a base dictionary (see --base_dict)."}
    )
    base_dict: list[str] | None = field(
        default=None,
        metadata={"help": "Dictionaries (one word per line, or jieba's 'word freq tag') whose words are flagged "
                  "in_base_dict (default for chinese: jieba's own dictionary).", "action": "extend", "path": "file"},
    )  # fmt: skip
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "words: also report single words its tokenizer splits into many pieces.", "path": "model"},
    )
    min_pieces: int = field(default=3, metadata={"help": "With a model: pieces a single word must split into."})
    workers: int = field(default=1, metadata={"help": "Processes counting shards in parallel.", "fingerprint": False})
    shard_chars: int = field(default=1_000_000, metadata={"help": "Characters of text per shard (memory per worker)."})
    max_entries: int = field(
        default=10_000_000,
        metadata={"help": f"Most n-grams held ({ENTRY_BYTES} bytes each); beyond it, lossy counting prunes."},
    )
    long_tail: bool = field(
        default=False,
        metadata={"help": "Also rank the mined words the model is likely not to know (long_tail.tsv): rare against "
                  "--against, cut into many pieces, hard for the model (needs --model_name_or_path and --against)."},
    )  # fmt: skip
    long_tail_top: int = field(
        default=1000, metadata={"help": "--long_tail: score the best N mined words (the model's loss costs time)."}
    )
    long_tail_contexts: int = field(
        default=4, metadata={"help": "--long_tail: occurrences per word the masked-LM loss is averaged over."}
    )
    glossary: str | None = field(
        default=None,
        metadata={"help": "--long_tail: a glossary (term<TAB>definition); long_tail.tsv says which words it "
                  "defines.", "path": "file"},
    )  # fmt: skip
    only_in_glossary: bool = field(
        default=False, metadata={"help": "--long_tail: keep only the words --glossary defines."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "Write into a non-empty --output_dir (never done without this flag).", "fingerprint": False},
    )
