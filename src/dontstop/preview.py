"""Show what the model will be asked to predict: examples of a corpus masked as `dontstop pretrain` would mask them.

    dontstop preview --model_name_or_path bert-base-chinese --train_file reviews.jsonl --masking word

Units are shown in brackets, chosen units highlighted with what replaced them, followed by the measured masking rate
and the histogram of chosen unit lengths. `--format json` prints one JSON object per example instead.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from .errors import UsageError
from .pretrain.args import MaskingArguments


@dataclass
class PreviewArguments:
    model_name_or_path: str | None = field(default=None, metadata={"help": "Model (its tokenizer is used)."})
    train_file: str | None = field(default=None, metadata={"help": "Corpus to preview (any format pretrain reads)."})
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    num_examples: int = field(default=5, metadata={"help": "Documents to show (the first ones)."})
    max_seq_length: int = field(default=128, metadata={"help": "Tokens per example, special tokens included."})
    seed: int = field(default=42, metadata={"help": "Masking seed (the same as pretrain's --seed)."})
    epoch: int = field(default=0, metadata={"help": "Show the masks of this epoch."})
    format: str = field(
        default="text", metadata={"help": "text or json (one object per example).", "choices": ["text", "json"]}
    )


REPLACEMENT = {"mask": "MASK", "random": "random", "keep": "kept"}


def masked_examples(args: PreviewArguments, masking_args):
    """(tokenizer, [(tokens, unit id per token, MaskResult, replacement kind per unit)])."""
    from .corpus import check_corpus_file, load_corpus
    from .masking import MaskedLMCollator
    from .models import load_tokenizer, resolve_model_path, tokenizer_source
    from .segment import BOUNDARY_COUNTS
    from .tokenization import Framing, check_offsets, encode_with_offsets, framed

    if not args.model_name_or_path or not args.train_file:
        raise UsageError("--model_name_or_path and --train_file are required")
    check_corpus_file(args.train_file, args.text_column)
    spec, boundaries = masking_args.spec(), masking_args.boundaries()
    tokenizer = load_tokenizer(tokenizer_source(resolve_model_path(args.model_name_or_path)))
    try:
        collator = MaskedLMCollator.from_tokenizer(
            tokenizer,
            len(tokenizer),
            seed=args.seed,
            masking=spec,
            mlm_probability=masking_args.mlm_probability,
            mask_replace_prob=masking_args.mask_replace_prob,
            random_replace_prob=masking_args.random_replace_prob,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    framing = Framing.from_tokenizer(tokenizer)
    frame = framed(framing)
    stream = load_corpus(args.train_file, args.text_column, streaming=True)
    texts = [record["text"] for record in itertools.islice(stream, args.num_examples)]
    if boundaries is not None:
        check_offsets(tokenizer)
    if boundaries is not None:
        all_ids, offsets = encode_with_offsets(tokenizer, texts)
        notes = boundaries.annotate(texts, offsets)
    else:
        all_ids, notes = tokenizer(texts, add_special_tokens=False)["input_ids"], {}
    content = args.max_seq_length - framing.overhead
    examples = []
    for index, ids in enumerate(all_ids):
        columns = {
            name: frame(name, np.asarray(notes[name][index][:content], dtype=np.int32))
            for name in BOUNDARY_COUNTS
            if name in notes
        }
        ids = frame("input_ids", np.asarray(ids[:content], dtype=np.int32)).astype(np.int64)
        result = collator.mask(ids, args.epoch, index, columns.get("word_ids"), columns.get("entity_ids"))
        kinds = []
        for positions in result.units:
            replaced = result.input_ids[positions]
            kinds.append(
                "mask"
                if (replaced == tokenizer.mask_token_id).all() and positions.size
                else "keep"
                if (replaced == ids[positions]).all()
                else "random"
            )
        units = columns.get(
            "word_ids", np.where(np.isin(ids, list(tokenizer.all_special_ids)), -1, np.arange(len(ids)))
        )
        examples.append((tokenizer.convert_ids_to_tokens(ids.tolist()), units, result, kinds, ids))
    return tokenizer, examples


def render_text(tokenizer, examples, color: bool) -> str:
    on, off = ("\033[1;31m", "\033[0m") if color else ("", "")
    lines = []
    for index, (tokens, units, result, kinds, ids) in enumerate(examples):
        chosen = {int(p): k for positions, k in zip(result.units, kinds, strict=True) for p in positions}
        replaced = tokenizer.convert_ids_to_tokens(result.input_ids.tolist())
        pieces, current = [], None
        for t in range(len(tokens)):
            if units[t] != current or units[t] < 0:
                pieces.append([])
                current = units[t]
            pieces[-1].append(t)
        words = []
        for piece in pieces:
            text = " ".join(tokens[t] for t in piece)
            kind = chosen.get(piece[0])
            if kind is None:
                words.append(text if len(piece) == 1 else f"[{text}]")
            else:
                shown = (
                    "" if kind == "mask" else ("→" + " ".join(replaced[t] for t in piece) if kind == "random" else "=")
                )
                words.append(f"{on}⟦{text}{shown}⟧{off}")
        lines.append(
            f"#{index} ({result.unit} masking, {int((result.labels != -100).sum())} of "
            f"{int((~np.isin(ids, list(tokenizer.all_special_ids))).sum())} tokens)"
        )
        lines.append("  " + " ".join(words))
    return "\n".join(lines)


def summary(tokenizer, examples) -> str:
    special = list(tokenizer.all_special_ids)
    chosen = sum(int((r.labels != -100).sum()) for _, _, r, _, _ in examples)
    maskable = sum(int((~np.isin(ids, special)).sum()) for *_, ids in examples)
    lengths = Counter(len(p) for _, _, r, _, _ in examples for p in r.units)
    kinds = Counter(k for _, _, _, ks, _ in examples for k in ks)
    out = [
        f"masking rate: {chosen}/{maskable} = {chosen / max(maskable, 1):.3f} of maskable tokens",
        "replacement per unit: " + ", ".join(f"{REPLACEMENT[k]} {n}" for k, n in sorted(kinds.items())),
        "unit length (tokens): count",
    ]
    top = max(lengths.values(), default=1)
    out += [f"  {n:>3}: {c:>5} {'#' * max(1, round(40 * c / top))}" for n, c in sorted(lengths.items())]
    out.append("⟦...⟧ chosen unit (→ random replacement, = kept as is, bare: mask tokens); [...] a multi-token unit")
    return "\n".join(out)


def to_json(tokenizer, examples) -> list[dict]:
    records = []
    for index, (tokens, units, result, kinds, _) in enumerate(examples):
        replacement = [None] * len(tokens)
        for positions, kind in zip(result.units, kinds, strict=True):
            for p in positions:
                replacement[int(p)] = kind
        records.append(
            {
                "index": index,
                "unit_type": result.unit,
                "tokens": tokens,
                "unit": [int(u) for u in units],
                "masked": [bool(m) for m in result.labels != -100],
                "replacement": replacement,
                "input_tokens": tokenizer.convert_ids_to_tokens(result.input_ids.tolist()),
            }
        )
    return records


EXAMPLES = """examples:
  # whole-word masking of Chinese text, jieba with mined words as a user dictionary
  dontstop preview --model_name_or_path bert-base-chinese --train_file reviews.jsonl --masking word \\
      --user_dict mined/user_dict.txt --num_examples 3

  # a mixture with entities from a lexicon, as JSON for scripting
  dontstop preview --model_name_or_path roberta-base --train_file docs.jsonl \\
      --masking word:0.6,entity:0.3,span:0.1 --lexicon terms.txt --format json
"""


def run_preview(args: PreviewArguments, masking_args) -> None:
    """Print the masked examples (text or JSON lines) and, as text, the summary."""
    tokenizer, examples = masked_examples(args, masking_args)
    if args.format == "json":
        for record in to_json(tokenizer, examples):
            print(json.dumps(record, ensure_ascii=False))
    else:
        print(render_text(tokenizer, examples, color=sys.stdout.isatty()))
        print()
        print(summary(tokenizer, examples))


ARGUMENTS = (PreviewArguments, MaskingArguments)
run = run_preview
