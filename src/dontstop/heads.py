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


def labelled_positions(labels: torch.Tensor) -> torch.Tensor:
    """Flat indices of the labelled positions, in the order `hidden[labels != -100]` takes them.

    Computed before the model is called: inside it, the gather is then an `index_select` whose size is an input's, so
    a compiled forward (`--torch_compile`) has no data-dependent shape and no graph break (the one recompilation a new
    size would cause is avoided by marking it dynamic).
    """
    positions = (labels.reshape(-1) != -100).nonzero().squeeze(-1)
    torch._dynamo.maybe_mark_dynamic(positions, 0)
    return positions


def use_masked_only_head(model: nn.Module, head) -> Callable[[], None]:
    """Make `model(**inputs, labels=..., masked_positions=...)` return {"loss_sum", "count", "correct"} computed on
    the labelled positions only (`masked_positions`, from `labelled_positions`, is computed from the labels if absent).

    The computation is installed as the model's own forward, so a wrapper (DDP, FSDP, DeepSpeed, torch.compile) that
    calls the model keeps its bookkeeping (gradient synchronisation, unused-parameter detection). Every other input
    reaches the encoder unchanged: a 4-D attention mask and position ids (`attention.py`) or flash attention's varlen
    arguments. Without labels, and after the returned `restore()`, the model behaves as before.
    """
    standard = model.forward

    def forward(*args, labels=None, masked_positions=None, **kwargs):
        if labels is None:
            return standard(*args, **kwargs)
        hidden = model.base_model(*args, **kwargs)[0]
        positions = masked_positions if masked_positions is not None else labelled_positions(labels)
        targets = labels.reshape(-1).index_select(0, positions)
        logits = head(model, hidden.reshape(-1, hidden.shape[-1]).index_select(0, positions))
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
    labels = inputs["labels"]
    if masked_only:
        outputs = model(**inputs, masked_positions=labelled_positions(labels))
        return outputs["loss_sum"], outputs["count"], outputs["correct"]
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
