"""Attention confined to segments: padding-free batches give the padded batches' loss and gradients, a document of a
packed block is encoded as if the others were not there, and the masked-only head passes masks and positions on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TINY_CONFIGS, VOCAB
from transformers import AutoModelForMaskedLM, AutoTokenizer
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

from dontstop.attention import (
    SegmentAttention,
    segment_positions,
    segment_visibility,
    varlen_arguments,
    visibility_mask,
)
from dontstop.heads import MLM_HEADS, masked_lm_loss_sum, use_masked_only_head
from dontstop.masking import EpochIndexed, MaskedLMCollator
from dontstop.tokenization import Framing, LineByLine, PackedBlocks, TokenizedCorpus

CONFIGS = {name: TINY_CONFIGS[name] for name in ("bert", "roberta", "distilbert", "albert")}
FRAMING = {"bert": (2, 3), "roberta": (1, 2), "distilbert": (2, 3), "albert": (2, 3)}  # (prefix, suffix) ids


def collator(padding_free: bool = False, mlm_probability: float = 0.3) -> MaskedLMCollator:
    """Every tiny config pads with 0; ids 0-4 are special, 4 the mask."""
    return MaskedLMCollator(
        mask_token_id=4, pad_token_id=0, vocab_size=VOCAB, special_ids=frozenset(range(5)), seed=5,
        mlm_probability=mlm_probability, padding_free=padding_free,
    )  # fmt: skip


def short_texts(model_type: str, n: int = 12, seed: int = 0) -> list[dict]:
    """Examples of 3 to 20 tokens, framed as the model's tokenizer would, tagged with index and epoch."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 21, n)
    corpus = TokenizedCorpus(rng.integers(5, VOCAB, lengths.sum()).astype(np.int32), np.r_[0, np.cumsum(lengths)])
    prefix, suffix = FRAMING[model_type]
    examples = EpochIndexed(LineByLine(corpus, Framing((prefix,), (suffix,), suffix), max_seq_length=64))
    return [examples[i] for i in range(len(examples))]


def model_of(model_type: str, implementation: str = "sdpa"):
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(CONFIGS[model_type](), attn_implementation=implementation)
    return model.eval()  # no dropout: both layouts see the same network


def loss_and_grads(model, inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss_sum, count, _ = masked_lm_loss_sum(model, inputs, masked_only=True)
    loss = loss_sum / count
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_positions_restart_and_varlen_arguments_bound_each_segment():
    segments = torch.tensor([[0, 0, 0, 1, 1, -1], [2, 2, 3, 3, 3, 3]])
    assert segment_positions(segments).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 0, 1, 2, 3]]
    visible = segment_visibility(segments)
    assert visible[0, 0].tolist() == [True, True, True, False, False, False]
    assert visible[0, 5].tolist() == [False] * 5 + [True]  # padding sees only padding: no empty row
    mask = visibility_mask(visible, torch.float32)
    assert mask.shape == (2, 1, 6, 6) and mask[0, 0, 3, 0] == torch.finfo(torch.float32).min and mask[0, 0, 3, 4] == 0
    keep, arguments = varlen_arguments(segments)
    assert keep.tolist() == [True] * 5 + [False] + [True] * 6
    assert arguments["cu_seq_lens_q"].tolist() == [0, 3, 5, 7, 11] and arguments["max_length_q"] == 4


def test_padding_free_rows_hold_whole_examples_with_the_same_masks():
    features = short_texts("bert")
    padded, packed = collator()(features), collator(padding_free=True)(features)
    assert set(padded) == {"input_ids", "attention_mask", "labels"}  # the default batch, as before
    assert packed["input_ids"].shape[0] < padded["input_ids"].shape[0]  # fewer rows ...
    assert packed["input_ids"].shape[1] <= padded["input_ids"].shape[1]  # ... never wider than the padded batch
    assert packed["attention_mask"].sum() == padded["attention_mask"].sum()
    for segment in range(len(features)):  # every example whole, in one row, with the labels it was drawn
        row, cols = (packed["segment_ids"] == segment).nonzero(as_tuple=True)
        assert row.unique().numel() == 1 and (cols.diff() == 1).all()
        n = len(features[segment]["input_ids"])
        assert packed["input_ids"][row, cols].tolist() == padded["input_ids"][segment, :n].tolist()
        assert packed["labels"][row, cols].tolist() == padded["labels"][segment, :n].tolist()


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_padding_free_loss_and_gradients_equal_the_padded_path(model_type):
    features = short_texts(model_type)
    model = model_of(model_type)
    restore = use_masked_only_head(model, MLM_HEADS[model_type])
    padded = collator()(features)
    loss, grads = loss_and_grads(model, padded)
    packed = SegmentAttention.for_model(model)(collator(padding_free=True)(features))
    assert packed["attention_mask"].dim() == 4 and packed["input_ids"].shape[0] < padded["input_ids"].shape[0]
    packed_loss, packed_grads = loss_and_grads(model, packed)
    torch.testing.assert_close(packed_loss, loss, rtol=1e-5, atol=1e-5)
    assert packed_grads.keys() == grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(packed_grads[name], grad, rtol=1e-5, atol=1e-5, msg=name)
    restore()


def varlen_reference(module, query, key, value, attention_mask, cu_seq_lens_q=None, **kwargs):
    """Flash attention's varlen contract in plain torch: one row, every segment attended alone."""
    assert attention_mask is None and query.shape[0] == 1
    bounds = cu_seq_lens_q.tolist()
    outputs = [
        torch.nn.functional.scaled_dot_product_attention(
            query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], scale=kwargs.get("scaling")
        )
        for start, end in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def test_varlen_arguments_reach_the_attention_through_the_masked_only_head(monkeypatch):
    """The flash-attention path (rows flattened, `cu_seq_lens_*`), checked on CPU with a reference implementation of
    the varlen kernel registered the way transformers registers attention functions."""
    AttentionInterface.register("varlen_reference", varlen_reference)
    try:
        features = short_texts("roberta")
        model = model_of("roberta")
        restore = use_masked_only_head(model, MLM_HEADS["roberta"])
        loss, grads = loss_and_grads(model, collator()(features))
        model.set_attn_implementation("varlen_reference")
        flat = SegmentAttention(varlen=True, position_start=1)(collator(padding_free=True)(features))
        assert flat["input_ids"].shape == (1, sum(len(f["input_ids"]) for f in features))
        flat_loss, flat_grads = loss_and_grads(model, flat)
        torch.testing.assert_close(flat_loss, loss, rtol=1e-5, atol=1e-5)
        for name, grad in grads.items():
            torch.testing.assert_close(flat_grads[name], grad, rtol=1e-5, atol=1e-5, msg=name)
        restore()
    finally:
        ALL_ATTENTION_FUNCTIONS._global_mapping.pop("varlen_reference", None)


def hidden_states(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model.base_model(**batch).last_hidden_state


@pytest.mark.parametrize("documents", [True, False])
def test_a_document_does_not_see_the_other_documents_of_its_block(documents):
    """With --packing documents, changing the second document of a block leaves the first one's hidden states
    unchanged; with --packing full it changes them (so the test can fail)."""
    first, second = np.arange(10, 22), np.arange(30, 45)
    changed = second.copy()
    changed[[2, 7]] = [80, 81]
    framing = Framing((2,), (3,), 3)
    model = model_of("bert").eval()
    states = []
    for other in (second, changed):
        corpus = TokenizedCorpus(np.r_[first, other].astype(np.int32), np.array([0, len(first), len(first) + 15]))
        item = PackedBlocks(corpus, framing, max_seq_length=40, documents=documents)[0]
        assert len(item["input_ids"]) == 1 + 12 + 1 + 15 + 1
        batch = {"input_ids": torch.tensor(item["input_ids"], dtype=torch.long)[None]}
        if documents:
            assert item["segments"].tolist() == [0, 14]  # [CLS] + first + [SEP] | second + [SEP]
            segment_ids = torch.tensor(np.searchsorted(item["segments"], np.arange(30), side="right") - 1)[None]
            batch = SegmentAttention.for_model(model)({**batch, "segment_ids": segment_ids})
        states.append(hidden_states(model, batch))
    unchanged = torch.allclose(states[0][0, :14], states[1][0, :14], atol=1e-6)
    assert unchanged == documents
    if documents:  # and the first document is encoded exactly as if it were alone in its block
        alone = hidden_states(model, {"input_ids": torch.tensor([[2, *first, 3]])})
        torch.testing.assert_close(states[0][:, :14], alone, rtol=1e-5, atol=1e-5)


def test_masked_only_head_passes_a_4d_mask_and_position_ids_on():
    """What knowledge injection will use: any visibility as a 4-D additive mask, with position ids, gives the
    masked-only head the loss of the model's own forward with the same inputs."""
    model = model_of("bert")
    batch = collator()(short_texts("bert", n=4))
    visible = segment_visibility(torch.where(batch["attention_mask"] > 0, 0, -1))
    visible[:, 3:, :2] = False  # an arbitrary pattern, not block-diagonal
    inputs = {
        "input_ids": batch["input_ids"],
        "attention_mask": visibility_mask(visible, torch.float32),
        "position_ids": torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"]),
        "labels": batch["labels"],
    }
    standard = model(**inputs).loss
    restore = use_masked_only_head(model, MLM_HEADS["bert"])
    loss_sum, count, _ = masked_lm_loss_sum(model, inputs, masked_only=True)
    torch.testing.assert_close(loss_sum / count, standard, rtol=1e-5, atol=1e-6)
    restore()


def test_compiled_masked_only_forward_has_no_graph_break():
    """The gather of masked positions takes precomputed indices: the whole forward is one graph (fullgraph=True
    raises on a break), and batches with other numbers of masked tokens reuse it."""
    import torch._dynamo

    model = model_of("bert")
    restore = use_masked_only_head(model, MLM_HEADS["bert"])
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    counts = set()
    for seed in range(3):
        batch = collator(mlm_probability=0.2 + 0.1 * seed)(short_texts("bert", n=6, seed=seed))
        batch["input_ids"] = batch["input_ids"][:, :16]
        batch["attention_mask"], batch["labels"] = batch["attention_mask"][:, :16], batch["labels"][:, :16]
        loss_sum, count, _ = masked_lm_loss_sum(compiled, batch, masked_only=True)
        expected, _, _ = masked_lm_loss_sum(model, batch, masked_only=True)
        torch.testing.assert_close(loss_sum, expected, rtol=1e-5, atol=1e-5)
        (loss_sum / count).backward()
        counts.add(int(count))
    assert len(counts) == 3
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] <= 2  # compiled once, then once with dynamic sizes
    torch._dynamo.reset()
    restore()


def test_real_tokenizer_positions_match_roberta(tiny_roberta):
    """RoBERTa counts positions from padding_idx + 1: one example alone gives the model's own position ids."""
    model = AutoModelForMaskedLM.from_pretrained(tiny_roberta).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_roberta)
    ids = tokenizer(["the kernel module loads a driver"], return_tensors="pt")["input_ids"]
    batch = SegmentAttention.for_model(model)({"input_ids": ids, "segment_ids": torch.zeros_like(ids)})
    assert batch["position_ids"][0, 0] == model.config.pad_token_id + 1
    torch.testing.assert_close(hidden_states(model, batch), hidden_states(model, {"input_ids": ids}))
