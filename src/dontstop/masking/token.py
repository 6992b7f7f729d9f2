"""`token`: every maskable sub-token is its own unit (BERT's original masking)."""

from __future__ import annotations

import numpy as np

from .base import Atoms, Example, each_once, register_unit


@register_unit("token")
def propose(rng: np.random.Generator, example: Example, options):
    positions = np.flatnonzero(example.maskable)
    return Atoms(positions, list(range(len(positions) + 1))), each_once(rng, len(positions))
