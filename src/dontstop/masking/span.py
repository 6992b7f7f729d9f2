"""`span`: contiguous spans of whole words, lengths drawn from a geometric law (SpanBERT: p=0.2, at most 10 words).

A span starts at a uniformly drawn word; lengths are clipped at `span_max_words` (so P(len = k) is geometric for
k < max, and the tail mass sits at max). A span running past the last word is cut there.
"""

from __future__ import annotations

import numpy as np

from .base import Example, register_unit, runs


@register_unit("span", needs=("word_ids",))
def propose(rng: np.random.Generator, example: Example, options):
    words = runs(example.word_ids, example.maskable)
    n = len(words)
    tries = 20 * n  # bounded: the collator stops asking once the budget is met
    lengths = np.minimum(rng.geometric(options.span_p, tries), options.span_max_words).tolist()
    starts = rng.integers(0, max(n, 1), tries).tolist()
    return words, ((s, min(s + k, n)) for s, k in zip(starts, lengths, strict=True)) if n else iter(())
