"""Who sees what once knowledge is appended (`expand.py`): the 4-D additive attention mask, through the one mechanism
of `attention.py` (`visibility_mask`), so SDPA, eager attention and the masked-only MLM head take it unchanged.

Per token, `knowledge_slot` (the expanded term it belongs to, or -1) and `knowledge_appended` (whether it is appended
text). With `one_way` (DictBERT): the text sees the text; appended text sees itself and its term's occurrences in
the text, nothing else; so the text's hidden states are exactly those it has without the knowledge (a test checks
it), and what teaches a term its definition is the masked-LM loss on the definition. With `both_ways` (K-BERT's
visible matrix): a term's tokens also see its appended text, through which the knowledge reaches the sentence. In a
batch whose attention is confined to segments (`--padding_free`, `--packing documents`) both rules apply: the
visibility is intersected with the segments', with the segments' own position ids. Flash attention's varlen kernel
takes no such mask: knowledge runs with SDPA or eager attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..attention import POSITION_START, segment_positions, segment_visibility, visibility_mask


def knowledge_visibility(slot: torch.Tensor, appended: torch.Tensor, both_ways: bool) -> torch.Tensor:
    """(rows, length, length) bool: query i sees key j (see the module docstring)."""
    same = slot[:, :, None] == slot[:, None, :]
    text = ~appended
    visible = text[:, :, None] & text[:, None, :]
    if both_ways:
        return visible | (same & (slot >= 0)[:, :, None])
    return visible | (same & appended[:, :, None])


def padding_visibility(attention_mask: torch.Tensor) -> torch.Tensor:
    """Tokens see tokens, padding sees padding (so no row of the mask is empty)."""
    real = attention_mask.bool()
    return real[:, :, None] == real[:, None, :]


@dataclass(frozen=True)
class KnowledgeAttention:
    """Replaces a batch's knowledge columns (and its 2-D attention mask, and its `segment_ids` if any) by the 4-D mask
    of who sees what; `mask_dtype` is the dtype of the model's weights (see `attention.SegmentAttention`)."""

    both_ways: bool = False
    position_start: int = 0
    mask_dtype: torch.dtype = torch.float32

    @classmethod
    def for_model(cls, model, both_ways: bool) -> KnowledgeAttention:
        config = model.config
        start = POSITION_START.get(config.model_type, lambda c: 0)(config)
        return cls(both_ways, start, model.dtype)

    def __call__(self, inputs: dict) -> dict:
        inputs = dict(inputs)
        slot, appended = inputs.pop("knowledge_slot"), inputs.pop("knowledge_appended").bool()
        visible = knowledge_visibility(slot, appended, self.both_ways)
        segments = inputs.pop("segment_ids", None)
        if segments is not None:
            visible &= segment_visibility(segments)
            inputs["position_ids"] = segment_positions(segments) + self.position_start
        else:
            visible &= padding_visibility(inputs["attention_mask"])
        inputs["attention_mask"] = visibility_mask(visible, self.mask_dtype)
        return inputs


def knowledge_columns(features: list[dict], width: int) -> dict[str, torch.Tensor] | None:
    """The padded `knowledge_slot` and `knowledge_appended` of a batch laid out one example per row (`pad_batch`),
    or None when no example of the batch has knowledge."""
    if not any("knowledge_slot" in f for f in features):
        return None
    slots = np.full((len(features), width), -1, dtype=np.int64)
    appended = np.zeros((len(features), width), dtype=bool)
    for row, f in enumerate(features):
        if "knowledge_slot" in f:
            n = len(f["knowledge_slot"])
            slots[row, :n] = f["knowledge_slot"]
            appended[row, f["text_length"] : n] = True
    return {"knowledge_slot": torch.from_numpy(slots), "knowledge_appended": torch.from_numpy(appended)}


class KnowledgeCollator:
    """Fine-tuning batches with appended knowledge (`expand.expand_dataset`): the task's own collator pads the text
    columns, then the knowledge columns become the 4-D attention mask (built on the CPU: task batches are small)."""

    KEYS = ("knowledge_slot", "text_length")

    def __init__(self, collator, both_ways: bool):
        self.collator = collator
        self.both_ways = both_ways

    def __call__(self, features: list[dict]) -> dict:
        knowledge = [{key: f[key] for key in self.KEYS} for f in features]
        batch = self.collator([{k: v for k, v in f.items() if k not in self.KEYS} for f in features])
        columns = knowledge_columns(knowledge, batch["input_ids"].shape[1])
        visible = knowledge_visibility(columns["knowledge_slot"], columns["knowledge_appended"], self.both_ways)
        visible &= padding_visibility(batch["attention_mask"])
        batch["attention_mask"] = visibility_mask(visible, torch.float32)
        return batch
