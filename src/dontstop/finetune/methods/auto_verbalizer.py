"""Label words chosen by the model (`--verbalizer auto`): LM-BFF's automatic label word selection (Gao et al. 2021),
for users who do not know which words to give each label.

    dontstop finetune --model_name_or_path runs/tapt --prompt "{text} This package is about {mask}." \\
        --verbalizer auto --auto_verbalizer_candidates 10 --train_file train.jsonl ... --output_dir runs/auto

1. Every training example (those of the first seed's draw under --train_limit or --train_limit_per_class) is put in
   the template, and the checkpoint's own MLM head scores the whole vocabulary at the mask slot (log-softmax).
2. A label's score of a token is the mean of those log-probabilities over the label's examples (for multi_label:
   the examples that carry the label). A label without a training example is an error: nothing would choose its word.
3. Each label keeps its `--auto_verbalizer_candidates` best-scored tokens that are a whole word: letters only, not a
   special token, and spelled by the tokenizer, in the slot's context, as exactly that one token (so a WordPiece
   continuation "##ing", or a byte-level BPE piece without its leading space "Ġ", is skipped).
4. The words are then given out one to one, greedily by margin: over all (label, candidate) pairs, the pair whose
   score most exceeds the best score of any other label for the same token goes first; a label takes one word, a
   word goes to one label. A label whose candidates all went to others is an error that names the option to raise.

LM-BFF goes on to search combinations of candidates by dev accuracy after fine-tuning each; this is its cheap first
step alone. The choice is a pure function of the checkpoint, the template and the examples (ties go to the lower
token id): the same run chooses the same words. It is logged, kept in results.json (`prompt.chosen_by`), and written
to OUTPUT_DIR/verbalizer.json, which `--verbalizer verbalizer.json` takes back as it is or edited.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ...errors import UsageError
from ...heads import MLM_HEADS
from .prompt import encode_prompt, template_pieces
from .prompt_model import load_masked_lm

logger = logging.getLogger(__name__)

AUTO = "auto"
FILE = "verbalizer.json"


def is_auto(verbalizer: str | None) -> bool:
    return str(verbalizer or "").strip().lower() == AUTO


def label_members(task, split) -> np.ndarray:
    """[examples, labels]: 1 where an example carries the label (one per row for single_label)."""
    members = np.zeros((len(split), len(task.labels)), dtype=np.float32)
    for row, gold in enumerate(split.labels):
        for label in gold if isinstance(gold, list) else [gold]:
            members[row, task.label2id[label]] = 1.0
    return members


def mean_log_probs(model, prompt: dict, split, members: np.ndarray, tokenizer, max_length: int, batch_size: int):
    """[labels, vocabulary]: each label's mean log-probability of every token at the slot over its examples."""
    columns, _ = encode_prompt(prompt, split.texts, split.pairs, tokenizer, max_length)
    positions = columns.pop("mask_position")
    head = MLM_HEADS.get(model.config.model_type)
    device = next(model.parameters()).device
    weights = torch.from_numpy(members)
    totals = None
    model.eval()
    with torch.no_grad():
        for start in range(0, len(positions), batch_size):
            rows = {key: values[start : start + batch_size] for key, values in columns.items()}
            batch = {k: v.to(device) for k, v in tokenizer.pad(rows, return_tensors="pt").items()}
            at = (torch.arange(len(rows["input_ids"]), device=device), torch.tensor(positions[start : start +
                  batch_size], device=device))  # fmt: skip
            if head is not None:  # the head on the slot alone: the whole vocabulary at one position per example
                logits = head(model, model.base_model(**batch)[0][at])
            else:
                logits = model(**batch).logits[at]
            part = weights[start : start + batch_size].T @ logits.float().log_softmax(-1).cpu()
            totals = part if totals is None else totals + part
    return (totals / weights.sum(0)[:, None]).numpy()


def whole_word(token_id: int, tokenizer, space: bool, special: set[int]) -> str | None:
    """The word `token_id` is, when the slot would spell that word as exactly this token; else None."""
    if token_id in special:
        return None
    word = tokenizer.decode([token_id]).strip()
    if not word.isalpha():
        return None
    spelled = tokenizer((" " if space else "") + word, add_special_tokens=False)["input_ids"]
    return word if spelled == [token_id] else None


def candidates(scores: np.ndarray, tokenizer, space: bool, count: int) -> list[tuple[int, str]]:
    """The `count` best-scored whole words of one label's row of scores, best first (ties: lower id first)."""
    special = set(tokenizer.all_special_ids)
    order = np.lexsort((np.arange(len(scores)), -scores))
    found = []
    for token_id in order.tolist():
        word = whole_word(token_id, tokenizer, space, special)
        if word is not None:
            found.append((token_id, word))
            if len(found) == count:
                break
    return found


def assign(scores: np.ndarray, ranked: list[list[tuple[int, str]]], labels: list[str], count: int) -> dict:
    """label -> (token id, word, margin): one word per label, one label per word, greedily by margin."""
    pairs = []
    for c, options in enumerate(ranked):
        others = np.delete(scores, c, axis=0)
        for token_id, word in options:
            margin = scores[c, token_id] - (others[:, token_id].max() if len(others) else 0.0)
            pairs.append((-float(margin), c, token_id, word))
    chosen, used = {}, set()
    for negative_margin, c, token_id, word in sorted(pairs):
        if labels[c] not in chosen and token_id not in used:
            chosen[labels[c]] = (token_id, word, -negative_margin)
            used.add(token_id)
    for label in labels:
        if label not in chosen:
            raise UsageError(f"--verbalizer auto: every one of label {label!r}'s {count} candidate words went to "
                             "another label; raise --auto_verbalizer_candidates")  # fmt: skip
    return chosen


def choose_verbalizer(source: str, task, tokenizer, template: str, columns: dict[str, str], examples: list[int],
                      count: int, max_length: int, batch_size: int) -> tuple[dict, dict]:  # fmt: skip
    """({label: [word]}, the record of the choice) for the training examples at `examples` (indices into
    task.train)."""
    split = task.train.subset(examples)
    members = label_members(task, split)
    for label, n in zip(task.labels, members.sum(0), strict=True):
        if n == 0:
            raise UsageError(f"--verbalizer auto: label {label!r} has no training example to choose its word from")
    pieces, space = template_pieces(template, columns, tokenizer)
    model = load_masked_lm(source, needed_by="--verbalizer auto", why="score the candidate label words")
    if torch.cuda.is_available():
        model.to("cuda")
    scores = mean_log_probs(model, {"pieces": pieces, "slots": 1}, split, members, tokenizer, max_length, batch_size)
    del model
    ranked = [candidates(scores[c], tokenizer, space, count) for c in range(len(task.labels))]
    for label, options in zip(task.labels, ranked, strict=True):
        if not options:
            raise UsageError(f"--verbalizer auto: no whole word of the vocabulary scores for label {label!r}")
    chosen = assign(scores, ranked, task.labels, count)
    words = {label: [chosen[label][1]] for label in task.labels}
    record = {
        "method": "lm-bff (mean log-probability at the slot; one to one by margin)",
        "examples": len(split),
        "candidates_per_label": count,
        "words": {label: {"word": word, "mean_log_prob": round(float(scores[task.label2id[label], token_id]), 4),
                          "margin": round(float(margin), 4)} for label, (token_id, word, margin) in chosen.items()},
        "candidates": {label: [word for _, word in options] for label, options in zip(task.labels, ranked,
                       strict=True)},
    }  # fmt: skip
    logger.info("--verbalizer auto chose: %s", ", ".join(f"{label} -> {w[0]}" for label, w in words.items()))
    return words, record
