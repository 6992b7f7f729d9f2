"""The long tail: which of a domain's words the model is likely not to know (`dontstop mine --long_tail`).

    dontstop mine --corpus task=train.jsonl --against general=books.jsonl --model_name_or_path M --long_tail \\
        [--glossary glossary.tsv [--only_in_glossary]] --output_dir runs/mine

Not every rare word needs knowledge (KEPLM/DKPLM: a misspelling needs none, a drug's nickname does): a word needs it
when the model met it too seldom to learn it. The mined words (`words.tsv`, best `--long_tail_top` of them) get three
signals of that, each a column of `long_tail.tsv`:

- rarity: the log of the domain ratio, the word's frequency per token in the domain over that in the `--against`
  corpora (each count plus one): rare in general text relative to the domain;
- pieces: how many tokens the model's tokenizer cuts it into (as it appears after a space);
- mlm_loss: the model's masked-LM loss of the word with all its pieces masked together, the mean per piece, averaged
  over up to `--long_tail_contexts` occurrences in the domain (a window of text around each). A checkpoint without
  MLM-head weights gets its head trained alone first, as `dontstop lm-eval` does, or the loss would be the random
  head's.

score = the mean of the three signals' percentile ranks among the scored words (ties share their mean rank): a word
first on all three scores 1. With `--glossary`, `in_glossary` says whether the glossary defines the word (compared
lower-cased), and `--only_in_glossary` keeps just those: the words knowledge can be attached to.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from ..errors import UsageError

logger = logging.getLogger(__name__)

WINDOW_CHARACTERS = 200  # of text on each side of an occurrence: the context the loss is measured in
COLUMNS = ("word", "freq", "against_freq", "rarity", "pieces", "mlm_loss", "contexts", "in_glossary", "score")


def check_long_tail(args) -> None:
    """The --long_tail options of `dontstop mine`, before any work."""
    if not args.long_tail:
        if args.glossary or args.only_in_glossary:
            raise UsageError("--glossary and --only_in_glossary need --long_tail")
        return
    if not args.model_name_or_path:
        raise UsageError("--long_tail needs --model_name_or_path (its tokenizer and its masked-LM loss are signals)")
    if not args.against:
        raise UsageError("--long_tail needs --against general=PATH (rarity is measured against general text)")
    if args.only_in_glossary and not args.glossary:
        raise UsageError("--only_in_glossary needs --glossary FILE")
    if args.long_tail_top < 1 or args.long_tail_contexts < 1:
        raise UsageError("--long_tail_top and --long_tail_contexts must be at least 1")
    if args.glossary:
        from .sources import read_glossary

        read_glossary(args.glossary)


def occurrences(texts, words: list[str], per_word: int) -> list[tuple[int, str, int, int]]:
    """(word index, text window, start, end) of up to `per_word` occurrences of each word, in corpus order, whole
    words only (any case) except in Han text."""
    from .terms import TextTerms

    index = {word.lower(): i for i, word in enumerate(words)}
    finder = TextTerms(words)
    seen = np.zeros(len(words), dtype=np.int64)
    found = []
    for text in texts:
        for start, end in finder.spans(text):
            i = index.get(text[start:end].lower())
            if i is None or seen[i] >= per_word:
                continue
            seen[i] += 1
            left = max(0, start - WINDOW_CHARACTERS)
            found.append((i, text[left : end + WINDOW_CHARACTERS], start - left, end - left))
        if seen.min(initial=per_word) >= per_word:
            break
    return found


def whole_word_losses(model, tokenizer, found, count: int, max_length: int = 128, batch_size: int = 32) -> np.ndarray:
    """Per word (`count` of them): the mean over its occurrences (`found`, from `occurrences`) of the masked-LM loss
    per piece with all its pieces masked together; NaN for a word without occurrences."""
    import torch

    from ..heads import MLM_HEADS

    head = MLM_HEADS.get(model.config.model_type)
    sums, seen = np.zeros(count), np.zeros(count)
    model.eval()
    for first in range(0, len(found), batch_size):
        batch = found[first : first + batch_size]
        rows, labels = encode_masked(tokenizer, batch, max_length)
        if rows is None:
            continue
        with torch.no_grad():
            positions = (labels.reshape(-1) != -100).nonzero().squeeze(-1)
            if head is not None:
                hidden = model.base_model(**rows)[0]
                logits = head(model, hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions))
            else:
                logits = model(**rows).logits.reshape(-1, model.config.vocab_size).index_select(0, positions)
            losses = torch.nn.functional.cross_entropy(logits.float(), labels.reshape(-1)[positions], reduction="none")
        occurrence = positions // labels.shape[1]
        per_row = torch.zeros(labels.shape[0]).index_add_(0, occurrence, losses)
        pieces = torch.bincount(occurrence, minlength=labels.shape[0]).clamp(min=1)
        for row, (word, *_) in enumerate(batch):
            if (labels[row] != -100).any():
                sums[word] += float(per_row[row] / pieces[row])
                seen[word] += 1
    with np.errstate(invalid="ignore"):
        return np.where(seen > 0, sums / np.maximum(seen, 1), np.nan)


def encode_masked(tokenizer, batch, max_length: int):
    """(model inputs, labels) of text windows with the word's pieces (the tokens overlapping its characters) masked;
    a window is cut to `max_length` tokens around the word."""
    import torch

    encoded = tokenizer([window for _, window, _, _ in batch], return_offsets_mapping=True, truncation=False)
    ids, labels = [], []
    for row, (_, _, start, end) in enumerate(batch):
        offsets = encoded["offset_mapping"][row]
        tokens = encoded["input_ids"][row]
        inside = [i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start]
        if not inside:
            continue
        middle = (inside[0] + inside[-1]) // 2
        low = max(0, min(middle - max_length // 2, len(tokens) - max_length))
        keep = slice(low, low + max_length)
        row_ids, row_labels = list(tokens[keep]), [-100] * len(tokens[keep])
        for i in inside:
            if low <= i < low + max_length:
                row_labels[i - low], row_ids[i - low] = tokens[i], tokenizer.mask_token_id
        ids.append(row_ids)
        labels.append(row_labels)
    if not ids:
        return None, None
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows = {
        "input_ids": torch.tensor([r + [pad] * (width - len(r)) for r in ids]),
        "attention_mask": torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids]),
    }
    return rows, torch.tensor([r + [-100] * (width - len(r)) for r in labels])


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Each value's mean rank among the present ones, in (0, 1]; 0.5 for a missing one (NaN)."""
    from scipy.stats import rankdata

    ranks = np.full(len(values), 0.5)
    present = ~np.isnan(values)
    if present.any():
        ranks[present] = rankdata(values[present]) / present.sum()
    return ranks


def domain_texts(corpora: list, text_column: str):
    from ..corpus import iter_corpus_batches

    for corpus in corpora:
        for batch in iter_corpus_batches(corpus.path, text_column, (), 1024, check=False):
            yield from (text for text in batch["text"] if text)


def long_tail_rows(rows: list[dict], corpora: list, args) -> tuple[list[dict], dict]:
    """(the rows of long_tail.tsv, best first; what was measured) for the mined `rows` of `dontstop mine` (with
    their `domain_ratio` and `against_freq`), from the domain `corpora` (NamedPaths)."""
    from ..lm_eval import LMEvalArguments, Meter, character_budgets, read_texts

    rows = rows[: args.long_tail_top]
    words = [r["word"] for r in rows]
    options = LMEvalArguments(model_name_or_path=args.model_name_or_path)
    meter = Meter(args.model_name_or_path, options)
    budget = character_budgets(options, len(corpora))[1]
    meter.warm_up({c.name: read_texts(c.path, args.text_column, budget) for c in corpora})
    tokenizer = meter.lm.tokenizer
    found = occurrences(domain_texts(corpora, args.text_column), words, args.long_tail_contexts)
    losses = whole_word_losses(meter.lm.model, tokenizer, found, len(words))
    contexts = np.bincount([i for i, *_ in found], minlength=len(words))
    pieces = np.array([len(tokenizer.tokenize(" " + w)) for w in words], dtype=float)
    rarity = np.array([math.log(r["domain_ratio"]) for r in rows])
    score = (percentile_ranks(rarity) + percentile_ranks(pieces) + percentile_ranks(losses)) / 3
    defined = None
    if args.glossary:
        from .sources import read_glossary

        defined = {term.lower() for term in read_glossary(args.glossary)}
    tail = [
        {
            "word": w, "freq": r["freq"], "against_freq": r["against_freq"], "rarity": rarity[i],
            "pieces": int(pieces[i]), "mlm_loss": None if np.isnan(losses[i]) else float(losses[i]),
            "contexts": int(contexts[i]), "in_glossary": None if defined is None else w.lower() in defined,
            "score": float(score[i]),
        }
        for i, (w, r) in enumerate(zip(words, rows, strict=True))
    ]  # fmt: skip
    tail.sort(key=lambda row: -row["score"])
    if args.only_in_glossary:
        tail = [row for row in tail if row["in_glossary"]]
    report = {
        "scored": len(words), "written": len(tail), "head": meter.head, "contexts_per_word": args.long_tail_contexts,
        "in_glossary": None if defined is None else sum(bool(row["in_glossary"]) for row in tail),
    }  # fmt: skip
    return tail, report
