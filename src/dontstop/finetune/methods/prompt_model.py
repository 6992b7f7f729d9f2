"""The prompt-based classifier: a masked LM whose forward scores each label's words at the template's mask slot
(see `prompt.py` for the rule), loaded with the head its checkpoint carries."""

from __future__ import annotations

import logging

import torch
from torch import nn

from ...errors import UsageError
from ...heads import MLM_HEADS

logger = logging.getLogger(__name__)


class LabelWords(nn.Module):
    """The verbalizer as tensors: token ids [labels, words, slots], and which entries are real."""

    def __init__(self, prompt: dict):
        super().__init__()
        labels = prompt["word_ids"]
        words = max(len(label) for label in labels)
        ids = torch.zeros(len(labels), words, prompt["slots"], dtype=torch.long)
        present = torch.zeros_like(ids, dtype=torch.float)
        for c, label in enumerate(labels):
            for w, tokens in enumerate(label):
                ids[c, w, : len(tokens)] = torch.tensor(tokens)
                present[c, w, : len(tokens)] = 1.0
        # Buffers follow the model to its device; not persistent: the config holds the verbalizer, not the weights.
        self.register_buffer("ids", ids, persistent=False)
        self.register_buffer("present", present, persistent=False)
        self.logits_only = prompt["scoring"] == "logit"

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        """[batch, labels] scores from the head's [batch, slots, vocab] logits at the slot."""
        present = self.present
        if self.logits_only:  # every word one token: the head's logits themselves (LM-BFF)
            per_word = logits[:, 0, :].float()[:, self.ids[..., 0]]  # [batch, labels, words]
        else:
            log_probs = logits.float().log_softmax(-1)
            slots = torch.arange(self.ids.shape[-1], device=logits.device)
            picked = log_probs[:, slots, self.ids]  # [batch, labels, words, slots]
            per_word = (picked * present).sum(-1) / present.sum(-1).clamp(min=1)
        words = present[..., 0]  # a label's real words (labels with fewer words are padded)
        return (per_word * words).sum(-1) / words.sum(-1)


def load_masked_lm(source: str, config=None, needed_by: str = "--prompt", why: str = "score the label words"):
    """The checkpoint as a masked LM with the head it carries; a checkpoint without MLM-head weights (a sentence
    encoder) is refused, since a fresh head would score nothing it learnt."""
    from transformers import AutoModelForMaskedLM

    from ...models import load_pretrained

    model, info = load_pretrained(AutoModelForMaskedLM, source, keep_head=True, **({"config": config} if config
                                  else {}))  # fmt: skip
    encoder = f"{model.base_model_prefix}."
    missing = sorted(k for k in info["missing_keys"] if not k.startswith(encoder))
    if missing:
        raise UsageError(
            f"{source}: no masked-LM head weights ({missing[0]}, ...), so nothing would {why}; "
            f"dontstop pretrain trains one (its head warm-up), then {needed_by} can use it"
        )
    return model


def load_prompt_model(source: str, config, seed: int):
    """The checkpoint as a masked LM with its own head, scoring the verbalizer (`config.prompt`) at the slot."""
    from transformers import set_seed

    set_seed(seed)
    model = load_masked_lm(source, config)
    use_prompt_head(model, LabelWords(config.prompt), config.problem_type == "multi_label_classification")
    return model


def use_prompt_head(model: nn.Module, words: LabelWords, multi_label: bool) -> None:
    """Make the model's forward return the labels' scores (and the loss against `labels`). The head runs on the
    slot's positions only where `heads.MLM_HEADS` knows the architecture; else on every position."""
    from transformers.modeling_outputs import SequenceClassifierOutput

    model.add_module("label_words", words)
    standard, head = model.forward, MLM_HEADS.get(model.config.model_type)
    slots = words.ids.shape[-1]

    def forward(input_ids=None, attention_mask=None, token_type_ids=None, mask_position=None, labels=None):
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)[:, None]
        columns = mask_position[:, None] + torch.arange(slots, device=input_ids.device)
        if head is not None:
            logits = head(model, model.base_model(**inputs)[0][rows, columns])
        else:
            logits = standard(**inputs).logits[rows, columns]
        scores = model.label_words(logits)
        loss = None
        if labels is not None:
            loss = (nn.functional.binary_cross_entropy_with_logits(scores, labels.float()) if multi_label
                    else nn.functional.cross_entropy(scores, labels))  # fmt: skip
        return SequenceClassifierOutput(loss=loss, logits=scores)

    model.forward = forward
