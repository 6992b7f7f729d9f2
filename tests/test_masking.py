"""Token masking: a pure function of (seed, epoch, index), the configured rate and 80/10/10 split, specials spared."""

from __future__ import annotations

import numpy as np
import torch

from dontstop.masking import CausalLMCollator, EpochIndexed, EpochSampler, MaskedLMCollator

SPECIAL = frozenset({0, 1, 2, 3})  # pad, cls, sep, mask
MASK = 3


def collator(**kwargs):
    return MaskedLMCollator(mask_token_id=MASK, pad_token_id=0, vocab_size=1000, special_ids=SPECIAL, **kwargs)


def sequence(n=200):
    return np.concatenate([[1], np.arange(10, 10 + n), [2]])


def test_masks_are_a_pure_function_of_seed_epoch_and_index():
    c = collator(seed=5)
    ids = sequence()
    a = c.mask(ids, epoch=1, index=7)
    b = collator(seed=5).mask(ids, epoch=1, index=7)
    np.testing.assert_array_equal(a.input_ids, b.input_ids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.mask(ids, epoch=2, index=7).labels)  # fresh masks each epoch
    assert not np.array_equal(a.labels, c.mask(ids, epoch=1, index=8).labels)
    assert not np.array_equal(a.labels, collator(seed=6).mask(ids, epoch=1, index=7).labels)


def test_rate_split_and_special_tokens():
    c = collator(mlm_probability=0.2, mask_replace_prob=0.8, random_replace_prob=0.1)
    ids = sequence(500)
    chosen = masked = randomised = kept = maskable = 0
    for index in range(200):
        result = c.mask(ids, epoch=0, index=index)
        out, labels = result.input_ids, result.labels
        sel = labels != -100
        assert not sel[0] and not sel[-1], "special tokens are never chosen"
        np.testing.assert_array_equal(labels[sel], ids[sel])
        maskable += len(ids) - 2
        chosen += sel.sum()
        masked += (out[sel] == MASK).sum()
        kept += (out[sel] == ids[sel]).sum()
        randomised += ((out[sel] != MASK) & (out[sel] != ids[sel])).sum()
        assert np.array_equal(out[~sel], ids[~sel]), "unchosen tokens are untouched"
        assert not np.isin(out[sel & (out != MASK)], list(SPECIAL)).any(), "random replacements are ordinary tokens"
    assert abs(chosen / maskable - 0.2) < 0.01
    assert abs(masked / chosen - 0.8) < 0.02
    assert abs(randomised / chosen - 0.1) < 0.02  # a random draw equal to the original counts as kept
    assert abs(kept / chosen - 0.1) < 0.02


def test_batch_collation_pads_and_never_predicts_padding():
    c = collator(seed=1, mlm_probability=0.5)
    batch = c([{"input_ids": sequence(5), "idx": 0}, {"input_ids": sequence(20), "idx": 1}])
    assert batch["input_ids"].shape == (2, 22)
    assert batch["attention_mask"][0].sum() == 7
    assert (batch["labels"][0, 7:] == -100).all()
    single = c([{"input_ids": sequence(5), "idx": 0}])
    assert torch.equal(single["labels"][0], batch["labels"][0, :7])  # masks don't depend on the batch


def test_causal_collator_labels_ignore_padding():
    batch = CausalLMCollator(pad_token_id=0)([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}])
    assert batch["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]


def test_epoch_sampler_encodes_the_epoch_and_reshuffles():
    sampler = EpochSampler(10, seed=3)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(first) == list(range(10))
    assert sorted(second) == list(range(10, 20))
    assert [k - 10 for k in second] != first
    data = EpochIndexed([{"input_ids": [i]} for i in range(10)])
    assert data[13] == {"input_ids": [3], "idx": 3, "epoch": 1}
    assert list(EpochSampler(10, seed=3)) == first


def test_length_grouped_sampler_batches_similar_lengths():
    lengths = np.random.default_rng(0).integers(5, 500, size=800)
    sampler = EpochSampler(800, seed=0, lengths=lengths, batch_size=8)
    order = np.array(list(sampler))
    assert sorted(order.tolist()) == list(range(800))
    batches = lengths[order].reshape(-1, 8)
    padded = (batches.max(1, keepdims=True) - batches).sum()
    random_batches = lengths[np.random.default_rng(1).permutation(800)].reshape(-1, 8)
    assert padded < 0.2 * (random_batches.max(1, keepdims=True) - random_batches).sum()
