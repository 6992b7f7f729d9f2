"""`ngram`: n-grams of 1 to 3 whole words, n drawn with `ngram_probs` (MacBERT/ERNIE-style n-gram masking)."""

from __future__ import annotations

import numpy as np

from .base import Example, register_unit, runs


@register_unit("ngram", needs=("word_ids",))
def propose(rng: np.random.Generator, example: Example, options):
    words = runs(example.word_ids, example.maskable)
    n = len(words)
    tries = 20 * n
    sizes = (rng.choice(len(options.ngram_probs), size=tries, p=options.ngram_probs) + 1).tolist()
    starts = rng.integers(0, max(n, 1), tries).tolist()
    return words, ((s, min(s + k, n)) for s, k in zip(starts, sizes, strict=True)) if n else iter(())
