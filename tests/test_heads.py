"""The masked-only MLM head gives the loss and gradients of the standard path; objectives are inferred."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_CONFIGS, VOCAB
from torch import nn
from transformers import AutoModelForMaskedLM, BertConfig, GPT2Config, LlamaConfig, RobertaConfig

from dontstop.heads import MLM_HEADS, masked_lm_loss_sum, use_masked_only_head
from dontstop.models import infer_objective

CONFIGS = TINY_CONFIGS


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (3, 24), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[2, 18:] = 0
    labels = torch.where(torch.rand(input_ids.shape, generator=g) < 0.2, input_ids, torch.full_like(input_ids, -100))
    labels[attention_mask == 0] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_masked_only_head_matches_standard_path(model_type):
    assert model_type in MLM_HEADS
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(CONFIGS[model_type](), attn_implementation="eager")
    model.eval()  # no dropout, so both passes see the same network
    inputs = batch()
    n = (inputs["labels"] != -100).sum()

    standard = model(**inputs).loss
    standard.backward()
    standard_grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    restore = use_masked_only_head(model, MLM_HEADS[model_type])
    loss_sum, count, _ = masked_lm_loss_sum(model, inputs, masked_only=True)
    ours = loss_sum / count
    ours.backward()
    assert count == n
    torch.testing.assert_close(ours, standard, rtol=1e-5, atol=1e-6)
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert grads.keys() == standard_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, standard_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    restore()
    torch.testing.assert_close(model(**inputs).loss, standard)  # the model's own forward is back


def test_gathering_precomputed_positions_is_bitwise_the_boolean_gather():
    """The masked-only head gathers positions computed before the call (so a compiled forward has no data-dependent
    shape): loss and gradients are those of `hidden[labels != -100]`, the gather it replaced, bit for bit."""
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(CONFIGS["bert"]()).eval()
    inputs = batch(2)
    labels = inputs["labels"]
    hidden = model.base_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])[0]
    selected = labels != -100
    loss = nn.functional.cross_entropy(model.cls(hidden[selected]).float(), labels[selected], reduction="sum")
    loss.backward()
    before = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    restore = use_masked_only_head(model, MLM_HEADS["bert"])
    loss_sum, _, _ = masked_lm_loss_sum(model, inputs, masked_only=True)
    loss_sum.backward()
    assert torch.equal(loss_sum, loss)
    for name, grad in before.items():
        assert torch.equal(model.get_parameter(name).grad, grad), name
    restore()


def test_unregistered_architecture_uses_the_full_forward():
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(CONFIGS["bert"]())
    model.eval()
    inputs = batch(1)
    loss_sum, count, _ = masked_lm_loss_sum(model, inputs, masked_only=False)
    torch.testing.assert_close(loss_sum / count, model(**inputs).loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "config, objective",
    [
        (BertConfig(architectures=["BertForMaskedLM"]), "mlm"),
        (BertConfig(architectures=["BertModel"]), "mlm"),  # sentence encoders: an encoder, so MLM
        (RobertaConfig(), "mlm"),
        (GPT2Config(architectures=["GPT2LMHeadModel"]), "clm"),
        (GPT2Config(), "clm"),
        (LlamaConfig(architectures=["LlamaForCausalLM"]), "clm"),
    ],
)
def test_objective_is_inferred(config, objective):
    assert infer_objective(config) == objective
