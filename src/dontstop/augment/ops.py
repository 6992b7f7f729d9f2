"""Word-level augmentations that need no external model, shared by `dontstop augment`, UDA and self-training's noise.

An augmentation is a sequence of operations with rates, written `delete:0.1,swap:0.1`:
- `delete`: each word is dropped with probability RATE (at least one word is kept; EDA's random deletion);
- `swap`: max(1, int(RATE x words)) times, two words chosen at random trade places (EDA's random swap);
- `cutoff`: one contiguous span of max(1, int(RATE x words)) words is removed (span cut-off, on words);
- `dropout`: the text is left as it is, so the only noise is the model's own dropout (UDA's weakest augmentation).

Words are the spans of the segmenter whole-word masking uses (`segment.py`): runs of letters or digits and single
punctuation marks in space-delimited text, jieba's words in Chinese, so a Chinese text loses words, not characters.
The whitespace before a word travels with it and the text is rebuilt from the kept words: nothing is ever inserted.
Every draw comes from the generator the caller passes, so an augmented text is a pure function of its seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..segment import cached_segmenter

Piece = tuple[str, str]  # (the whitespace before a word, the word)
OPERATIONS: dict[str, Callable[[list[Piece], float, np.random.Generator], tuple[list[Piece], int]]] = {}


def operation(name: str):
    def register(function):
        OPERATIONS[name] = function
        return function

    return register


@operation("delete")
def delete_words(pieces: list[Piece], rate: float, rng: np.random.Generator) -> tuple[list[Piece], int]:
    keep = rng.random(len(pieces)) >= rate
    if len(pieces) and not keep.any():
        keep[rng.integers(len(pieces))] = True  # an empty text is no example
    return [p for p, k in zip(pieces, keep, strict=True) if k], int((~keep).sum())


@operation("swap")
def swap_words(pieces: list[Piece], rate: float, rng: np.random.Generator) -> tuple[list[Piece], int]:
    if len(pieces) < 2:
        return pieces, 0
    words = [word for _, word in pieces]
    times = max(1, int(rate * len(pieces)))
    for _ in range(times):
        i, j = rng.choice(len(words), size=2, replace=False)
        words[i], words[j] = words[j], words[i]
    # The gaps stay where they were: a swap moves words, never the spacing of the text.
    return [(gap, word) for (gap, _), word in zip(pieces, words, strict=True)], times


@operation("cutoff")
def cut_span(pieces: list[Piece], rate: float, rng: np.random.Generator) -> tuple[list[Piece], int]:
    if len(pieces) < 2:
        return pieces, 0
    length = min(max(1, int(rate * len(pieces))), len(pieces) - 1)
    start = int(rng.integers(len(pieces) - length + 1))
    return pieces[:start] + pieces[start + length :], length


@operation("dropout")
def unchanged(pieces: list[Piece], rate: float, rng: np.random.Generator) -> tuple[list[Piece], int]:
    return pieces, 0


@dataclass(frozen=True)
class Augmentation:
    """Operations applied in order, each with its rate."""

    steps: tuple[tuple[str, float], ...]

    def __str__(self) -> str:
        return ",".join(name if name == "dropout" else f"{name}:{rate:g}" for name, rate in self.steps)

    @property
    def changes_text(self) -> bool:
        return any(name != "dropout" for name, _ in self.steps)


def parse_augmentation(spec: str, option: str) -> Augmentation:
    """`delete:0.1,swap:0.1`, `cutoff:0.2` or `dropout`; a bad name or rate is a UsageError naming `option`."""
    steps = []
    for part in str(spec).split(","):
        name, _, rate = part.strip().partition(":")
        if name not in OPERATIONS:
            raise UsageError(f"{option} {spec}: unknown augmentation {name!r} (choose from {', '.join(OPERATIONS)})")
        if name == "dropout":
            if rate:
                raise UsageError(f"{option} {spec}: dropout takes no rate (the model's dropout is the noise)")
            steps.append((name, 0.0))
            continue
        try:
            value = float(rate)
        except ValueError:
            raise UsageError(f"{option} {spec}: {name} needs a rate, e.g. {name}:0.1") from None
        if not 0 < value < 1:
            raise UsageError(f"{option} {spec}: the rate of {name} must be in (0, 1)")
        steps.append((name, value))
    return Augmentation(tuple(steps))


class Augmenter:
    """Applies an augmentation to texts, with words from the segmenter of whole-word masking."""

    def __init__(self, augmentation: Augmentation, segmenter: str = "auto", user_dicts: tuple[str, ...] = ()):
        self.augmentation = augmentation
        self.spans = cached_segmenter(segmenter, tuple(user_dicts))

    def pieces(self, text: str) -> list[Piece]:
        pieces, end = [], 0
        for start, stop in self.spans(text):
            pieces.append((text[end:start], text[start:stop]))
            end = stop
        return pieces

    def __call__(self, text: str, rng: np.random.Generator) -> tuple[str, dict[str, int]]:
        """(the augmented text, words changed per operation)."""
        if not self.augmentation.changes_text:
            return text, {}
        pieces, changed = self.pieces(text), {}
        for name, rate in self.augmentation.steps:
            pieces, count = OPERATIONS[name](pieces, rate, rng)
            changed[name] = changed.get(name, 0) + count
        return "".join(gap + word for gap, word in pieces).strip(), changed


def generator(*key: int) -> np.random.Generator:
    """The generator of one augmented text, from its seed and position (e.g. seed, round, example)."""
    return np.random.default_rng([int(k) for k in key])
