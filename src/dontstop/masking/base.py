"""What every masking unit shares: the registry, the view of one example, and atoms.

An atom is a run of maskable tokens that must stay together (one token, one word, one entity occurrence). A unit
strategy returns the atoms of an example and proposes candidate units as ranges of consecutive atoms, in random
order; the collator accepts those that fit the masking budget without overlapping, so a unit is masked whole or not
at all. Working on atom indices keeps the collator's loop on plain integers: it is as fast as Hugging Face's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

Candidates = Iterator[tuple[int, int]]  # half-open ranges [first atom, last atom + 1)


@dataclass(frozen=True)
class Atoms:
    positions: np.ndarray  # token positions, atom after atom
    bounds: list[int]  # atom i holds positions[bounds[i]:bounds[i + 1]]

    def __len__(self) -> int:
        return len(self.bounds) - 1

    @classmethod
    def concatenate(cls, parts: list[Atoms]) -> Atoms:
        positions = np.concatenate([p.positions for p in parts])
        bounds, shift = [0], 0
        for part in parts:
            bounds.extend(b + shift for b in part.bounds[1:])
            shift += len(part.positions)
        return cls(positions, bounds)


@dataclass(frozen=True)
class UnitStrategy:
    name: str
    propose: Callable[..., tuple[Atoms, Candidates]]  # (rng, example, options) -> (atoms, candidates)
    needs: tuple[str, ...]  # boundary columns the unit cannot work without


UNITS: dict[str, UnitStrategy] = {}


def register_unit(name: str, needs: tuple[str, ...] = ()):
    def decorator(propose):
        UNITS[name] = UnitStrategy(name, propose, needs)
        return propose

    return decorator


@dataclass
class Example:
    maskable: np.ndarray  # bool per token: not special, not padding
    word_ids: np.ndarray | None = None  # unit id per token (-1: none), from segment.unit_ids
    entity_ids: np.ndarray | None = None  # entity occurrence per token (-1: none)


def runs(ids: np.ndarray, maskable: np.ndarray) -> Atoms:
    """Maskable positions grouped by runs of one id; a maskable token without an id (-1) is an atom of its own."""
    positions = np.flatnonzero(maskable)
    if len(positions) == 0:
        return Atoms(positions, [0])
    values = ids[positions]
    starts = np.empty(len(positions), dtype=bool)
    starts[0] = True
    # an atom starts where the id changes, where positions jump (a special token between), and at every -1
    np.not_equal(values[1:], values[:-1], out=starts[1:])
    starts[1:] |= positions[1:] != positions[:-1] + 1
    starts[1:] |= values[1:] < 0
    return Atoms(positions, [*np.flatnonzero(starts).tolist(), len(positions)])


def each_once(rng: np.random.Generator, count: int, first: int = 0) -> Candidates:
    """Every atom in [first, first + count) once, as a one-atom unit, in random order."""
    return ((first + i, first + i + 1) for i in rng.permutation(count).tolist())
