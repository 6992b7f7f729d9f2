"""Prompt-based fine-tuning (PET, Schick & Schütze 2021; LM-BFF, Gao et al. 2021): the masked-LM head fills a
template's mask slot, and its scores for each label's words there are the class scores.

    dontstop finetune --model_name_or_path runs/tapt --prompt "{text} This package is about {mask}." \\
        --verbalizer '{"net": "network", "games": ["game", "games"]}' --train_file train.jsonl ...

The head is the one the checkpoint carries, so a `dontstop pretrain` output fine-tunes with the head that DAPT/TAPT
adapted; a checkpoint without MLM-head weights (a sentence encoder) is refused: nothing would score the label words.

- **Template**: `{COLUMN}` is the text of a column (--text_column, --text_pair_column), `{mask}` (or `[MASK]`,
  `<mask>`) the slot. Only the texts are truncated to fit --max_seq_length; the template and slot always stay. A
  space before a slot goes with the slot's content, so byte-level BPE (RoBERTa) spells the word as after a space
  ("Ġnetwork"), as in running text; WordPiece (BERT) ignores it.
- **Verbalizer**: JSON (inline, or a .json file) mapping every label to a word or a list of words.
- **Scores**: when every word is one token, a label's score is the head's logit of its word at the slot (the mean
  of its words' logits), exactly LM-BFF's. With `--allow_multi_token` the slot becomes as many mask tokens as the
  longest word has tokens, and a word of k tokens scores the mean log-probability of its tokens at the first k
  slots (log-softmax over the vocabulary; a label's score is the mean over its words). Single-label tasks train a
  softmax over the labels' scores (cross-entropy), multi-label tasks a sigmoid per label (binary cross-entropy).

The model stays a plain `*ForMaskedLM`: the scoring is installed as its forward (as `heads.use_masked_only_head`
does), the template and verbalizer go into its config (`config.prompt`), and a kept model loads with
`AutoModelForMaskedLM.from_pretrained`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass

from ...errors import UsageError

logger = logging.getLogger(__name__)

MASK_SLOTS = ("{mask}", "[MASK]", "<mask>")
SLOT = re.compile(r"(\{mask\}|\[MASK\]|<mask>|\{[^{}]*\})")


@dataclass
class Prompt:
    """A checked template and verbalizer, with the token ids they became (JSON-able: kept in the model's config)."""

    template: str
    verbalizer: dict[str, list[str]]  # label -> words, in the task's label order
    pieces: list[list]  # ["text", token ids] | ["field", "text"|"pair", leading space] | ["mask"]
    word_ids: list[list[list[int]]]  # label -> word -> token ids
    slots: int  # mask tokens in the slot (the longest word's length)
    space_before_mask: bool
    scoring: str  # "logit" (every word one token) or "mean_log_prob"
    chosen_by: dict | None = None  # --verbalizer auto: how the words were chosen (`auto_verbalizer.py`)

    def to_dict(self) -> dict:
        return asdict(self)


def read_verbalizer(spec: str) -> dict:
    """--verbalizer: inline JSON, or a .json file holding it."""
    text = spec
    if not spec.lstrip().startswith("{"):
        if not os.path.isfile(spec):
            raise UsageError(f"--verbalizer {spec}: neither a JSON mapping nor a file")
        with open(spec, encoding="utf-8") as f:
            text = f.read()
    try:
        mapping = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"--verbalizer: invalid JSON ({e})") from None
    if not isinstance(mapping, dict):
        raise UsageError("--verbalizer: expected a mapping from each label to a word or a list of words")
    return mapping


def parse_template(template: str, columns: dict[str, str]) -> list[tuple[str, str]]:
    """[("text", literal) | ("field", "text"|"pair") | ("mask", "")]; `columns` maps column names to their role."""
    parts = []
    for i, part in enumerate(SLOT.split(template)):
        if i % 2 == 0:
            if part:
                parts.append(("text", part))
        elif part in MASK_SLOTS:
            parts.append(("mask", ""))
        elif part[1:-1] in columns:
            parts.append(("field", columns[part[1:-1]]))
        else:
            known = ", ".join(f"{{{c}}}" for c in columns)
            raise UsageError(f"--prompt: {part} names no column (the template may use {known} and {{mask}})")
    kinds = [kind for kind, _ in parts]
    if kinds.count("mask") != 1:
        raise UsageError(f"--prompt {template!r}: the template needs exactly one mask slot ({{mask}}), "
                         f"found {kinds.count('mask')}")  # fmt: skip
    if "field" not in kinds:
        raise UsageError(f"--prompt {template!r}: the template names no text column (e.g. {{text}})")
    return parts


def template_pieces(template: str, columns: dict[str, str], tokenizer) -> tuple[list[list], bool]:
    """(the template as Prompt.pieces, whether a space comes before the mask slot)."""
    if tokenizer.mask_token_id is None:
        raise UsageError("--prompt: the tokenizer has no mask token, so there is no slot for the MLM head to fill")
    parts = parse_template(template, columns)
    pieces, space_before_mask, space = [], False, False
    for i, (kind, value) in enumerate(parts):
        if kind == "text":
            following_slot = i + 1 < len(parts)
            literal = value.rstrip() if following_slot else value
            space = following_slot and literal != value  # the whitespace goes with the next slot's content
            literal = literal if i else literal.lstrip()
            if literal:
                pieces.append(["text", tokenizer(literal, add_special_tokens=False)["input_ids"]])
            continue
        if kind == "field":
            pieces.append(["field", value, space])
        else:
            pieces.append(["mask"])
            space_before_mask = space
        space = False
    return pieces, space_before_mask


def build_prompt(template: str, verbalizer: str | dict, labels: list[str], columns: dict[str, str], tokenizer,
                 allow_multi_token: bool = False) -> Prompt:  # fmt: skip
    """The checked Prompt; every problem is one UsageError naming it. `verbalizer` is --verbalizer's JSON or file, or
    the mapping itself (as `auto_verbalizer.choose_verbalizer` gives it)."""
    pieces, space_before_mask = template_pieces(template, columns, tokenizer)
    mapping = verbalizer if isinstance(verbalizer, dict) else read_verbalizer(verbalizer)
    words = check_verbalizer(mapping, labels)
    word_ids = [[word_tokens(w, space_before_mask, tokenizer, allow_multi_token) for w in words[label]]
                for label in labels]  # fmt: skip
    slots = max(len(ids) for label in word_ids for ids in label)
    return Prompt(template, words, pieces, word_ids, slots, space_before_mask,
                  "logit" if slots == 1 else "mean_log_prob")  # fmt: skip


def check_verbalizer(mapping: dict, labels: list[str]) -> dict[str, list[str]]:
    """label -> non-empty words; every label of the task present, and no label it lacks."""
    words = {}
    for label in labels:
        if label not in mapping:
            raise UsageError(f"--verbalizer: no word for label {label!r}")
        given = mapping[label] if isinstance(mapping[label], list) else [mapping[label]]
        if not given or not all(isinstance(w, str) and w.strip() for w in given):
            raise UsageError(f"--verbalizer: label {label!r} has an empty word (expected a word or a list of words)")
        words[label] = [w.strip() for w in given]
    unknown = sorted(set(mapping) - set(labels))
    if unknown:
        raise UsageError(f"--verbalizer: label {unknown[0]!r} is not a label of the training file")
    return words


def word_tokens(word: str, space: bool, tokenizer, allow_multi_token: bool) -> list[int]:
    ids = tokenizer((" " if space else "") + word, add_special_tokens=False)["input_ids"]
    if tokenizer.unk_token_id is not None and tokenizer.unk_token_id in ids:
        raise UsageError(f"--verbalizer: {word!r} is not in the tokenizer's vocabulary (it becomes the unknown token)")
    if len(ids) != 1 and not allow_multi_token:
        pieces = " ".join(tokenizer.convert_ids_to_tokens(ids))
        raise UsageError(f"--verbalizer: {word!r} is {len(ids)} tokens ({pieces}), not one; choose a word the "
                         "vocabulary holds whole, or --allow_multi_token (mean log-probability)")  # fmt: skip
    return ids


# --- encoding ------------------------------------------------------------------------------------------------------


def encode_prompt(prompt: dict, texts: list[str], pairs: list[str] | None, tokenizer, max_length: int):
    """({input_ids, attention_mask, [token_type_ids], mask_position}, examples whose texts were cut): each example in
    the template, its texts cut (the longest first) so that everything fits `max_length` with the whole template."""
    pieces = prompt["pieces"]
    fields = [p for p in pieces if p[0] == "field"]
    fixed = sum(len(p[1]) for p in pieces if p[0] == "text") + prompt["slots"]
    prefix, suffix = special_frame(tokenizer)
    budget = max_length - len(prefix) - len(suffix) - fixed
    if budget < len(fields):
        raise UsageError(f"--max_seq_length {max_length}: the template takes {max_length - budget} tokens and leaves "
                         "no room for the text")  # fmt: skip
    columns: dict[str, list] = {"input_ids": [], "attention_mask": [], "mask_position": []}
    with_types = "token_type_ids" in tokenizer.model_input_names
    if with_types:
        columns["token_type_ids"] = []
    values = {"text": texts, "pair": pairs}
    # One tokenizer call per field; a field after a space in the template is spelled as after one in running text.
    per_field = [tokenizer([(" " if p[2] else "") + v for v in values[p[1]]], add_special_tokens=False)["input_ids"]
                 for p in fields]  # fmt: skip
    truncated = 0
    for tokens in zip(*per_field, strict=True):
        lengths = fit(list(map(len, tokens)), budget)
        truncated += lengths != list(map(len, tokens))
        body, cut, position = [], iter(t[:n] for t, n in zip(tokens, lengths, strict=True)), None
        for piece in pieces:
            if piece[0] == "mask":
                position = len(prefix) + len(body)
                body += [tokenizer.mask_token_id] * prompt["slots"]
            else:
                body += piece[1] if piece[0] == "text" else next(cut)
        ids = prefix + body + suffix
        columns["input_ids"].append(ids)
        columns["attention_mask"].append([1] * len(ids))
        columns["mask_position"].append(position)
        if with_types:
            columns["token_type_ids"].append([0] * len(ids))  # one sequence: the template holds the pair
    return columns, truncated


def special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a single sequence ([CLS] ... [SEP], <s> ... </s>)."""
    ids = tokenizer(tokenizer.mask_token)["input_ids"]
    at = ids.index(tokenizer.mask_token_id)
    return ids[:at], ids[at + 1 :]


def fit(lengths: list[int], budget: int) -> list[int]:
    """Token counts cut, the longest first, until they sum to at most `budget`."""
    lengths = [min(n, budget) for n in lengths]
    while sum(lengths) > budget:
        longest = max(range(len(lengths)), key=lengths.__getitem__)
        excess = sum(lengths) - budget
        second = sorted(lengths)[-2] if len(lengths) > 1 else 0
        lengths[longest] -= max(1, min(excess, lengths[longest] - second))
    return lengths


def encode_split(task, split, tokenizer, max_length: int, prompt: dict):
    """A split in the template, as `tasks.encode` gives it for a classifier head."""
    import datasets

    from ...logs import once
    from ...tasks import Encoded, sequence_labels

    columns, truncated = encode_prompt(prompt, split.texts, split.pairs, tokenizer, max_length)
    columns["labels"] = sequence_labels(task, split)
    if truncated:
        once(logger, logging.WARNING, "%s: %d of %d texts cut to fit the template in %d tokens", split.path,
             truncated, len(split), max_length)  # fmt: skip
    return Encoded(datasets.Dataset.from_dict(columns), None, truncated)
