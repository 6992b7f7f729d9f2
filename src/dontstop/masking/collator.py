"""Collators: dynamic masking whose masks are a pure function of (seed, epoch, example index), and causal LM.

Hugging Face's `DataCollatorForLanguageModeling` draws masks from the global torch RNG inside whichever dataloader
worker builds the batch, so masks change with the number of workers and a resumed run sees different masks. Here the
sampler tells each example its epoch (`EpochSampler` encodes it in the index it yields and `EpochIndexed` decodes it),
and the collator seeds a generator per example from (seed, epoch, index): same seed, same masks, any worker count,
resume included.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..knowledge.visibility import knowledge_columns
from .base import UNITS, Example
from .layout import segmented
from .mixer import MaskingSpec


def pad_batch(features: list[dict], pad_id: int, pad_to_multiple_of: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.array([len(f["input_ids"]) for f in features])
    width = int(lengths.max())
    if pad_to_multiple_of:
        width = -(-width // pad_to_multiple_of) * pad_to_multiple_of
    input_ids = np.full((len(features), width), pad_id, dtype=np.int64)
    for row, f in enumerate(features):
        input_ids[row, : lengths[row]] = f["input_ids"]
    attention_mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
    return torch.from_numpy(input_ids), torch.from_numpy(attention_mask)


M64 = (1 << 64) - 1
KNOWLEDGE_STREAM = 0x5851F42D4C957F2D  # xor-ed into the seed of an example's appended knowledge


def splitmix64(x: int) -> int:
    """A 64-bit mixing function (SplitMix64's finaliser): turns (seed, epoch, index) into an RNG state cheaply."""
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


class ExampleRandom:
    """One generator per collator, reset for each example to a state that depends only on (seed, epoch, index).

    As pure as building a generator per example, without numpy's SeedSequence (26 us against 6 us here).
    """

    def __init__(self):
        self.bits = np.random.PCG64(0)
        self.generator = np.random.Generator(self.bits)

    def __call__(self, seed: int, epoch: int, index: int) -> np.random.Generator:
        h = splitmix64(splitmix64(splitmix64(seed & M64) ^ epoch) ^ index)
        state = {"state": (h << 64) | splitmix64(h), "inc": (splitmix64(h ^ 1) << 1) | 1}
        self.bits.state = {"bit_generator": "PCG64", "state": state, "has_uint32": 0, "uinteger": 0}
        return self.generator


@dataclass
class MaskedLMCollator:
    """Dynamic masking by units (BERT's recipe with whole words, entities, spans or n-grams; no NSP).

    Per example: a unit type is drawn from the masking spec, a budget of `mlm_probability` of the maskable tokens
    (stochastically rounded, so the expected rate is exact), and units are accepted whole, never split, until the
    budget is met. Each chosen unit is replaced as a whole: by mask tokens with `mask_replace_prob`, by random tokens
    with `random_replace_prob`, kept otherwise. Special tokens and padding are never chosen. Every draw comes from a
    generator seeded with (seed, epoch, example index).

    Examples that hold several documents (`segments`) get `segment_ids` for attention confined to each document; with
    `padding_free`, whole examples are packed into rows without padding, each its own segment (see `layout.py`).
    Examples with appended knowledge (`text_length`, `knowledge_slot`) are masked on their text as they would be
    without it and, with `knowledge_loss`, on the appended text too; the batch carries the knowledge columns.
    """

    mask_token_id: int
    pad_token_id: int
    vocab_size: int
    special_ids: frozenset[int]
    seed: int = 42
    mlm_probability: float = 0.15
    mask_replace_prob: float = 0.8
    random_replace_prob: float = 0.1
    pad_to_multiple_of: int | None = None
    masking: MaskingSpec = field(default_factory=MaskingSpec)
    padding_free: bool = False
    knowledge_loss: bool = True
    protected: tuple[tuple[int, ...], ...] = ()  # token sequences never masked (a PCP template's pieces)

    def __post_init__(self):
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"--mlm_probability must be in (0, 1), got {self.mlm_probability}")
        if (
            self.mask_replace_prob < 0
            or self.random_replace_prob < 0
            or self.mask_replace_prob + self.random_replace_prob > 1
        ):
            raise ValueError("--mask_replace_prob and --random_replace_prob must be >= 0 and sum to at most 1")
        # A lookup table: one indexing operation tells every token of a sequence whether it may be masked.
        self._is_special = np.zeros(max(self.vocab_size, *self.special_ids, 0) + 1, dtype=bool)
        self._is_special[list(self.special_ids)] = True
        self._random = ExampleRandom()
        # Random replacements come from ordinary tokens: a "random" [MASK] or [SEP] would teach the wrong thing.
        self._replacements = np.flatnonzero(~self._is_special[: self.vocab_size])

    @classmethod
    def from_tokenizer(cls, tokenizer, vocab_size: int, **kwargs) -> MaskedLMCollator:
        if tokenizer.mask_token_id is None:
            raise ValueError(
                f"{tokenizer.name_or_path}: the tokenizer has no mask token, so it cannot train a masked LM"
            )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.mask_token_id
        return cls(tokenizer.mask_token_id, pad, vocab_size, frozenset(tokenizer.all_special_ids), **kwargs)

    def select(self, maskable: np.ndarray, epoch: int, index: int, word_ids=None, entity_ids=None, stream: int = 0):
        """(unit type, chosen units as position arrays, one draw per unit, random replacement tokens per chosen token):
        every random choice for one example, from its own generator. Stream 1 masks an example's appended knowledge
        (`knowledge/expand.py`) token by token, from a generator of its own: the text's masks stay as without it."""
        rng = self._random(self.seed ^ (stream * KNOWLEDGE_STREAM), epoch, index)
        unit = self.masking.choose(rng) if not stream else "token"
        example = Example(maskable, word_ids, entity_ids)
        for column in UNITS[unit].needs:
            if getattr(example, column) is None:
                raise ValueError(
                    f"masking unit {unit!r} needs {column} (word boundaries), and the example has none: "
                    "tokenize with the same --masking so boundaries are computed"
                )
        budget = int(self.mlm_probability * int(maskable.sum()) + rng.random())  # stochastic rounding: exact mean
        atoms, candidates = UNITS[unit].propose(rng, example, self.masking)
        bounds, taken = atoms.bounds, bytearray(len(atoms))
        units, total = [], 0
        if budget:
            for first, last in candidates:
                size = bounds[last] - bounds[first]
                if size == 0 or total + size > budget or any(taken[first:last]):
                    continue
                taken[first:last] = b"\x01" * (last - first)
                units.append(atoms.positions[bounds[first] : bounds[last]])
                total += size
                if total == budget:
                    break
        return unit, units, rng.random(len(units)), self._replacements[rng.integers(0, len(self._replacements), total)]

    def apply(
        self,
        input_ids: np.ndarray,
        labels: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        draws: np.ndarray,
        random_tokens: np.ndarray,
    ) -> None:
        """Label the chosen tokens and replace them, per unit: mask token, random token, or kept (in place)."""
        labels[rows, cols] = input_ids[rows, cols]
        to_mask = draws < self.mask_replace_prob
        to_random = ~to_mask & (draws < self.mask_replace_prob + self.random_replace_prob)
        input_ids[rows[to_mask], cols[to_mask]] = self.mask_token_id
        input_ids[rows[to_random], cols[to_random]] = random_tokens[to_random]

    def mask(self, ids: np.ndarray, epoch: int, index: int, word_ids=None, entity_ids=None) -> MaskResult:
        ids = np.asarray(ids, dtype=np.int64)
        maskable = ~self._is_special[ids] & ~protected_positions(ids, self.protected)
        unit, units, draws, random_tokens = self.select(maskable, epoch, index, word_ids, entity_ids)
        out, labels = ids[None].copy(), np.full((1, len(ids)), -100, dtype=np.int64)
        if units:
            cols = np.concatenate(units)
            self.apply(
                out, labels, np.zeros_like(cols), cols, np.repeat(draws, [len(u) for u in units]), random_tokens
            )
        return MaskResult(out[0], labels[0], units, unit)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_batch(features, self.pad_token_id, self.pad_to_multiple_of)
        ids = input_ids.numpy()
        maskable = ~self._is_special[ids] & attention_mask.numpy().astype(bool)
        labels = np.full(ids.shape, -100, dtype=np.int64)
        rows, cols, draws, random_tokens = [], [], [], []
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            if self.protected:
                maskable[row, :n] &= ~protected_positions(ids[row, :n], self.protected)
            text = f.get("text_length", n)
            epoch, index = int(f.get("epoch", 0)), int(f["idx"])
            chosen = [(0, self.select(maskable[row, :text], epoch, index, f.get("word_ids"), f.get("entity_ids")))]
            if text < n and self.knowledge_loss:
                chosen.append((text, self.select(maskable[row, text:n], epoch, index, stream=1)))
            for offset, (_, units, unit_draws, tokens) in chosen:
                if units:
                    sizes = [len(u) for u in units]
                    cols.extend(u + offset for u in units)
                    rows.append(np.full(sum(sizes), row))
                    draws.append(np.repeat(unit_draws, sizes))
                    random_tokens.append(tokens)
        if cols:  # all rows at once: a few array operations per batch instead of per example
            self.apply(
                ids,
                labels,
                np.concatenate(rows),
                np.concatenate(cols),
                np.concatenate(draws),
                np.concatenate(random_tokens),
            )
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": torch.from_numpy(labels)}
        batch.update(knowledge_columns(features, ids.shape[1]) or {})
        if self.padding_free or "segments" in features[0]:
            return segmented(batch, features, self.pad_token_id, pack=self.padding_free)
        return batch


def protected_positions(ids: np.ndarray, sequences: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """True at every token of every occurrence of any of `sequences` in `ids`."""
    hit = np.zeros(len(ids), dtype=bool)
    for sequence in sequences:
        width = len(sequence)
        if width == 0 or width > len(ids):
            continue
        windows = np.lib.stride_tricks.sliding_window_view(ids, width)
        for start in np.flatnonzero((windows == np.asarray(sequence)).all(axis=1)):
            hit[start : start + width] = True
    return hit


@dataclass
class MaskResult:
    input_ids: np.ndarray  # after replacement
    labels: np.ndarray  # original ids at chosen positions, -100 elsewhere
    units: list[np.ndarray]  # positions of each chosen unit
    unit: str  # the unit type this example was masked by


@dataclass
class CausalLMCollator:
    """Next-token prediction: labels are the inputs (the model shifts them); padding is never predicted."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        input_ids, attention_mask = pad_batch(features, self.pad_token_id, self.pad_to_multiple_of)
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
