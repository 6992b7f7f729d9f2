"""Where the masked examples of a batch go when attention is confined to segments (`attention.py`).

Padded (the default, and `--packing documents`): one example per row, as `pad_batch` lays them out; the documents an
example holds (`segments`: where each starts, from `PackedBlocks(documents=True)`) become its segments.

Padding-free (`--padding_free`): whole examples packed into as few rows as fit, first-fit by decreasing length, rows as
wide as the batch's longest example, so a packed batch never holds more positions than the padded one; each example
is a segment of its own. Only the layout changes: every example keeps the masks it was drawn (a pure function of seed,
epoch and index), so the loss equals the padded batch's.

Segment ids are unique in the whole batch, so rows can also be flattened into one (flash attention's varlen path).
"""

from __future__ import annotations

import numpy as np
import torch


def segment_ids(features: list[dict], lengths: np.ndarray, width: int) -> np.ndarray:
    """(examples, width) int64: each token's segment, unique in the batch; -1 for padding."""
    ids = np.full((len(features), width), -1, dtype=np.int64)
    base = 0
    for row, (feature, length) in enumerate(zip(features, lengths, strict=True)):
        starts = np.asarray(feature.get("segments", (0,)), dtype=np.int64)
        ids[row, :length] = base + np.searchsorted(starts, np.arange(length), side="right") - 1
        base += len(starts)
    return ids


def first_fit(lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, offset in the row) of each example, packed first-fit by decreasing length into rows of `width`."""
    rows, offsets = np.zeros(len(lengths), dtype=np.int64), np.zeros(len(lengths), dtype=np.int64)
    filled: list[int] = []
    for example in np.argsort(-lengths, kind="stable"):
        length = int(lengths[example])
        row = next((r for r, used in enumerate(filled) if used + length <= width), len(filled))
        if row == len(filled):
            filled.append(0)
        rows[example], offsets[example] = row, filled[row]
        filled[row] += length
    return rows, offsets


def segmented(batch: dict[str, torch.Tensor], features: list[dict], pad_id: int, pack: bool) -> dict:
    """The padded batch (input_ids, attention_mask, labels) with `segment_ids`; with `pack`, laid out padding-free."""
    lengths = batch["attention_mask"].sum(1).numpy()
    arrays = {name: value.numpy() for name, value in batch.items()}  # every per-token column, knowledge's too
    arrays["segment_ids"] = segment_ids(features, lengths, arrays["input_ids"].shape[1])
    if not pack:
        return {name: torch.from_numpy(array) for name, array in arrays.items()}
    rows, offsets = first_fit(lengths, arrays["input_ids"].shape[1])
    # Every token's (example, column) in the padded batch and (row, column) in the packed one.
    within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    source = (np.repeat(np.arange(len(lengths)), lengths), within)
    target = (np.repeat(rows, lengths), np.repeat(offsets, lengths) + within)
    shape = (int(rows.max()) + 1, int(target[1].max()) + 1)
    fillers = {"input_ids": pad_id, "attention_mask": 0, "labels": -100, "segment_ids": -1, "knowledge_slot": -1,
               "knowledge_appended": False}  # fmt: skip
    packed = {}
    for name, array in arrays.items():
        packed[name] = np.full(shape, fillers[name], dtype=array.dtype)
        packed[name][target] = array[source]
    return {name: torch.from_numpy(array) for name, array in packed.items()}
