"""`--masking word:0.6,entity:0.3,span:0.1`: which units, in which proportions.

Each example draws one unit type with these probabilities (seeded from its (seed, epoch, index), like its mask), so
over a corpus the proportions hold and every example is masked by one coherent rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from .base import UNITS


@dataclass(frozen=True)
class MaskingSpec:
    units: tuple[str, ...] = ("token",)
    weights: tuple[float, ...] = (1.0,)
    span_p: float = 0.2
    span_max_words: int = 10
    ngram_probs: tuple[float, ...] = field(default=(0.5, 0.3, 0.2))

    @property
    def needs(self) -> set[str]:
        return {column for unit in self.units for column in UNITS[unit].needs}

    def choose(self, rng: np.random.Generator) -> str:
        if len(self.units) == 1:
            return self.units[0]
        return self.units[int(rng.choice(len(self.units), p=self.weights))]


def parse_masking(spec: str, **options) -> MaskingSpec:
    """'word' or 'word:0.6,entity:0.3,span:0.1' (weights are normalised)."""
    units, weights = [], []
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in UNITS:
            raise UsageError(f"--masking: unknown unit {name!r} (choose from {', '.join(UNITS)})")
        if name in units:
            raise UsageError(f"--masking: {name!r} given twice")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise UsageError(f"--masking: weight of {name!r} is not a number: {weight!r}") from None
        if value <= 0:
            raise UsageError(f"--masking: weight of {name!r} must be positive")
        units.append(name)
        weights.append(value)
    total = sum(weights)
    probs = tuple(options.pop("ngram_probs", (0.5, 0.3, 0.2)))
    if len(probs) == 0 or any(p < 0 for p in probs) or abs(sum(probs) - 1) > 1e-6:
        raise UsageError("--ngram_probs: probabilities of 1-, 2-, 3-grams, non-negative, summing to 1")
    if not 0 < options.get("span_p", 0.2) <= 1:
        raise UsageError("--span_p must be in (0, 1]")
    return MaskingSpec(tuple(units), tuple(w / total for w in weights), ngram_probs=probs, **options)
