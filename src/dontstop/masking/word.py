"""`word`: whole-word masking; all sub-tokens of a word (a jieba word for Chinese) are masked together."""

from __future__ import annotations

import numpy as np

from .base import Example, each_once, register_unit, runs


@register_unit("word", needs=("word_ids",))
def propose(rng: np.random.Generator, example: Example, options):
    atoms = runs(example.word_ids, example.maskable)
    return atoms, each_once(rng, len(atoms))
