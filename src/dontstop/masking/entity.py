"""`entity`: occurrences of `--lexicon` terms (dictionary entities and phrases, ERNIE-style knowledge masking).

Each occurrence is one unit, proposed first. Sequences seldom hold enough entity tokens to fill the budget, so whole
words fill the rest: the masking rate stays what `--mlm_probability` says.
"""

from __future__ import annotations

import itertools

import numpy as np

from .base import Atoms, Example, each_once, register_unit, runs


@register_unit("entity", needs=("word_ids", "entity_ids"))
def propose(rng: np.random.Generator, example: Example, options):
    in_entity = example.entity_ids >= 0
    entities = runs(example.entity_ids, example.maskable & in_entity)
    words = runs(example.word_ids, example.maskable & ~in_entity)
    atoms = Atoms.concatenate([entities, words])
    return atoms, itertools.chain(each_once(rng, len(entities)), each_once(rng, len(words), first=len(entities)))
