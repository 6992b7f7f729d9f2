"""Dynamic masking whose masks are a pure function of (seed, epoch, example index).

Hugging Face's `DataCollatorForLanguageModeling` draws masks from the global torch RNG inside whichever dataloader
worker builds the batch, so masks change with the number of workers and a resumed run sees different masks. Here the
sampler tells each example its epoch (`EpochSampler` encodes it in the index it yields and `EpochIndexed` decodes it),
and the collator seeds a generator per example from (seed, epoch, index): same seed, same masks, any worker count,
resume included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class EpochSampler(torch.utils.data.Sampler):
    """A seeded permutation per epoch that yields `epoch * n + i`, so the dataset learns the epoch with the index.

    With `lengths`, examples of similar length are batched together (shuffle, sort within windows of 50 batches,
    shuffle the batches): short texts in line-by-line mode waste little compute on padding.
    """

    def __init__(self, num_examples: int, seed: int, lengths: np.ndarray | None = None, batch_size: int = 1):
        self.n = num_examples
        self.seed = seed
        self.lengths = lengths
        self.batch_size = batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.n)
        if self.lengths is None:
            return order
        window = self.batch_size * 50
        order = np.concatenate(
            [
                chunk[np.argsort(-self.lengths[chunk], kind="stable")]
                for chunk in np.split(order, range(window, self.n, window))
            ]
        )
        batches = np.split(order, range(self.batch_size, self.n, self.batch_size))
        return np.concatenate([batches[i] for i in rng.permutation(len(batches))])

    def __iter__(self):
        base = self.epoch * self.n
        return iter((base + self.order(self.epoch)).tolist())


class EpochIndexed(torch.utils.data.Dataset):
    """Wraps a dataset so that item `epoch * n + i` is example i tagged with its index and epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int) -> dict:
        epoch, i = divmod(int(k), len(self.dataset))
        return {**self.dataset[i], "idx": i, "epoch": epoch}

    def lengths(self) -> np.ndarray:
        return self.dataset.lengths()


def pad_batch(features: list[dict], pad_id: int, pad_to_multiple_of: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(f["input_ids"]) for f in features)
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(features), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(features), width), dtype=torch.long)
    for row, f in enumerate(features):
        ids = torch.as_tensor(np.asarray(f["input_ids"], dtype=np.int64))
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


@dataclass
class MaskedLMCollator:
    """Token-level dynamic masking (BERT's recipe, no NSP): each maskable token is chosen with `mlm_probability`;
    a chosen token becomes the mask token with `mask_replace_prob`, a random token with `random_replace_prob`, and
    stays itself otherwise. Special tokens and padding are never chosen."""

    mask_token_id: int
    pad_token_id: int
    vocab_size: int
    special_ids: frozenset[int]
    seed: int = 42
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if (
            self.mask_replace_prob < 0
            or self.random_replace_prob < 0
            or self.mask_replace_prob + self.random_replace_prob > 1
        ):
            raise ValueError("--mask_replace_prob and --random_replace_prob must be >= 0 and sum to at most 1")
        self._special = np.array(sorted(self.special_ids), dtype=np.int64)

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int, **kwargs) -> MaskedLMCollator:
        if tokenizer.mask_token_id is None:
            raise ValueError(
                f"{tokenizer.name_or_path}: the tokenizer has no mask token, so it cannot train a masked LM"
            )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.mask_token_id
        return cls(tokenizer.mask_token_id, pad, vocab_size, frozenset(tokenizer.all_special_ids), **kwargs)

    def mask(self, ids: np.ndarray, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(masked input ids, labels) for one example; -100 marks positions that are not predicted."""
        rng = np.random.default_rng([self.seed, epoch, index])
        maskable = ~np.isin(ids, self._special)
        chosen = (rng.random(len(ids)) < self.mlm_probability) & maskable
        how = rng.random(len(ids))
        random_tokens = rng.integers(0, self.vocab_size, len(ids))
        labels = np.where(chosen, ids, -100)
        out = ids.copy()
        to_mask = chosen & (how < self.mask_replace_prob)
        to_random = (
            chosen & (how >= self.mask_replace_prob) & (how < self.mask_replace_prob + self.random_replace_prob)
        )
        out[to_mask] = self.mask_token_id
        out[to_random] = random_tokens[to_random]
        return out, labels

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_batch(features, self.pad_token_id, self.pad_to_multiple_of)
        labels = torch.full_like(input_ids, -100)
        for row, f in enumerate(features):
            ids = np.asarray(f["input_ids"], dtype=np.int64)
            masked, target = self.mask(ids, int(f.get("epoch", 0)), int(f["idx"]))
            input_ids[row, : len(ids)] = torch.from_numpy(masked)
            labels[row, : len(ids)] = torch.from_numpy(target)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass
class CausalLMCollator:
    """Next-token prediction: labels are the inputs (the model shifts them); padding is never predicted."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_batch(features, self.pad_token_id, self.pad_to_multiple_of)
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
