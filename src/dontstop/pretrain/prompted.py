"""Prompt-based continued pretraining (PCP, Shi & Lipani 2023): continue pretraining on the task's text wrapped in
the template that prompt-based fine-tuning will use, so the model meets the template before it is asked to fill it.

    dontstop pretrain --model_name_or_path roberta-base --train_file task_train.jsonl --line_by_line \\
        --prompt "{text} This package is about {mask}." --output_dir runs/pcp

Each training text becomes the template with the text in its column's place (`{text}`); the slot stays the
tokenizer's mask token (a special token: never chosen, never a target) or, with `--prompt_label_column COLUMN`
and `--verbalizer`, holds the first word of the record's label (gold labels, or pseudo labels from a fine-tuned
model's predictions, as the paper does), which masking treats as any other word. The template's own words are never
masked (`--mask_template` lets them be): every template piece of two tokens or more is protected wherever it occurs
in an example (`protected_sequences`), so a text that repeats such a phrase verbatim has it protected too; a
one-token piece (a full stop) is left to ordinary masking, as it is too common to tell from the text's own.

The templated corpus is written once to the data cache (keyed by the file's content and the settings) and tokenized
and cached like any corpus.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from ..errors import UsageError
from ..finetune.methods.prompt import check_verbalizer, parse_template, read_verbalizer
from ..outputs import default_cache_dir
from ..tasks import read_task_file, read_texts

logger = logging.getLogger(__name__)


def fill(parts: list[tuple[str, str]], text: str, slot: str) -> str:
    return "".join(value if kind == "text" else text if kind == "field" else slot for kind, value in parts)


def templated_corpus(path: str, data_args, tokenizer) -> str:
    """The training file `path` wrapped in --prompt, as a .jsonl file in the data cache; returns its path."""
    parts = parse_template(data_args.prompt, {data_args.text_column: "text"})
    label_column = data_args.prompt_label_column
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read())
    settings = [data_args.prompt, data_args.text_column, label_column, tokenizer.mask_token]
    if label_column:
        split = read_task_file(path, "single_label", data_args.text_column, label_column, label_type="str")
        mapping = read_verbalizer(data_args.verbalizer)  # may name labels this file lacks (a pseudo-labelled pool)
        words = check_verbalizer(mapping, sorted(set(split.labels) | set(mapping)))
        slots = [words[label][0] for label in split.labels]
        settings.append(words)
    else:
        split = read_texts(path, data_args.text_column)
        slots = [tokenizer.mask_token] * len(split)
    digest.update(json.dumps(settings, sort_keys=True).encode())
    target = os.path.join(
        data_args.data_cache_dir or default_cache_dir(), "prompted", f"{digest.hexdigest()[:24]}.jsonl"
    )
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(f"{target}.tmp", "w", encoding="utf-8") as f:
            for text, slot in zip(split.texts, slots, strict=True):
                f.write(json.dumps({data_args.text_column: fill(parts, text, slot)}, ensure_ascii=False) + "\n")
        os.replace(f"{target}.tmp", target)
    logger.info("%s: %d texts in the template %r (%s)", path, len(split), data_args.prompt, target)
    return target


def protected_sequences(data_args, tokenizer) -> tuple[tuple[int, ...], ...]:
    """The token sequences of the template's pieces that masking leaves alone (none with --mask_template)."""
    if not data_args.prompt or data_args.mask_template:
        return ()
    if tokenizer.mask_token is None:
        raise UsageError("--prompt: the tokenizer has no mask token to put in the template's slot")
    parts = parse_template(data_args.prompt, {data_args.text_column: "text"})
    sequences = []
    for i, (kind, value) in enumerate(parts):
        if kind != "text" or not value.strip():
            continue
        # As in running text: a piece after a slot, or starting with a space, is spelled after a space (BPE's Ġ).
        spaced = " " if value[:1].isspace() and i else ""
        ids = tokenizer(spaced + value.strip(), add_special_tokens=False)["input_ids"]
        if len(ids) > 1:
            sequences.append(tuple(ids))
    return tuple(sequences)
