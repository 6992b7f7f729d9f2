"""The MLM head run on masked positions only, and the summed losses of both objectives.

The MLM head projects every position onto the whole vocabulary, yet only ~15% of positions carry a label; for small
encoders with large vocabularies (MiniLM: 30k x 384) that projection is about half the forward FLOPs. Running the
encoder, gathering the labelled positions and applying the head to those alone gives the same loss and gradients
(a test checks it) for a fraction of the cost. Each supported architecture registers how its head is applied to
hidden states; any other falls back to the model's own forward, with a logged note.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

logger = logging.getLogger(__name__)

# model_type -> function(model, hidden_states) -> logits, mirroring each *ForMaskedLM.forward after its encoder call.
MLM_HEADS: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {}


def register_mlm_head(*model_types: str):
    def decorator(fn):
        for model_type in model_types:
            MLM_HEADS[model_type] = fn
        return fn

    return decorator


@register_mlm_head("bert", "megatron-bert")
def _bert_head(model, hidden):
    return model.cls(hidden)


@register_mlm_head("roberta", "xlm-roberta", "camembert", "roberta-prelayernorm", "xlm-roberta-xl", "mpnet")
def _roberta_head(model, hidden):
    return model.lm_head(hidden)


@register_mlm_head("distilbert")
def _distilbert_head(model, hidden):
    return model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(hidden))))


@register_mlm_head("deberta-v2")
def _deberta_v2_head(model, hidden):
    if model.legacy:
        return model.cls(hidden)
    return model.lm_predictions(hidden, model.deberta.embeddings.word_embeddings)


@register_mlm_head("modernbert")
def _modernbert_head(model, hidden):
    return model.decoder(model.head(hidden))


@register_mlm_head("albert")
def _albert_head(model, hidden):
    return model.predictions(hidden)


def masked_only_head(model: nn.Module) -> Callable[[nn.Module, torch.Tensor], torch.Tensor] | None:
    head = MLM_HEADS.get(model.config.model_type)
    if head is None:
        logger.info(
            "No masked-only MLM head for model type %r: using the model's own forward (all positions).",
            model.config.model_type,
        )
    return head


def use_masked_only_head(model: nn.Module, head) -> Callable[[], None]:
    """Make `model(**inputs, labels=...)` return {"loss_sum", "count", "correct"} computed on labelled positions only.

    The computation is installed as the model's own forward, so a wrapper (DDP, FSDP, DeepSpeed) that calls the model
    keeps its bookkeeping (gradient synchronisation, unused-parameter detection). Without labels, and after the
    returned `restore()`, the model behaves as before.
    """
    standard = model.forward

    def forward(*args, labels=None, **kwargs):
        if labels is None:
            return standard(*args, **kwargs)
        hidden = model.base_model(*args, **kwargs)[0]
        selected = labels != -100
        targets = labels[selected]
        logits = head(model, hidden[selected])
        return {
            "loss_sum": nn.functional.cross_entropy(logits.float(), targets, reduction="sum"),
            "count": targets.numel(),
            "correct": (logits.detach().argmax(-1) == targets).sum(),
        }

    model.forward = forward

    def restore() -> None:
        del model.forward  # the instance attribute goes; the class's forward shows again

    return restore


def masked_lm_loss_sum(model: nn.Module, inputs: dict[str, torch.Tensor], masked_only: bool):
    """(summed loss, number of predicted tokens, number predicted correctly) for one batch. `model` may be wrapped.

    With `masked_only` the model's forward was replaced by `use_masked_only_head`; otherwise the model's own forward
    computes logits for every position.
    """
    if masked_only:
        outputs = model(**inputs)
        return outputs["loss_sum"], outputs["count"], outputs["correct"]
    labels = inputs["labels"]
    selected = labels != -100
    targets = labels[selected]
    logits = model(**{k: v for k, v in inputs.items() if k != "labels"}).logits[selected]
    loss = nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, targets.numel(), (logits.detach().argmax(-1) == targets).sum()


def causal_lm_loss_sum(
    model: nn.Module, inputs: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(summed next-token loss, number of predicted tokens, number predicted correctly) for one batch."""
    labels = inputs["labels"]
    features = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**features).logits[:, :-1]
    targets = labels[:, 1:]
    selected = targets != -100
    logits, targets = logits[selected], targets[selected]
    loss = nn.functional.cross_entropy(logits.float(), targets, reduction="sum")
    correct = (logits.detach().argmax(-1) == targets).sum()
    return loss, targets.numel(), correct
