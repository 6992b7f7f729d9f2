"""An auxiliary masked-LM loss on the task text during fine-tuning (`--mlm_weight`): the cheap cousin of TAPT, which
keeps the encoder a language model of the task's text while it learns the task (as in multi-task learning with an LM
objective, e.g. Chronopoulou et al. 2019).

    dontstop finetune --model_name_or_path runs/dapt --mlm_weight 0.5 --train_file train.jsonl ...

Every training batch is masked again by the pretraining collator (`masking.MaskedLMCollator`: tokens, BERT's 15%
and 80/10/10; special tokens and padding never), its draws a pure function of (seed, the round's forward pass count,
the row), and the loss becomes task loss + W x the masked-LM cross-entropy over the masked tokens (a second forward
pass of the encoder). The head is the checkpoint's own MLM head, trained alongside and sharing the classifier's
encoder (and, where the model ties them, its word embeddings); a checkpoint without MLM-head weights is refused, as
`--prompt` refuses it: a fresh head would teach the encoder noise first. With `--prompt` the model already is the
masked LM, and its head serves both losses.

The head is not part of the kept classifier (`seed-S/model` stays a plain `*ForSequenceClassification`), and the
Trainer's gradient clipping covers the classifier's parameters only. `--mlm_weight 0` is off: the run is exactly a
run without the option.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...errors import UsageError
from ...heads import MLM_HEADS
from ...masking import MaskedLMCollator
from .base import Method, register

MLM_PROBABILITY = 0.15  # BERT's and RoBERTa's rate, as pretraining uses it by default
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@register
class AuxiliaryMLM(Method):
    name = "mlm"
    option = "mlm_weight"

    def __init__(self, context):
        model, self.weight = context.model, context.args.mlm_weight
        self.lm = model if getattr(model.config, "prompt", None) else masked_lm_sharing(model, context.source)
        self.head = MLM_HEADS.get(self.lm.config.model_type)
        vocabulary = self.lm.get_output_embeddings().weight.shape[0]
        self.collator = MaskedLMCollator.from_tokenizer(
            context.tokenizer, vocabulary, seed=context.seed, mlm_probability=MLM_PROBABILITY
        )
        self.passes = 0  # training forward passes so far: with the row, what a batch's masks are drawn from
        self.last_term: float | None = None

    @classmethod
    def check(cls, args) -> None:
        if args.uses_adapter:
            raise UsageError("--mlm_weight with --adapter lora: the MLM head would train on a frozen encoder")

    @classmethod
    def check_model(cls, source: str, config) -> None:
        if not getattr(config, "prompt", None):  # the prompt model is checked for its head when it loads
            from .prompt_model import load_masked_lm

            load_masked_lm(source, needed_by="--mlm_weight", why="predict the masked tokens")

    @classmethod
    def settings(cls, args) -> dict:
        return {"weight": args.mlm_weight, "mlm_probability": MLM_PROBABILITY}

    def trainable_parameters(self, model) -> list[nn.Parameter]:
        """The head's weights the classifier does not hold, on the classifier's device."""
        self.lm.to(next(model.parameters()).device)
        held = {id(p) for p in model.parameters()}
        return [p for p in self.lm.parameters() if id(p) not in held and p.requires_grad]

    def loss(self, trainer, model, inputs, outputs, loss):
        term = self.masked_lm_loss(self.masked(inputs))
        self.last_term = float(term.detach())
        return loss + self.weight * term

    def masked(self, inputs: dict) -> dict:
        """The batch's model inputs with its tokens masked afresh, and the labels of the masked tokens."""
        ids = inputs["input_ids"].detach().cpu().numpy()
        masked = [self.collator.mask(row, self.passes, index) for index, row in enumerate(ids)]
        self.passes += 1
        device = inputs["input_ids"].device
        batch = {key: inputs[key] for key in MODEL_INPUTS if inputs.get(key) is not None}
        batch["input_ids"] = torch.from_numpy(np.stack([m.input_ids for m in masked])).to(device)
        batch["labels"] = torch.from_numpy(np.stack([m.labels for m in masked])).to(device)
        return batch

    def masked_lm_loss(self, batch: dict) -> torch.Tensor:
        labels = batch.pop("labels")
        chosen = labels != -100
        if self.head is not None:  # the head on the masked positions only (`heads.py`)
            hidden = self.lm.base_model(**batch)[0]
            logits = self.head(self.lm, hidden[chosen])
        else:  # the class's own forward: a prompt model's instance forward scores label words instead
            logits = type(self.lm).forward(self.lm, **batch).logits[chosen]
        if not chosen.any():  # nothing masked (all-special rows): no term, but a graph the backward pass accepts
            return logits.sum() * 0.0
        return nn.functional.cross_entropy(logits.float(), labels[chosen])


def masked_lm_sharing(model, source: str):
    """The checkpoint's masked LM with its encoder replaced by `model`'s (and its tied output embeddings re-tied to
    the shared input embeddings): one encoder, two heads."""
    from .prompt_model import load_masked_lm

    lm = load_masked_lm(source, needed_by="--mlm_weight", why="predict the masked tokens")
    tied = lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    setattr(lm, lm.base_model_prefix, model.base_model)
    if tied:
        lm.get_output_embeddings().weight = model.get_input_embeddings().weight
    lm.train(model.training)
    return lm
