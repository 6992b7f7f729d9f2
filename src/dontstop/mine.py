"""Which words does my domain have that the model lacks? New-word and phrase discovery without supervision.

    dontstop mine --corpus domain=reviews.jsonl [--against general=news.txt] --output_dir runs/mine

The classic method of Chinese practice (Matrix67, "互联网时代的社会语言学", 2012), at scale. A string is a word when
it is frequent, holds together (cohesion: even its weakest binary split a|b has high pointwise mutual information
log p(ab) / (p(a) p(b))) and is free at both ends (high left and right branching entropy: many different characters
come before and after it). Chinese (any text whose letters are mostly Han) is mined over characters, candidates of
2..`--max_len` characters; space-delimited text over words, phrases of 2..`--max_words` words, plus, with
`--model_name_or_path`, single words that the model's tokenizer splits into `--min_pieces` or more pieces.

The score ranks the candidates that pass every threshold: score = log(freq) * min(left, right entropy) *
min(cohesion, `--cohesion_cap`) / length ** `--length_penalty` (entropies and cohesion in nats): all three signals
must be present, a string of rare characters cannot win on cohesion alone, and a long string, which gains cohesion
and loses frequency by construction, pays for its length. The penalty's default, 0.5, was chosen on People's Daily
against its gold segmentation (`benchmarks/mine_quality.py`), whose words are short; 0 ranks compounds and names
higher. With `--against` corpora, the domain ratio (frequency per token here over
frequency per token there, each count plus one) multiplies in as its log, and candidates at or below
`--min_domain_ratio` are dropped: general words fall away, and what the domain has new or characteristic rises.

Counting is `ngrams.py`: hashed n-grams counted with numpy in shards by `--workers` processes, merged into tables of at
most `--max_entries` entries (lossy counting beyond that, with the error bound reported), so memory does not grow
with the corpus. Outputs: `words.tsv` (sorted by score), `user_dict.txt` (for jieba and `dontstop pretrain
--user_dict`), `lexicon.txt` (for `--masking entity --lexicon`), `metrics.json` and `README.md`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import tempfile
import time
import unicodedata
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import UsageError
from .ngrams import ENTRY_BYTES, FIELDS, NgramCounts, Table, count_shard, occurrences
from .outputs import check_output_dir, write_json

logger = logging.getLogger(__name__)

# Function characters that begin or end almost no Chinese word but many spurious strings (的确 and 目的 are lost;
# thousands of "X的" fragments go). Characters that end real words often (在: 现在, 是: 但是) are left out.
STOP_START = frozenset("的了着和与及或就都也被把吗呢吧啊之")
STOP_END = frozenset("的了着和与及或被把吗呢吧啊")
WORD_TOKEN = re.compile(r"\w+(?:[-'.+#]\w+)*|[^\w\s]")


@dataclass
class MineArguments:
    corpus: list[str] | None = field(
        default=None,
        metadata={"help": "The domain corpus NAME=PATH (any format pretrain reads); repeat to mine several together.",
                  "action": "extend"},
    )  # fmt: skip
    against: list[str] | None = field(
        default=None,
        metadata={"help": "General corpora NAME=PATH to rank against (domain specificity); repeatable.",
                  "action": "extend"},
    )  # fmt: skip
    output_dir: str | None = field(default=None, metadata={"help": "Where words.tsv and the dictionaries go."})
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
    top: int | None = field(default=None, metadata={"help": "Write only the best N candidates (default: all)."})
    only_new: bool = field(
        default=False, metadata={"help": "Leave out the words already in a base dictionary (see --base_dict)."}
    )
    base_dict: list[str] | None = field(
        default=None,
        metadata={"help": "Dictionaries (one word per line, or jieba's 'word freq tag') whose words are flagged "
                  "in_base_dict (default for chinese: jieba's own dictionary).", "action": "extend"},
    )  # fmt: skip
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "words: also report single words its tokenizer splits into many pieces."}
    )
    min_pieces: int = field(default=3, metadata={"help": "With a model: pieces a single word must split into."})
    workers: int = field(default=1, metadata={"help": "Processes counting shards in parallel."})
    shard_chars: int = field(default=1_000_000, metadata={"help": "Characters of text per shard (memory per worker)."})
    max_entries: int = field(
        default=10_000_000,
        metadata={"help": f"Most n-grams held ({ENTRY_BYTES} bytes each); beyond it, lossy counting prunes."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Write into a non-empty --output_dir (never done without this flag)."}
    )


# --- texts to codes --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def word_characters() -> np.ndarray:
    """For each code point of the Basic Multilingual Plane: is it a letter or a digit (part of a candidate) rather
    than a separator? (Beyond it, the few code points a text holds are looked up one by one.)"""
    return np.array([unicodedata.category(chr(cp))[0] in "LN" for cp in range(0x10000)], dtype=bool)


def is_word_character(codes: np.ndarray) -> np.ndarray:
    table = word_characters()
    inside = codes < len(table)
    out = np.zeros(len(codes), dtype=bool)
    out[inside] = table[codes[inside]]
    if not inside.all():
        beyond = np.unique(codes[~inside])
        letters = beyond[[unicodedata.category(chr(int(cp)))[0] in "LN" for cp in beyond]]
        out[~inside] = np.isin(codes[~inside], letters)
    return out


def chinese_codes(texts: list[str]) -> np.ndarray:
    """Code points, with 0 for everything that is not a letter or digit (punctuation, spaces, document ends)."""
    joined = "\n".join(texts) + "\n"
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).copy()
    codes[~is_word_character(codes)] = 0
    return codes


@functools.lru_cache(maxsize=1_000_000)
def word_id(word: str) -> int:
    """A stable 64-bit id (never 0, the separator): the same in every worker process and every corpus."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little") or 1


def word_codes(texts: list[str], vocabulary: dict[int, str] | None = None) -> np.ndarray:
    """Lower-cased word ids, with 0 for punctuation and document ends; `vocabulary` collects id -> word."""
    codes = []
    for text in texts:
        for token in WORD_TOKEN.findall(text.lower()):
            if token[0].isalnum() or token[0] == "_":
                i = word_id(token)
                codes.append(i)
                if vocabulary is not None:
                    vocabulary[i] = token
            else:
                codes.append(0)
        codes.append(0)
    return np.array(codes, dtype=np.uint64)


def count_texts(texts: list[str], language: str, max_n: int):
    """One shard (a worker's job): its tables, the words behind its ids (words only), its characters and bytes."""
    vocabulary: dict[int, str] | None = {} if language == "words" else None
    codes = chinese_codes(texts) if language == "chinese" else word_codes(texts, vocabulary)
    return count_shard(codes, max_n), vocabulary, sum(map(len, texts)), sum(len(t.encode("utf-8")) for t in texts)


def shards(paths: list, args: MineArguments):
    """Whole documents, about --shard_chars characters at a time, from every corpus in turn."""
    from .corpus import iter_corpus_batches

    batch, size = [], 0
    for corpus in paths:
        for records in iter_corpus_batches(corpus.path, args.text_column, (), 1024, check=False):
            for text in records["text"]:
                if not text.strip():
                    continue
                batch.append(text)
                size += len(text)
                if size >= args.shard_chars:
                    yield batch
                    batch, size = [], 0
    if batch:
        yield batch


def count_texts_to_file(texts: list[str], language: str, max_n: int, directory: str):
    """count_texts in a worker, its tables handed back through a file in `directory` (on tmpfs where there is one):
    a pipe would pickle a shard's hundreds of MB of tables, and that costs more than counting them."""
    tables, vocabulary, characters, nbytes = count_texts(texts, language, max_n)
    arrays = {f"{name}{n}": getattr(t, name) for n, t in enumerate(tables) for name in FIELDS}
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".npz", delete=False) as f:
        np.savez(f, **arrays)
    return f.name, vocabulary, characters, nbytes


def load_tables(path: str, max_n: int) -> list[Table]:
    with np.load(path) as arrays:
        tables = [Table(**{name: arrays[f"{name}{n}"] for name in FIELDS}) for n in range(max_n)]
    os.remove(path)
    return tables


def in_parallel(work, items, workers: int):
    """Yield work(*item) for each item in order, with at most `workers` + 1 items in flight (bounded memory)."""
    if workers <= 1:
        for item in items:
            yield work(*item)
        return
    import multiprocessing

    # fork where there is one: workers start at once, without importing anything again
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.apply_async(work, item))
            while len(pending) > workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def count_corpora(paths: list, language: str, max_n: int, args: MineArguments, desc: str):
    """Global n-gram tables of the corpora, the words behind the ids (words), and the text's size."""
    from tqdm.auto import tqdm

    counts = NgramCounts(max_n, args.max_entries)
    vocabulary: dict[int, str] = {}
    size = {"characters": 0, "bytes": 0}
    # The bar counts text bytes against the files' sizes (markup included), so it ends a little short of 100%.
    bar = tqdm(total=sum(os.path.getsize(p.path) for p in paths), unit="B", unit_scale=True, desc=desc)
    shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=shm, prefix="dontstop-mine-") as scratch:  # removed even on Ctrl-C
        if args.workers > 1:
            work = count_texts_to_file
            items = ((texts, language, max_n, scratch) for texts in shards(paths, args))
        else:
            work, items = count_texts, ((texts, language, max_n) for texts in shards(paths, args))
        for tables, words, characters, nbytes in in_parallel(work, items, args.workers):
            prunings = counts.prunings
            counts.add(load_tables(tables, max_n) if isinstance(tables, str) else tables)
            if words:
                vocabulary.update(words)
            if vocabulary and counts.prunings > prunings:  # the words of pruned unigrams are pruned with them
                kept = set(counts.tables[0].last.tolist())
                vocabulary = {i: w for i, w in vocabulary.items() if i in kept}
            size["characters"] += characters
            size["bytes"] += nbytes
            bar.update(nbytes)
    bar.close()
    return counts, vocabulary, size


# --- candidates and their statistics ------------------------------------------------------------------------------


@dataclass
class Candidates:
    """Parallel arrays, one entry per candidate that passed every threshold."""

    words: list[str] = field(default_factory=list)
    ns: list[int] = field(default_factory=list)  # the lengths, in the order of the per-length lists below
    keys: list[np.ndarray] = field(default_factory=list)  # per length: the hashes (for counting elsewhere)
    freq: list[np.ndarray] = field(default_factory=list)
    cohesion: list[np.ndarray] = field(default_factory=list)
    cohesion_max: list[np.ndarray] = field(default_factory=list)
    left: list[np.ndarray] = field(default_factory=list)
    right: list[np.ndarray] = field(default_factory=list)
    funnel: dict = field(default_factory=dict)  # how many candidates each step left, per length

    @property
    def lengths(self) -> np.ndarray:
        """Each candidate's length (characters or words)."""
        return np.repeat(self.ns, [len(k) for k in self.keys])

    def column(self, name: str) -> np.ndarray:
        parts = getattr(self, name)
        return np.concatenate(parts) if parts else np.zeros(0)


def spell(codes: np.ndarray, language: str, vocabulary: dict[int, str]) -> list[str]:
    if language == "chinese":
        return ["".join(map(chr, row)) for row in codes.tolist()]
    return [" ".join(vocabulary.get(c, "?") for c in row) for row in codes.tolist()]


def acceptable(codes: np.ndarray, words: list[str], language: str) -> np.ndarray:
    """The surface filters: no digits-only strings, no function characters (or stopwords) at either end."""
    if language == "chinese":
        starts = np.isin(codes[:, 0], [ord(c) for c in STOP_START])
        ends = np.isin(codes[:, -1], [ord(c) for c in STOP_END])
        return ~starts & ~ends & np.array([not w.isdigit() for w in words], dtype=bool)
    from .similarity import stopwords

    stop = stopwords()
    ok = []
    for word in words:
        parts = word.split(" ")
        numeric = all(p.replace(".", "").isdigit() for p in parts)
        ok.append(not numeric and parts[0] not in stop and parts[-1] not in stop)
    return np.array(ok, dtype=bool)


def fragmented(tokenizer, word: str, min_pieces: int) -> bool:
    """Does the tokenizer split `word` (as it appears after a space) into min_pieces or more, or not know it at all?"""
    pieces = tokenizer.tokenize(" " + word)
    return len(pieces) >= min_pieces or (tokenizer.unk_token is not None and tokenizer.unk_token in pieces)


def find_candidates(counts: NgramCounts, vocabulary: dict, language: str, args: MineArguments, tokenizer=None):
    """Every n-gram passing the thresholds, with its statistics: numbers first (on hashes and codes, vectorised),
    strings only for the survivors."""
    found = Candidates()
    shortest = 1 if (language == "words" and tokenizer is not None) else 2
    longest = args.max_len if language == "chinese" else args.max_words
    for n in range(shortest, longest + 1):
        table = counts.tables[n - 1]
        funnel = found.funnel[n] = {"distinct": len(table)}
        frequent = table.counts >= args.min_freq
        keys, freq = table.keys[frequent], table.counts[frequent]
        codes, decoded = counts.decode(n, keys)
        funnel["frequent"] = len(keys)
        if n >= 2:
            cohesion, cohesion_max = counts.cohesion(codes, freq)
        else:  # a single word has no split
            cohesion = cohesion_max = np.full(len(keys), np.nan)
        left, right = counts.branching_entropy(n, keys, freq)
        keep = decoded & (np.minimum(left, right) >= args.min_entropy)
        if n >= 2:
            keep &= cohesion >= args.min_cohesion
        funnel["passed_thresholds"] = int(keep.sum())
        words = spell(codes[keep], language, vocabulary)
        surface = acceptable(codes[keep], words, language)
        if n == 1:  # single words: only those the model's tokenizer breaks into many pieces (or does not know)
            surface &= np.array(
                [w.isalpha() and len(w) > 2 and fragmented(tokenizer, w, args.min_pieces) for w in words], dtype=bool
            )
        keep[keep] = surface
        funnel["kept"] = int(keep.sum())
        found.words += [w for w, ok in zip(words, surface, strict=True) if ok]
        found.ns.append(n)
        for name, values in (("keys", keys), ("freq", freq), ("cohesion", cohesion), ("cohesion_max", cohesion_max)):
            getattr(found, name).append(values[keep])
        found.left.append(left[keep])
        found.right.append(right[keep])
    return found


def base_score(freq, cohesion, left, right, lengths, cap: float, length_penalty: float) -> np.ndarray:
    """log(freq) * min(left, right) * min(cohesion, cap) / length ** length_penalty; a single word, which has no
    cohesion, counts half the cap."""
    holds = np.where(np.isnan(cohesion), cap / 2, np.minimum(np.nan_to_num(cohesion), cap))
    return np.log(freq) * np.minimum(left, right) * holds / np.asarray(lengths, dtype=float) ** length_penalty


def occurrence_texts(texts: list[str], language: str, keys_by_length: dict[int, np.ndarray]):
    """One shard of an --against corpus: how often each candidate occurs in it, and its tokens (worker entry)."""
    codes = chinese_codes(texts) if language == "chinese" else word_codes(texts)
    found = occurrences(keys_by_length, codes)
    return found, int((codes != 0).sum()), sum(len(t.encode("utf-8")) for t in texts)


def count_against(paths: list, language: str, keys_by_length: dict, args: MineArguments):
    from tqdm.auto import tqdm

    totals = {n: np.zeros(len(k), dtype=np.int64) for n, k in keys_by_length.items()}
    tokens = 0
    bar = tqdm(total=sum(os.path.getsize(p.path) for p in paths), unit="B", unit_scale=True, desc="counting against")
    items = ((texts, language, keys_by_length) for texts in shards(paths, args))
    for found, shard_tokens, nbytes in in_parallel(occurrence_texts, items, args.workers):
        for n, c in found.items():
            totals[n] += c
        tokens += shard_tokens
        bar.update(nbytes)
    bar.close()
    return totals, tokens


def read_base_dicts(paths: list[str]) -> set[str]:
    """The first column of each line: jieba's `word freq tag`, or one word per line."""
    words = set()
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            words.update(line.strip().partition(" ")[0] for line in f.read().split("\n"))
    words.discard("")
    return words


def jieba_dictionary() -> str:
    import jieba

    return os.path.join(os.path.dirname(jieba.__file__), "dict.txt")


# --- the stage -------------------------------------------------------------------------------------------------------


def validate(args: MineArguments) -> tuple[list, list]:
    from .corpus import check_corpus_file, parse_named_path

    if not args.corpus:
        raise UsageError("--corpus NAME=PATH is required (repeat it to mine several corpora together)")
    if not args.output_dir:
        raise UsageError("--output_dir is required")
    corpora = [parse_named_path(spec, "--corpus") for spec in args.corpus]
    against = [parse_named_path(spec, "--against") for spec in args.against or []]
    names = [c.name for c in corpora + against]
    if len(set(names)) != len(names):
        raise UsageError(f"--corpus and --against names must be distinct (got {', '.join(names)})")
    for option in ("max_len", "max_words", "min_freq", "min_pieces", "workers", "shard_chars", "max_entries"):
        if getattr(args, option) < 1:
            raise UsageError(f"--{option} must be at least 1")
    if args.max_len < 2 or args.max_words < 2:
        raise UsageError("--max_len and --max_words must be at least 2 (candidates have two or more units)")
    if args.top is not None and args.top < 1:
        raise UsageError("--top must be at least 1")
    if args.min_domain_ratio < 0:
        raise UsageError("--min_domain_ratio must be 0 or more")
    for c, option in [(c, "--corpus") for c in corpora] + [(c, "--against") for c in against]:
        if not os.path.exists(c.path):
            raise UsageError(f"{option} {c.name}={c.path}: no such file or directory")
        check_corpus_file(c.path, args.text_column)
    for path in args.base_dict or []:
        if not os.path.isfile(path):
            raise UsageError(f"--base_dict {path}: no such file")
    check_output_dir(args.output_dir, args.overwrite_output_dir)
    return corpora, against


def detect_language(corpora: list, args: MineArguments) -> str:
    if args.language != "auto":
        return args.language
    from .corpus import iter_corpus_batches
    from .similarity import detect_segmenter

    sample = next(iter_corpus_batches(corpora[0].path, args.text_column, (), 500, check=False), {"text": []})["text"]
    if not any(t.strip() for t in sample):
        raise UsageError(f"--corpus {corpora[0].name}={corpora[0].path}: no text in its first 500 records")
    return "chinese" if detect_segmenter(sample) == "jieba" else "words"


def run_mine(args: MineArguments) -> dict:
    """Mine, write the output directory, and return the metrics written to metrics.json."""
    import resource

    started = time.perf_counter()
    corpora, against = validate(args)
    language = detect_language(corpora, args)
    tokenizer = None
    if args.model_name_or_path and language == "words":
        from transformers import AutoTokenizer

        from .outputs import resolve_model_path

        try:
            tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(args.model_name_or_path))
        except (OSError, ValueError) as e:
            raise UsageError(f"--model_name_or_path {args.model_name_or_path}: {str(e).splitlines()[0]}") from None
    tick = time.perf_counter()
    base_paths = list(args.base_dict or ([jieba_dictionary()] if language == "chinese" else []))
    max_n = (args.max_len if language == "chinese" else args.max_words) + 1  # +1: the neighbours of the longest
    counts, vocabulary, size = count_corpora(corpora, language, max_n, args, "counting n-grams")
    counted = time.perf_counter()
    found = find_candidates(counts, vocabulary, language, args, tokenizer)
    freq, cohesion, cohesion_max = found.column("freq"), found.column("cohesion"), found.column("cohesion_max")
    left, right = found.column("left"), found.column("right")
    score = base_score(freq, cohesion, left, right, found.lengths, args.cohesion_cap, args.length_penalty)
    ratio = None
    against_tokens = 0
    if against:
        keys_by_length = dict(zip(found.ns, found.keys, strict=True))
        totals, against_tokens = count_against(against, language, keys_by_length, args)
        there = np.concatenate([totals[n] for n in found.ns]) if found.ns else np.zeros(0)
        # per-token frequencies with one added to each count: a word absent there gets a large, finite ratio
        ratio = ((freq + 1) / counts.tokens) / ((there + 1) / max(against_tokens, 1))
        score = np.where(ratio > args.min_domain_ratio, score * np.log(np.maximum(ratio, 1e-12)), -np.inf)
    base_words = read_base_dicts(base_paths)
    order = np.argsort(-score, kind="stable")
    order = order[np.isfinite(score[order])]
    if args.only_new:
        order = order[[found.words[i] not in base_words for i in order]]
    if args.top is not None:
        order = order[: args.top]
    rows = []
    for i in order:
        rows.append(
            {
                "word": found.words[i],
                "freq": int(freq[i]),
                "cohesion": cohesion[i],
                "left_entropy": left[i],
                "right_entropy": right[i],
                "score": score[i],
                "domain_ratio": None if ratio is None else ratio[i],
                "in_base_dict": (found.words[i] in base_words) if base_paths else None,
                "cohesion_max": cohesion_max[i],
            }
        )
    metrics = {
        "language": language,
        "corpora": [asdict(c) for c in corpora],
        "against": [asdict(c) for c in against],
        "characters": size["characters"],
        "megabytes": round(size["bytes"] / 1e6, 3),
        "tokens": counts.tokens,
        "against_tokens": against_tokens,
        # from the start of the stage (checking the files included) to the last file written
        "seconds": {"counting": round(counted - tick, 2), "total": None},
        "megabytes_per_second": None,
        "peak_rss_mb_main_process": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ngram_entries": counts.entries,
        "count_error_bound": counts.error,
        "prunings": counts.prunings,
        "funnel": {str(n): f for n, f in found.funnel.items()},
        "words_written": len(rows),
        "new_words_written": sum(1 for r in rows if r["in_base_dict"] is False),
        "base_dicts": base_paths,
        "settings": asdict(args),
    }
    write_outputs(args, rows, metrics, started)
    logger.info(
        "mined %d words from %.1f MB in %.1f s (%.2f MB/s); wrote %s",
        len(rows), size["bytes"] / 1e6, metrics["seconds"]["total"], metrics["megabytes_per_second"],
        os.path.join(args.output_dir, "words.tsv"),
    )  # fmt: skip
    return metrics


# cohesion is the weakest split's PMI (what the thresholds and the score use), cohesion_max the strongest one's
COLUMNS = (
    "word", "freq", "cohesion", "left_entropy", "right_entropy", "score", "domain_ratio", "in_base_dict",
    "cohesion_max",
)  # fmt: skip


def column_cells(values: list) -> list[str]:
    """One TSV column: empty for a missing value (None or NaN), 0/1 for a flag, 4 decimals for a real number. The
    type is read off the first present value: a column holds one type."""
    present = next((v for v in values if v is not None), None)
    if present is None:
        return [""] * len(values)
    if isinstance(present, (bool, np.bool_)):
        return ["" if v is None else "1" if v else "0" for v in values]
    if isinstance(present, (float, np.floating)):
        return ["" if v is None or v != v else f"{v:.4f}" for v in values]
    return ["" if v is None else str(v) for v in values]


def write_outputs(args: MineArguments, rows: list[dict], metrics: dict, started: float) -> None:
    from .outputs import staged

    def write(path: str, lines: list[str]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))

    with staged(args.output_dir) as path:
        columns = [column_cells([r[c] for r in rows]) for c in COLUMNS]
        write(path("words.tsv"), ["\t".join(COLUMNS)] + ["\t".join(cells) for cells in zip(*columns, strict=True)])
        # jieba's user-dictionary format without a frequency: jieba then gives each word one just high enough to be
        # cut whole, which is what whole-word masking needs (a corpus count would be on another scale than its own).
        # The format cannot hold a phrase: in space-delimited text only single words go in.
        write(path("user_dict.txt"), [r["word"] for r in rows if " " not in r["word"]])
        write(path("lexicon.txt"), [r["word"] for r in rows])
        write_readme(path("README.md"), rows, metrics)
        seconds = time.perf_counter() - started
        metrics["seconds"]["total"] = round(seconds, 2)
        metrics["megabytes_per_second"] = round(metrics["megabytes"] / seconds, 3)
        write_json(path("metrics.json"), metrics)


def write_readme(path: str, rows: list[dict], metrics: dict) -> None:
    s = metrics["settings"]
    unit = "characters" if metrics["language"] == "chinese" else "words"
    lines = [
        "# Mined words",
        "",
        f"Made by `dontstop mine` from {', '.join(c['name'] for c in metrics['corpora'])} "
        f"({metrics['megabytes']:.1f} MB, {metrics['tokens']:,} {unit})"
        + (f" against {', '.join(c['name'] for c in metrics['against'])}" if metrics["against"] else "")
        + f": {len(rows):,} candidates with frequency >= {s['min_freq']}, cohesion >= {s['min_cohesion']} nats and "
        f"branching entropy >= {s['min_entropy']} nats on both sides, ranked by "
        "log(freq) x min(left, right entropy) x min(cohesion, cap)"
        + (" x log(domain ratio)" if metrics["against"] else "")
        + ".",
        "",
        "- `words.tsv`: every candidate with its statistics, best first.",
        "- `user_dict.txt`: the words for jieba: `dontstop pretrain --masking word --user_dict user_dict.txt`.",
        "- `lexicon.txt`: the words as entities: `dontstop pretrain --masking entity --lexicon lexicon.txt`.",
        "- `dontstop vocab extend --words words.tsv --top N` adds the best N to a model's vocabulary.",
        "",
    ]
    if metrics["count_error_bound"]:
        lines += [
            f"Counting held at most {s['max_entries']:,} n-grams and pruned {metrics['prunings']} times: a count "
            f"may be short by up to {metrics['count_error_bound']:,}.",
            "",
        ]
    header = "| word | freq | cohesion | left H | right H | score |" + (
        " domain ratio |" if metrics["against"] else ""
    )
    lines += [header, "|---|---:|---:|---:|---:|---:|" + ("---:|" if metrics["against"] else "")]
    for r in rows[:30]:
        line = f"| {r['word']} | {r['freq']:,} | {column_cells([r['cohesion']])[0]} | {r['left_entropy']:.2f} | "
        line += f"{r['right_entropy']:.2f} | {r['score']:.2f} |"
        if metrics["against"]:
            line += f" {r['domain_ratio']:.1f} |"
        lines.append(line)
    lines += ["", "Every setting and the candidate funnel per length are in `metrics.json`."]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


EXAMPLES = """examples:
  # new words of a Chinese domain, and a dictionary for whole-word masking
  dontstop mine --corpus reviews=reviews.jsonl --output_dir runs/mine-reviews --workers 2
  dontstop pretrain --model_name_or_path bert-base-chinese --train_file reviews.jsonl --masking word \\
      --user_dict runs/mine-reviews/user_dict.txt --output_dir runs/dapt-reviews

  # what is characteristic of the domain, not merely frequent: rank against general text
  dontstop mine --corpus domain=reviews.jsonl --against general=news.txt --output_dir runs/mine-vs-news

  # English: phrases of 2-4 words, and single terms the model's tokenizer shreds
  dontstop mine --corpus docs=software.jsonl --model_name_or_path roberta-base --output_dir runs/mine-en
"""


def make_parser():
    from .cli import stage_parser

    return stage_parser((MineArguments,), prog="dontstop mine", description=__doc__.split("\n\n")[0], epilog=EXAMPLES)


def main(argv: list[str]) -> int:
    from .cli import parse_with_config

    (args,) = parse_with_config(make_parser(), argv)
    run_mine(args)
    return 0
